/**
 * DINO's data-parallel step on one rank (models/dino-step-split.ts, docs/DISTRIBUTED.md): the gradient graph on this
 * rank's slice of the global batch, one all-reduce of the packed buffer, the apply graph on the sum. Takes the inputs
 * and scheduled scalars of the one-graph step and returns its metrics, each the whole global batch's value, the same
 * on every rank.
 */
import * as E from 'fp-ts/lib/Either.js';
import { type Target, formatError } from '../../dsl/index.ts';
import type { DinoMetrics, DinoStepConfig, DinoStepInputs, ScheduledScalars } from '../../models/dino-step.ts';
import { type DinoSplitStep, GRADIENT_SCALARS, buildDinoStepSplit } from '../../models/dino-step-split.ts';
import { type SessionOptions, ort } from '../backend.ts';
import type { TrainState } from '../state.ts';
import type { ParamSpec } from '../../dsl/graph.ts';
import type { Collective } from './collective.ts';
import { DataParallelStep } from './data-parallel.ts';

export interface DinoDataParallelResult {
  /** The step's metrics for the whole global batch (`dinoMetricNames`), the same on every rank. */
  readonly metrics: DinoMetrics & Readonly<Record<string, number>>;
  /** Wall time of the all-reduce, milliseconds. */
  readonly allreduceMs: number;
}

/** This rank's batch tensors (its `cfg.batch` images of each view), as the one-graph step takes them. */
export type DinoRankInputs = DinoStepInputs<ort.Tensor>;

export class DinoDataParallelStep {
  private constructor(
    /** The generic two-graph driver underneath (its `gradients` and `apply` run the halves alone). */
    readonly step: DataParallelStep,
    readonly split: DinoSplitStep,
  ) {}

  /** Builds the split step of `cfg` (`cfg.batch` images per rank) for `collective.size` ranks and compiles both graphs. */
  static async compile(cfg: DinoStepConfig, collective: Collective, opts: SessionOptions & { target?: Target } = {}): Promise<DinoDataParallelStep> {
    const { target, ...session } = opts;
    const built = buildDinoStepSplit(cfg, target, { ranks: collective.size });
    if (E.isLeft(built)) throw new Error(`the data-parallel DINO step cannot be built:\n  ${built.left.map(formatError).join('\n  ')}`);
    const step = await DataParallelStep.compile(built.right.gradient, built.right.apply, built.right.layout, collective, session);
    return new DinoDataParallelStep(step, built.right);
  }

  /** Every state tensor the two graphs read (student, teacher, center, optimizer): the specs to build a TrainState from. */
  get stateSpecs(): ParamSpec[] {
    return this.step.stateSpecs;
  }

  /** One step on every rank together: this rank's `inputs`; `scalars` as the one-graph step's, the same on every rank. */
  async run(state: TrainState, inputs: DinoRankInputs, scalars: ScheduledScalars): Promise<DinoDataParallelResult> {
    const r = await this.step.run(state, this.gradientFeeds(inputs, scalars), scalars);
    return { metrics: r.metrics as DinoDataParallelResult['metrics'], allreduceMs: r.allreduceMs };
  }

  /** The gradient graph alone on this rank's inputs: its packed buffer, not yet summed (for tests simulating ranks). */
  async gradients(state: TrainState, inputs: DinoRankInputs, scalars: ScheduledScalars): Promise<Float32Array> {
    return (await this.step.gradients(state, this.gradientFeeds(inputs, scalars))).packed;
  }

  /** The apply graph alone on the ranks' summed packed buffer; returns the step's metrics. */
  async apply(state: TrainState, packed: Float32Array, scalars: ScheduledScalars): Promise<DinoDataParallelResult['metrics']> {
    return (await this.step.apply(state, packed, scalars)) as DinoDataParallelResult['metrics'];
  }

  private gradientFeeds(inputs: DinoRankInputs, scalars: ScheduledScalars): Record<string, ort.Tensor | undefined> {
    const feeds: Record<string, ort.Tensor | undefined> = { ...inputs };
    for (const name of GRADIENT_SCALARS) feeds[name] = new ort.Tensor('float32', Float32Array.of(scalars[name]), []);
    return feeds;
  }

  async release(): Promise<void> {
    await this.step.release();
  }
}
