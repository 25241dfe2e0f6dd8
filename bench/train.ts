/**
 * The DINO training step, timed as training runs it: `StepRunner` feeds the whole state, the crops and the
 * scheduled scalars, and swaps the `next.*` outputs into the state. Crops are made once beforehand
 * (augmentation is timed separately, see augment.ts).
 */
import { Prng } from '../dsl/index.ts';
import { type FlopCount, type Phase, countFlops } from '../dsl/flops.ts';
import type { Node } from '../dsl/graph.ts';
import type { DinoStepGraph, DinoStepInputs, ScheduledScalars } from '../models/dino-step.ts';
import type { Recompute } from '../models/vit.ts';
import type { ExecutionProvider, SessionOptions, ort } from '../runtime/backend.ts';
import type { MultiCropBatch } from '../runtime/data/multicrop.ts';
import { type TrainConfig, stepConfig } from '../runtime/dino/config.ts';
import { stepScalars } from '../runtime/dino/schedules.ts';
import { trainingStepGraph } from '../runtime/dino/step-graph.ts';
import { dinoStepFeeds } from '../runtime/dino/step-feeds.ts';
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

/**
 * The step graph of `config` on `opts.ep` (default cpu): training's own (`trainingStepGraph`), with the student's
 * activations recomputed as `recompute` says (default `none` here, the bench's baseline; training's default is
 * DEFAULT_RECOMPUTE).
 */
export function buildStepGraph(config: TrainConfig, opts: { recompute?: Recompute; ep?: ExecutionProvider } = {}): DinoStepGraph {
  return trainingStepGraph(config, { recompute: opts.recompute ?? 'none', ...(opts.ep ? { ep: opts.ep } : {}) });
}

/** The batch inputs of one step: crops and drop-path masks drawn from `prng` (as the training loop builds them). */
export function stepInputs(config: TrainConfig, crops: MultiCropBatch, prng: Prng): DinoStepInputs<ort.Tensor> {
  return dinoStepFeeds(stepConfig(config), crops, () => prng);
}

/** The scheduled scalars of a mid-run step (the gate of a frozen last layer selects, it does not skip work). */
export function midRunScalars(config: TrainConfig, offset = 0): ScheduledScalars {
  return stepScalars(config, Math.floor(config.steps / 2) + offset);
}

export interface CompiledStep {
  readonly runner: StepRunner;
  readonly state: TrainState;
  readonly inputs: DinoStepInputs<ort.Tensor>;
  readonly scalars: ScheduledScalars;
}

export async function benchTrainStep(opts: TrainBenchOptions): Promise<{ result: TrainBenchResult; compiled: CompiledStep }> {
  const { config } = opts;
  let t0 = performance.now();
  const built = buildStepGraph(config, { ...(opts.recompute ? { recompute: opts.recompute } : {}), ep: opts.ep });
  const buildMs = performance.now() - t0;
  const flops = countFlops(built.graph, { phaseOf: dinoPhase });
  const activations = estimateActivations(built.graph);
  t0 = performance.now();
  const runner = await StepRunner.compile(built.graph, { ep: opts.ep, threads: opts.threads, ...opts.session });
  const compileMs = performance.now() - t0;

  const prng = Prng.seeded(config.seed);
  const state = TrainState.init(runner.signature.state, prng);
  const inputs = stepInputs(config, opts.crops, prng);
  const scalars = midRunScalars(config);
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
