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
import type { DinoRankInputs } from '../../../runtime/dist/dino-step.ts';

export const GLOBAL_BATCH = 8;
/** One rank's config: `batch` is the rank's images (`ranks` = 1: the one process's whole batch). */
export const rankConfig = (ranks: number): DinoStepConfig => ({ ...TINY_STEP, batch: GLOBAL_BATCH / ranks, clipGrad: 0.02 });

/** Three steps of scheduled scalars: the last layer frozen at step 0; lr, wd, momentum and τ_t changing. */
export const SCHEDULE: readonly ScheduledScalars[] = [
  { lr: 0.01, wd: 0.04, momentum: 0.9, teacher_temp: 0.04, 'gate.last_layer': 0 },
  { lr: 0.005, wd: 0.05, momentum: 0.92, teacher_temp: 0.05, 'gate.last_layer': 1 },
  { lr: 0.008, wd: 0.06, momentum: 0.95, teacher_temp: 0.06, 'gate.last_layer': 1 },
];

/** The global batch of step `step` (standard-normal crops from (seed, step)), view-major as the one-graph step takes it. */
function globalBatch(step: number): { globals: Float32Array; locals: Float32Array } {
  const shapes = dinoStepInputShapes(rankConfig(1));
  const prng = Prng.seeded(1000 + step);
  const crops = (shape: readonly number[]) => Float32Array.from({ length: shape.reduce((a, n) => a * n, 1) }, () => prng.normal());
  return { globals: crops(shapes.globals), locals: crops(shapes.locals!) };
}

/**
 * Rank `rank`'s inputs of step `step`: its images [rank·b, (rank+1)·b) of every view (b = 8 / ranks), the rows the
 * one process holds at view·8 + rank·b, ... of its view-major crops.
 */
export function rankInputs(step: number, rank: number, ranks: number): DinoRankInputs {
  const all = globalBatch(step);
  const shapes = dinoStepInputShapes(rankConfig(ranks));
  const b = GLOBAL_BATCH / ranks;
  const slice = (data: Float32Array, shape: readonly number[]): ort.Tensor => {
    const row = shape.slice(1).reduce((a, n) => a * n, 1), views = shape[0]! / b;
    const out = new Float32Array(shape[0]! * row);
    for (let v = 0; v < views; v++) out.set(data.subarray((v * GLOBAL_BATCH + rank * b) * row, (v * GLOBAL_BATCH + (rank + 1) * b) * row), v * b * row);
    return new ort.Tensor('float32', out, [...shape]);
  };
  return { globals: slice(all.globals, shapes.globals), locals: slice(all.locals, shapes.locals!) };
}

/** The one-graph step's whole initial state: every tensor drawn from seed 5 in signature order, the teacher = the student. */
export function initialValues(): Map<string, Float32Array> {
  const built = buildDinoStep(rankConfig(1));
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
  const reverse = (t: ort.Tensor): ort.Tensor => {
    const data = t.data as Float32Array, rows = t.dims[0]!, row = data.length / rows;
    const out = new Float32Array(data.length);
    for (let r = 0; r < rows; r++) {
      const view = Math.floor(r / GLOBAL_BATCH), image = r % GLOBAL_BATCH;
      out.set(data.subarray(r * row, (r + 1) * row), (view * GLOBAL_BATCH + GLOBAL_BATCH - 1 - image) * row);
    }
    return new ort.Tensor('float32', out, [...t.dims]);
  };
  const inputs = rankInputs(step, 0, 1);
  return { globals: reverse(inputs.globals), locals: reverse(inputs.locals!) };
}

/**
 * The reference: one process, the one-graph step on the whole global batch of 8, 3 steps; its state and metrics.
 * `reversed`: the images of every global batch in reverse order, whose difference from the reference is what float32
 * summation order alone does to this model (the yardstick of the parity tests).
 */
export async function reference(opts: { reversed?: boolean } = {}): Promise<{ state: StateValues; metrics: Record<string, number>[] }> {
  const built = buildDinoStep(rankConfig(1));
  if (E.isLeft(built)) throw new Error(built.left.map(formatError).join('\n'));
  const runner = await StepRunner.compile(built.right.graph, { threads: 1 });
  const state = TrainState.init(runner.signature.state, Prng.seeded(0), initialValues());
  const metrics: Record<string, number>[] = [];
  for (const [k, scalars] of SCHEDULE.entries()) metrics.push(await runner.run(state, opts.reversed ? reversedInputs(k) : rankInputs(k, 0, 1), scalars));
  await runner.release();
  return { state: stateValues(state), metrics };
}
