/**
 * Per-step schedules, computed in TS and fed to the step graph as scalars, so one compiled graph serves the
 * whole run (docs/ARCHITECTURE.md, "DINO reference"). Same shapes as facebookresearch/dino
 * utils.cosine_scheduler, indexed by step instead of precomputed.
 */
import type { ScheduledScalars } from '../../models/dino-step.ts';
import type { TrainConfig } from './config.ts';

/**
 * DINO's cosine_scheduler at step `i` of `total`: linear warm-up from `warmupStart` to `base` over
 * `warmup` steps (np.linspace, both ends included), then base -> final along half a cosine over the rest.
 */
export function cosineSchedule(i: number, total: number, base: number, final: number, warmup = 0, warmupStart = 0): number {
  if (i < warmup) return warmup === 1 ? base : warmupStart + ((base - warmupStart) * i) / (warmup - 1);
  const n = total - warmup;
  const j = Math.min(i - warmup, n - 1);
  return final + 0.5 * (base - final) * (1 + Math.cos((Math.PI * j) / n));
}

/** Teacher temperature: linear warm-up from `start` to `end` over `warmup` steps, then constant. */
export function teacherTempSchedule(i: number, start: number, end: number, warmup: number): number {
  if (i >= warmup) return end;
  return warmup === 1 ? start : start + ((end - start) * i) / (warmup - 1);
}

/** The fields of a training config the schedules read. */
export type ScheduleConfig = Pick<
  TrainConfig,
  | 'steps' | 'batch' | 'lr' | 'minLr' | 'warmupFraction' | 'weightDecay' | 'weightDecayEnd' | 'momentumTeacher'
  | 'warmupTeacherTemp' | 'teacherTemp' | 'warmupTeacherTempSteps' | 'freezeLastLayerSteps'
>;

/**
 * The scheduled scalars of DINO step `i` of a run of `cfg.steps` steps. The peak learning rate is `cfg.lr` scaled
 * by batch / 256 (DINO's linear scaling rule), reached after `warmupFraction` of the run.
 */
/** Steps of linear learning-rate warm-up: `warmupFraction` of the run. */
export function warmupSteps(cfg: Pick<ScheduleConfig, 'warmupFraction' | 'steps'>): number {
  return Math.round(cfg.warmupFraction * cfg.steps);
}

export function stepScalars(cfg: ScheduleConfig, i: number): ScheduledScalars {
  const total = cfg.steps;
  const peakLr = (cfg.lr * cfg.batch) / 256;
  const warmup = warmupSteps(cfg);
  return {
    lr: cosineSchedule(i, total, peakLr, cfg.minLr, warmup),
    wd: cosineSchedule(i, total, cfg.weightDecay, cfg.weightDecayEnd),
    momentum: cosineSchedule(i, total, cfg.momentumTeacher, 1),
    teacher_temp: teacherTempSchedule(i, cfg.warmupTeacherTemp, cfg.teacherTemp, cfg.warmupTeacherTempSteps),
    'gate.last_layer': i < cfg.freezeLastLayerSteps ? 0 : 1,
  };
}
