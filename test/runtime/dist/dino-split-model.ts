/**
 * Test helper: a tiny DINO step (test/models/tiny-step.ts's model) as the one-graph step on a global batch of 8 images
 * and as the data-parallel split (models/dino-step-split.ts) on N ranks of 8 / N, with the same initial state, the
 * same global batches and the same schedule, for the parity tests. Clipping is low enough to act and the last layer
 * is frozen at the first step, so both paths exercise clipping and the gate.
 */
import * as E from 'fp-ts/lib/Either.js';
import { Prng, drawInit, formatError, stepSignature } from '../../../dsl/index.ts';
import { type DinoStepConfig, type ScheduledScalars, buildDinoStep, dinoStepInputShapes, teacherFromStudent } from '../../../models/dino-step.ts';
import { ort } from '../../../runtime/backend.ts';
import { StepRunner } from '../../../runtime/step-runner.ts';
import { TrainState } from '../../../runtime/state.ts';
import { TINY_STEP } from '../../models/tiny-step.ts';
import { type ViTConfig, sampleDropPathMasks } from '../../../models/vit.ts';
import type { DinoRankInputs } from '../../../runtime/dist/dino-step.ts';

export const GLOBAL_BATCH = 8;
/**
 * One rank's config: `batch` is the rank's images (`ranks` = 1: the one process's whole batch). Two blocks with
 * stochastic depth (per-image masks, sliced per rank like the crops) and MLP recomputation, as training runs.
 */
export const rankConfig = (ranks: number, overrides: Partial<DinoStepConfig> = {}): DinoStepConfig => ({
  ...TINY_STEP,
  backbone: { ...(TINY_STEP.backbone as ViTConfig), depth: 2, dropPathRate: 0.2 },
  batch: GLOBAL_BATCH / ranks,
  clipGrad: 0.02,
  recompute: 'mlp',
  ...overrides,
});

/** A run's variations for the parity tests: config overrides, and a hook on the state before each step. */
export interface RunVariant {
  readonly overrides?: Partial<DinoStepConfig>;
  readonly beforeStep?: (step: number, state: TrainState) => void;
}

/** Three steps of scheduled scalars: the last layer frozen at step 0; lr, wd, momentum and τ_t changing. */
export const SCHEDULE: readonly ScheduledScalars[] = [
  { lr: 0.01, wd: 0.04, momentum: 0.9, teacher_temp: 0.04, 'gate.last_layer': 0 },
  { lr: 0.005, wd: 0.05, momentum: 0.92, teacher_temp: 0.05, 'gate.last_layer': 1 },
  { lr: 0.008, wd: 0.06, momentum: 0.95, teacher_temp: 0.06, 'gate.last_layer': 1 },
];

type GlobalBatch = { readonly [K in keyof DinoRankInputs]-?: Float32Array };

/** The global batch of step `step` (standard-normal crops, drop-path masks) from (seed, step), view-major as the one-graph step takes it. */
function globalBatch(step: number): GlobalBatch {
  const cfg = rankConfig(1);
  const shapes = dinoStepInputShapes(cfg);
  const prng = Prng.seeded(1000 + step);
  const crops = (shape: readonly number[]) => Float32Array.from({ length: shape.reduce((a, n) => a * n, 1) }, () => prng.normal());
  const masks = (shape: readonly number[]) => sampleDropPathMasks(prng, cfg.backbone as ViTConfig, shape[2]!);
  return {
    globals: crops(shapes.globals), locals: crops(shapes.locals!),
    'drop_path.globals': masks(shapes['drop_path.globals']!), 'drop_path.locals': masks(shapes['drop_path.locals']!),
  };
}

/**
 * Rank `rank`'s inputs of step `step`: its images [rank·b, (rank+1)·b) of every view (b = 8 / ranks), the rows the
 * one process holds at view·8 + rank·b, ... of its view-major crops, and the same columns of the masks
 * ([depth, 2, crops]: the crop axis is last there).
 */
