/**
 * Drives a compiled step graph: feeds state + batch + scalars, swaps the `next.*` outputs into the
 * state (no copy: the output tensors become the next inputs), returns the metrics.
 */
import * as E from 'fp-ts/lib/Either.js';
import type { Graph } from '../dsl/graph.ts';
import { formatError } from '../dsl/graph.ts';
import { emitOnnx } from '../dsl/onnx/emit.ts';
import { METRIC, NEXT, type StepSignature, stepSignature } from '../dsl/train/step.ts';
import { type SessionOptions, createSession, ort } from './backend.ts';
import type { TrainState } from './state.ts';

export class StepRunner {
  private constructor(
    readonly session: ort.InferenceSession,
    readonly signature: StepSignature,
    readonly onnxBytes: Uint8Array,
  ) {}

  /** Emits `graph` to ONNX and opens a session for it. Throws with every graph problem listed. */
  static async compile(graph: Graph, opts: SessionOptions = {}): Promise<StepRunner> {
    const bytes = emitOnnx(graph, { params: 'inputs' });
    if (E.isLeft(bytes)) throw new Error(`graph "${graph.name}" is invalid:\n  ${bytes.left.map(formatError).join('\n  ')}`);
    return new StepRunner(await createSession(bytes.right, opts), stepSignature(graph), bytes.right);
  }

  /**
   * One step. `inputs` holds the batch tensors; `scalars` the scheduled hyper-parameters (float32).
   * The state is updated in place; the metrics are returned as numbers.
   */
  async run(state: TrainState, inputs: Readonly<Record<string, ort.Tensor>>, scalars: Readonly<Record<string, number>> = {}): Promise<Record<string, number>> {
    const feeds: Record<string, ort.Tensor> = { ...inputs };
    for (const spec of this.signature.state) feeds[spec.name] = state.get(spec.name);
    for (const [name, v] of Object.entries(scalars)) feeds[name] = new ort.Tensor('float32', Float32Array.of(v), []);
    for (const inp of this.signature.inputs) {
      if (!(inp.name in feeds)) throw new Error(`step input "${inp.name}" was not given (expected ${inp.dtype}[${inp.shape}])`);
    }
    const out = await this.session.run(feeds);
    for (const name of this.signature.updates) state.set(name, out[NEXT + name]!);
    const metrics: Record<string, number> = {};
    for (const m of this.signature.metrics) metrics[m] = Number(out[METRIC + m]!.data[0]);
    return metrics;
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
