/**
 * Per-step schedules, computed in TS and fed to the step graph as scalars (DESIGN invariant 2).
 * Same shapes as facebookresearch/dino utils.cosine_scheduler, indexed by step instead of precomputed.
 */

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

export interface ScheduleConfig {
  /** Peak learning rate after warm-up (already scaled by batch / 256). */
  readonly peakLr: number;
  readonly minLr: number;
  readonly warmupSteps: number;
  readonly weightDecay: number;
  readonly weightDecayEnd: number;
  readonly momentumTeacher: number;
  readonly warmupTeacherTemp: number;
  readonly teacherTemp: number;
  readonly warmupTeacherTempSteps: number;
  readonly freezeLastLayerSteps: number;
}

/** The scalar inputs of DINO step `i` of a run of `total` steps. */
export function stepScalars(cfg: ScheduleConfig, i: number, total: number): Record<string, number> {
  return {
    lr: cosineSchedule(i, total, cfg.peakLr, cfg.minLr, cfg.warmupSteps),
    wd: cosineSchedule(i, total, cfg.weightDecay, cfg.weightDecayEnd),
    momentum: cosineSchedule(i, total, cfg.momentumTeacher, 1),
    teacher_temp: teacherTempSchedule(i, cfg.warmupTeacherTemp, cfg.teacherTemp, cfg.warmupTeacherTempSteps),
    'gate.last_layer': i < cfg.freezeLastLayerSteps ? 0 : 1,
  };
}
