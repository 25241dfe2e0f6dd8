/**
 * Drives a compiled step graph: feeds state + batch + scalars, swaps the `next.*` outputs into the
 * state (no copy: the output tensors become the next inputs), returns the metrics. `runSteps` does K
 * steps in one run through the K-step model (dsl/train/multi-step.ts), so the state crosses between host
 * and device once per K steps instead of every step.
 */
import * as E from 'fp-ts/lib/Either.js';
import type { Graph } from '../dsl/graph.ts';
import { formatError } from '../dsl/graph.ts';
import { emitOnnx } from '../dsl/onnx/emit.ts';
import { METRIC, NEXT, type StepSignature, stepSignature } from '../dsl/train/step.ts';
import { STEPS_INPUT, multiStepModel } from '../dsl/train/multi-step.ts';
import { type SessionOptions, createSession, ort } from './backend.ts';
import type { TrainState } from './state.ts';

/**
 * Per-step input tensors by graph-input name. An absent entry (`undefined`) is not fed, so typed records with
 * optional inputs (models/dino-step.ts `DinoStepInputs`) pass as they are.
 */
export type StepFeeds = { readonly [name: string]: ort.Tensor | undefined };

/** Copies the given entries of `feeds` (skipping absent ones) into `into`. */
function addFeeds(into: Record<string, ort.Tensor>, feeds: StepFeeds): Record<string, ort.Tensor> {
  for (const [name, t] of Object.entries(feeds)) if (t) into[name] = t;
  return into;
}

export class StepRunner {
  private multi?: Promise<ort.InferenceSession>;

  private constructor(
    readonly session: ort.InferenceSession,
    readonly signature: StepSignature,
    readonly onnxBytes: Uint8Array,
    private readonly sessionOptions: SessionOptions,
  ) {}

  /** Emits `graph` to ONNX and opens a session for it. Throws with every graph problem listed. */
  static async compile(graph: Graph, opts: SessionOptions = {}): Promise<StepRunner> {
    const bytes = emitOnnx(graph, { params: 'inputs' });
    if (E.isLeft(bytes)) throw new Error(`graph "${graph.name}" is invalid:\n  ${bytes.left.map(formatError).join('\n  ')}`);
    const signature = stepSignature(graph);
    // The state outputs stay on the device where the EP can keep them (WebGPU; ep/device-state.ts).
    const so: SessionOptions = opts.keepStateOnDevice ? { ...opts, deviceOutputs: signature.updates.map((n) => NEXT + n) } : opts;
    return new StepRunner(await createSession(bytes.right, so), signature, bytes.right, so);
  }

