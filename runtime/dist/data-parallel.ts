/**
 * Drives a data-parallel step (dsl/train/split-step.ts) on one rank: the gradient graph on this rank's slice of the
 * batch, one all-reduce of the packed buffer through a Collective, then the apply graph on the sum. Every rank ends
 * the step with the same state. With a SingleProcess collective it is the two-graph step of one process.
 */
import * as E from 'fp-ts/lib/Either.js';
import { type Graph, type ParamSpec, formatError } from '../../dsl/graph.ts';
import { emitOnnx } from '../../dsl/onnx/emit.ts';
import { METRIC, NEXT, type StepSignature, stepSignature } from '../../dsl/train/step.ts';
import { PACKED, type PackedLayout, packedEntry } from '../../dsl/train/split-step.ts';
import { type SessionOptions, createSession, ort } from '../backend.ts';
import type { StepFeeds } from '../step-runner.ts';
import type { TrainState } from '../state.ts';
import type { Collective } from './collective.ts';

export interface DataParallelResult {
  /** Each `sum` entry of the layout, summed over every rank (a copy). */
  readonly sums: Record<string, Float32Array>;
  /** The apply graph's `metric.*` outputs (the same on every rank). */
  readonly metrics: Record<string, number>;
  /** The gradient graph's `metric.*` outputs: this rank's own, not summed. */
  readonly rankMetrics: Record<string, number>;
  /** Wall time of the all-reduce, milliseconds. */
  readonly allreduceMs: number;
}

function compileGraph(graph: Graph): Uint8Array {
  const bytes = emitOnnx(graph, { params: 'inputs' });
  if (E.isLeft(bytes)) throw new Error(`graph "${graph.name}" is invalid:\n  ${bytes.left.map(formatError).join('\n  ')}`);
  return bytes.right;
}

function metricsOf(sig: StepSignature, out: ort.InferenceSession.ReturnType): Record<string, number> {
  const metrics: Record<string, number> = {};
  for (const m of sig.metrics) metrics[m] = Number(out[METRIC + m]!.data[0]);
  return metrics;
}

export class DataParallelStep {
  private constructor(
    private readonly gradientSession: ort.InferenceSession,
    private readonly applySession: ort.InferenceSession,
    readonly gradientSignature: StepSignature,
    readonly applySignature: StepSignature,
    readonly layout: PackedLayout,
    readonly collective: Collective,
  ) {}

  static async compile(gradient: Graph, apply: Graph, layout: PackedLayout, collective: Collective, opts: SessionOptions = {}): Promise<DataParallelStep> {
    const gradientSignature = stepSignature(gradient), applySignature = stepSignature(apply);
    if (!gradient.outputs.has(PACKED)) throw new Error(`graph "${gradient.name}" has no "${PACKED}" output: build it with addGradientOutputs`);
    const [g, a] = await Promise.all([createSession(compileGraph(gradient), opts), createSession(compileGraph(apply), opts)]);
    return new DataParallelStep(g, a, gradientSignature, applySignature, layout, collective);
  }

  /** Every state tensor either graph reads, gradient graph's first, each once: the specs to build a TrainState from. */
  get stateSpecs(): ParamSpec[] {
    const byName = new Map<string, ParamSpec>();
    for (const s of [...this.gradientSignature.state, ...this.applySignature.state]) if (!byName.has(s.name)) byName.set(s.name, s);
    return [...byName.values()];
  }

  /**
   * One step: `inputs` are this rank's batch tensors; `scalars` the scheduled hyper-parameters (float32), the same on
   * every rank. The state is updated in place.
   */
  async run(state: TrainState, inputs: StepFeeds, scalars: Readonly<Record<string, number>> = {}): Promise<DataParallelResult> {
    const { packed, rankMetrics } = await this.gradients(state, inputs);
    const started = performance.now();
    this.collective.allreduceSum(packed);
    const allreduceMs = performance.now() - started;
    const metrics = await this.apply(state, packed, scalars);
    const sums: Record<string, Float32Array> = {};
    for (const e of this.layout.entries) if (e.kind === 'sum') sums[e.name] = Float32Array.from(packedEntry(this.layout, packed, e.name));
    return { sums, metrics, rankMetrics, allreduceMs };
  }

  /** The gradient graph alone, on this rank's batch: its packed buffer (not yet summed) and its own metrics. Updates buffers in `state`. */
  async gradients(state: TrainState, inputs: StepFeeds): Promise<{ packed: Float32Array; rankMetrics: Record<string, number> }> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(inputs)) if (t) feeds[name] = t;
    for (const spec of this.gradientSignature.state) feeds[spec.name] = state.get(spec.name);
    for (const inp of this.gradientSignature.inputs) {
      if (!(inp.name in feeds)) throw new Error(`gradient graph input "${inp.name}" was not given (expected ${inp.dtype}[${inp.shape}])`);
    }
    const out = await this.gradientSession.run(feeds);
    for (const name of this.gradientSignature.updates) state.set(name, out[NEXT + name]!);
    return { packed: out[PACKED]!.data as Float32Array, rankMetrics: metricsOf(this.gradientSignature, out) };
  }

  /** The apply graph alone, on the summed packed buffer: updates `state` in place, returns the apply graph's metrics. */
  async apply(state: TrainState, packed: Float32Array, scalars: Readonly<Record<string, number>> = {}): Promise<Record<string, number>> {
    if (packed.length !== this.layout.total) throw new Error(`packed buffer has ${packed.length} elements, the layout ${this.layout.total}`);
    const feeds: Record<string, ort.Tensor> = { [PACKED]: new ort.Tensor('float32', packed, [packed.length]) };
    for (const spec of this.applySignature.state) feeds[spec.name] = state.get(spec.name);
    for (const inp of this.applySignature.inputs) {
      if (inp.name === PACKED) continue;
      const v = scalars[inp.name];
      if (v === undefined) throw new Error(`apply graph scalar "${inp.name}" was not given (give it in scalars, e.g. { ${inp.name}: ... })`);
      feeds[inp.name] = new ort.Tensor('float32', Float32Array.of(v), []);
    }
    const out = await this.applySession.run(feeds);
    for (const name of this.applySignature.updates) state.set(name, out[NEXT + name]!);
    return metricsOf(this.applySignature, out);
  }

  async release(): Promise<void> {
    await Promise.all([this.gradientSession.release(), this.applySession.release()]);
  }
}