export function rankInputs(step: number, rank: number, ranks: number): DinoRankInputs {
  const all = globalBatch(step);
  const shapes = dinoStepInputShapes(rankConfig(ranks));
  const b = GLOBAL_BATCH / ranks;
  // `data` as [outer, views · 8, inner] -> [outer, views · b, inner], keeping each view's images of this rank.
  const slice = (data: Float32Array, shape: readonly number[], cropAxis: number): ort.Tensor => {
    const outer = shape.slice(0, cropAxis).reduce((a, n) => a * n, 1), inner = shape.slice(cropAxis + 1).reduce((a, n) => a * n, 1);
    const views = shape[cropAxis]! / b;
    const out = new Float32Array(outer * views * b * inner);
    for (let o = 0; o < outer; o++) {
      for (let v = 0; v < views; v++) {
        const from = ((o * views + v) * GLOBAL_BATCH + rank * b) * inner;
        out.set(data.subarray(from, from + b * inner), (o * views + v) * b * inner);
      }
    }
    return new ort.Tensor('float32', out, [...shape]);
  };
  return {
    globals: slice(all.globals, shapes.globals, 0), locals: slice(all.locals, shapes.locals!, 0),
    'drop_path.globals': slice(all['drop_path.globals'], shapes['drop_path.globals']!, 2), 'drop_path.locals': slice(all['drop_path.locals'], shapes['drop_path.locals']!, 2),
  };
}

/** The one-graph step's whole initial state: every tensor drawn from seed 5 in signature order, the teacher = the student. */
export function initialValues(overrides: Partial<DinoStepConfig> = {}): Map<string, Float32Array> {
  const built = buildDinoStep(rankConfig(1, overrides));
  if (E.isLeft(built)) throw new Error(built.left.map(formatError).join('\n'));
  const prng = Prng.seeded(5);
  const values = new Map(stepSignature(built.right.graph).state.map((s) => [s.name, drawInit(s.init, s.shape.reduce((a, n) => a * n, 1), prng)]));
  teacherFromStudent(values);
  return values;
}

export type StateValues = Map<string, Float32Array>;
export const stateValues = (state: TrainState): StateValues => new Map(state.names().map((n) => [n, Float32Array.from(state.values(n))]));

/** The global batch of step `step` with its images in reverse order (every view alike): the same maths, another summation order. */
function reversedInputs(step: number): DinoRankInputs {
  // [outer, views · 8, inner] with each view's 8 images reversed.
  const reverse = (t: ort.Tensor | undefined, cropAxis: number): ort.Tensor => {
    const data = t!.data as Float32Array, shape = t!.dims;
    const outer = shape.slice(0, cropAxis).reduce((a, n) => a * n, 1), inner = shape.slice(cropAxis + 1).reduce((a, n) => a * n, 1);
    const out = new Float32Array(data.length);
    for (let o = 0; o < outer * (shape[cropAxis]! / GLOBAL_BATCH); o++) {
      for (let i = 0; i < GLOBAL_BATCH; i++) {
        const from = (o * GLOBAL_BATCH + i) * inner;
        out.set(data.subarray(from, from + inner), (o * GLOBAL_BATCH + GLOBAL_BATCH - 1 - i) * inner);
      }
    }
    return new ort.Tensor('float32', out, [...shape]);
  };
  const inputs = rankInputs(step, 0, 1);
  return {
    globals: reverse(inputs.globals, 0), locals: reverse(inputs.locals, 0),
    'drop_path.globals': reverse(inputs['drop_path.globals'], 2), 'drop_path.locals': reverse(inputs['drop_path.locals'], 2),
  };
}

/**
 * The reference: one process, the one-graph step on the whole global batch of 8, 3 steps; its state and metrics.
 * `reversed`: the images of every global batch in reverse order, whose difference from the reference is what float32
 * summation order alone does to this model (the yardstick of the parity tests).
 */
export async function reference(opts: { reversed?: boolean } & RunVariant = {}): Promise<{ state: StateValues; metrics: Record<string, number>[] }> {
  const built = buildDinoStep(rankConfig(1, opts.overrides));
  if (E.isLeft(built)) throw new Error(built.left.map(formatError).join('\n'));
  const runner = await StepRunner.compile(built.right.graph, { threads: 1 });
  const state = TrainState.init(runner.signature.state, Prng.seeded(0), initialValues(opts.overrides));
  const metrics: Record<string, number>[] = [];
  for (const [k, scalars] of SCHEDULE.entries()) {
    opts.beforeStep?.(k, state);
    metrics.push(await runner.run(state, opts.reversed ? reversedInputs(k) : rankInputs(k, 0, 1), scalars));
  }
  await runner.release();
  return { state: stateValues(state), metrics };
}