  /**
   * One step. `inputs` holds the batch tensors; `scalars` the scheduled hyper-parameters (float32).
   * The state is updated in place; the metrics are returned as numbers.
   */
  async run(state: TrainState, inputs: StepFeeds, scalars: Readonly<Record<string, number>> = {}): Promise<Record<string, number>> {
    const feeds = addFeeds({}, inputs);
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

  /**
   * The session of the K-step model, opened on first use with this runner's session options (a runner
   * that never calls `runSteps` holds no second session). Call it ahead to keep the compile out of a timing.
   */
  multiStepSession(): Promise<ort.InferenceSession> {
    this.multi ??= createSession(multiStepModel(this.onnxBytes, this.signature), this.sessionOptions);
    return this.multi;
  }

  /**
   * K = `scalarsPerStep.length` consecutive steps in one run. `stacked` holds every per-step input under its
   * step name with a leading axis of length K (`stackSteps` builds them from per-step tensors); scalars come
   * per step (`scalarsPerStep[k]` as `run`'s `scalars`), or stacked as float32 [K] in `stacked`. The state is
   * updated in place as by K `run` calls; the metrics of every step are returned, step by step.
   */
  async runSteps(
    state: TrainState,
    stacked: StepFeeds,
    scalarsPerStep: readonly Readonly<Record<string, number>>[],
  ): Promise<Record<string, number>[]> {
    const k = scalarsPerStep.length;
    if (k < 1) throw new Error('runSteps: no steps asked for (scalarsPerStep is empty; give one entry per step, {} where a step has no scalars)');
    const feeds = addFeeds({}, stacked);
    const scalarNames = new Set(scalarsPerStep.flatMap((s) => Object.keys(s)));
    for (const name of scalarNames) {
      if (stacked[name]) throw new Error(`runSteps: "${name}" is given both stacked and per step`);
      const v = new Float32Array(k);
      for (let i = 0; i < k; i++) {
        const x = scalarsPerStep[i]![name];
        if (x === undefined) throw new Error(`runSteps: scalar "${name}" is missing at step ${i} of ${k}`);
        v[i] = x;
      }
      feeds[name] = new ort.Tensor('float32', v, [k]);
    }
    const expected = new Map(this.signature.inputs.map((i) => [i.name, i]));
    for (const name of Object.keys(feeds)) {
      if (!expected.has(name)) throw new Error(`runSteps: "${name}" is not a per-step input of the step (those are: ${[...expected.keys()].join(', ')})`);
    }
    for (const inp of this.signature.inputs) {
      const want = `${inp.dtype}[${[k, ...inp.shape].join(',')}]`;
      const t = feeds[inp.name];
      if (!t) throw new Error(`runSteps: step input "${inp.name}" was not given (expected ${want}: ${k} steps stacked on axis 0)`);
      const dims = t.dims;
      const fits = t.type === inp.dtype && dims.length === inp.shape.length + 1 && dims[0] === k && inp.shape.every((d, i) => typeof d !== 'number' || d === dims[i + 1]);
      if (!fits) throw new Error(`runSteps: stacked input "${inp.name}" is ${t.type}[${dims}], expected ${want} (${k} steps stacked on axis 0)`);
    }
    for (const spec of this.signature.state) feeds[spec.name] = state.get(spec.name);
    feeds[STEPS_INPUT] = new ort.Tensor('int64', BigInt64Array.of(BigInt(k)), []);
    const out = await (await this.multiStepSession()).run(feeds);
    for (const name of this.signature.updates) state.set(name, out[NEXT + name]!);
    const metrics = Array.from({ length: k }, () => ({}) as Record<string, number>);
    for (const m of this.signature.metrics) {
      const data = out[METRIC + m]!.data;
      for (let i = 0; i < k; i++) metrics[i]![m] = Number(data[i]);
    }
    return metrics;
  }

  async release(): Promise<void> {
    await this.session.release();
    // A K-step session that failed to open has nothing to release.
    const multi = await this.multi?.catch(() => undefined);
    await multi?.release();
  }
}

/**
 * Per-step input tensors stacked along a new leading axis, for `runSteps`: every step must give the same
 * names with the same dtypes and shapes.
 */
export function stackSteps(perStep: readonly StepFeeds[]): Record<string, ort.Tensor> {
  const given = perStep.map((step) => addFeeds({}, step));
  const first = given[0];
  if (!first) throw new Error('stackSteps: no steps');
  const out: Record<string, ort.Tensor> = {};
  for (const [name, t0] of Object.entries(first)) {
    const n = t0.size;
    const data = t0.data;
    if (!ArrayBuffer.isView(data)) throw new Error(`stackSteps: "${name}" is not a CPU tensor`);
    const ctor = data.constructor as new (n: number) => Float32Array;
    const all = new ctor(n * perStep.length);
    given.forEach((step, i) => {
      const t = step[name];
      if (!t) throw new Error(`stackSteps: step ${i} has no "${name}"`);
      if (t.type !== t0.type || t.dims.join(',') !== t0.dims.join(',')) {
        throw new Error(`stackSteps: "${name}" is ${t.type}[${t.dims}] at step ${i}, ${t0.type}[${t0.dims}] at step 0`);
      }
      all.set(t.data as Float32Array, i * n);
    });
    out[name] = new ort.Tensor(t0.type, all as any, [perStep.length, ...t0.dims]);
  }
  for (const [i, step] of given.entries()) {
    for (const name of Object.keys(step)) if (!(name in first)) throw new Error(`stackSteps: step ${i} has "${name}", step 0 does not`);
  }
  return out;
}
