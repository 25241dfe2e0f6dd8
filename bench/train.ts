/**
 * The DINO training step, timed as training runs it: `StepRunner` feeds the whole state, the crops and the
 * scheduled scalars, and swaps the `next.*` outputs into the state. Crops are made once beforehand
 * (augmentation is timed separately, see augment.ts).
 */
import * as E from 'fp-ts/lib/Either.js';
import { Prng, formatError } from '../dsl/index.ts';
import { type FlopCount, type Phase, countFlops } from '../dsl/flops.ts';
import type { Node } from '../dsl/graph.ts';
import { type DinoStepGraph, buildDinoStep } from '../models/dino-step.ts';
import { type Recompute, sampleDropPathMasks } from '../models/vit.ts';
import { type ExecutionProvider, type SessionOptions, ort } from '../runtime/backend.ts';
import type { MultiCropBatch } from '../runtime/data/multicrop.ts';
import { type TrainConfig, scheduleConfig, stepConfig } from '../runtime/dino/config.ts';
import { stepScalars } from '../runtime/dino/schedules.ts';
import { TrainState } from '../runtime/state.ts';
import { StepRunner } from '../runtime/step-runner.ts';
import { type ActivationEstimate, estimateActivations } from './memory.ts';
import { type Timing, peakRssMb, timeRepeated } from './measure.ts';

export interface TrainBenchOptions {
  /** The preset, with the batch to bench. */
  readonly config: TrainConfig;
  readonly crops: MultiCropBatch;
  readonly ep: ExecutionProvider;
  readonly threads: number;
  readonly warmup: number;
  readonly steps: number;
  /** Extra session options (graph optimisation level, profiling). */
  readonly session?: Omit<SessionOptions, 'ep' | 'threads'>;
  /** Student activations recomputed in the backward pass (see `Recompute`); default `none`. */
  readonly recompute?: Recompute;
}

export interface TrainBenchResult {
  readonly buildMs: number;
  readonly compileMs: number;
  readonly onnxBytes: number;
  readonly flops: FlopCount;
  readonly stateTensors: number;
  readonly stateBytes: number;
  /** Bytes of the state tensors the step returns (`next.*`). */
  readonly updatedBytes: number;
  readonly step: Timing;
  readonly imagesPerS: number;
  readonly gflopsPerS: number;
  readonly activations: ActivationEstimate;
  /** Peak RSS of the process after the timed steps, MiB. */
  readonly peakRssMb: number;
}

/** DINO-step phases for the FLOP count: the teacher EMA belongs to the update. */
export function dinoPhase(node: Node): Phase {
  if (node.path === 'grad' || node.path.startsWith('grad/')) return 'backward';
  if (node.path.startsWith('optimizer') || node.path.startsWith('teacher_ema')) return 'update';
  return 'forward';
}

/** The step graph of `config`, with the student's activations recomputed as `recompute` says. */
export function buildStepGraph(config: TrainConfig, opts: { recompute?: Recompute } = {}): DinoStepGraph {
  const built = buildDinoStep({ ...stepConfig(config), recompute: opts.recompute ?? 'none' });
  if (E.isLeft(built)) throw new Error(`DINO step graph for ${config.preset}: ${built.left.map(formatError).join('\n  ')}`);
  return built.right;
}

/** The non-state inputs of one step: crops and drop-path masks (as the training loop draws them). */
export function stepInputs(config: TrainConfig, crops: MultiCropBatch, prng: Prng): Record<string, ort.Tensor> {
  const b = config.batch, c = crops.channels, gs = crops.globalSize, ls = crops.localSize, lc = crops.localCrops;
  if (crops.batchSize !== b) throw new Error(`crops are for a batch of ${crops.batchSize}, the step for ${b}`);
  const inputs: Record<string, ort.Tensor> = { globals: new ort.Tensor('float32', crops.globals, [2 * b, c, gs, gs]) };
  if (lc > 0) inputs['locals'] = new ort.Tensor('float32', crops.locals, [lc * b, c, ls, ls]);
  const bb = config.backbone;
  if (bb.dropPathRate > 0) {
    inputs['drop_path.globals'] = new ort.Tensor('float32', sampleDropPathMasks(prng, bb, 2 * b), [bb.depth, 2, 2 * b]);
    if (lc > 0) inputs['drop_path.locals'] = new ort.Tensor('float32', sampleDropPathMasks(prng, bb, lc * b), [bb.depth, 2, lc * b]);
  }
  return inputs;
}

export interface CompiledStep {
  readonly runner: StepRunner;
  readonly state: TrainState;
  readonly inputs: Record<string, ort.Tensor>;
  readonly scalars: Record<string, number>;
}

export async function benchTrainStep(opts: TrainBenchOptions): Promise<{ result: TrainBenchResult; compiled: CompiledStep }> {
  const { config } = opts;
  let t0 = performance.now();
  const built = buildStepGraph(config, opts);
  const buildMs = performance.now() - t0;
  const flops = countFlops(built.graph, { phaseOf: dinoPhase });
  const activations = estimateActivations(built.graph);
  t0 = performance.now();
  const runner = await StepRunner.compile(built.graph, { ep: opts.ep, threads: opts.threads, ...opts.session });
  const compileMs = performance.now() - t0;

  const prng = Prng.seeded(config.seed);
  const state = TrainState.init(runner.signature.state, prng);
  const inputs = stepInputs(config, opts.crops, prng);
  // A mid-run step (the gate of a frozen last layer selects, it does not skip work: the cost is the same).
  const scalars = stepScalars(scheduleConfig(config), Math.floor(config.steps / 2), config.steps);
  const step = await timeRepeated(async () => {
    const metrics = await runner.run(state, inputs, scalars);
    if (!Number.isFinite(metrics['loss'])) throw new Error(`the benchmarked step produced loss ${metrics['loss']}`);
  }, opts.warmup, opts.steps);

  const bytes = (name: string) => state.values(name).byteLength;
  const result: TrainBenchResult = {
    buildMs,
    compileMs,
    onnxBytes: runner.onnxBytes.byteLength,
    flops,
    stateTensors: runner.signature.state.length,
    stateBytes: runner.signature.state.reduce((s, spec) => s + bytes(spec.name), 0),
    updatedBytes: runner.signature.updates.reduce((s, name) => s + bytes(name), 0),
    step,
    imagesPerS: (config.batch * 1000) / step.medianMs,
    gflopsPerS: flops.total / (step.medianMs * 1e6),
    activations,
    peakRssMb: peakRssMb(),
  };
  return { result, compiled: { runner, state, inputs, scalars } };
}
