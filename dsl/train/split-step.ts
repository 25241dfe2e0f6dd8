/**
 * A training step compiled as two graphs, for data parallelism (docs/DISTRIBUTED.md): every rank runs the *gradient
 * graph* on its slice of the global batch, the ranks sum one packed float32 buffer (an all-reduce), and every rank
 * runs the same *apply graph* on the sum, so all ranks keep the same state.
 *
 * - Gradient graph (`addGradientOutputs`): the caller's forward pass and loss, the backward pass, and one output
 *   `packed`: the gradients of the trained parameters, flattened and concatenated, then any extra quantities the
 *   caller wants summed over ranks (metric sums, DINO's batch center sum), flattened too. Buffer updates of the
 *   forward pass are emitted as `next.*` as in the one-graph step.
 * - Apply graph (`buildApplyGraph`): state inputs (the trained parameters and their optimizer state), the summed
 *   `packed` buffer and the scalars (`lr`, `wd`, `gate.*`); per-parameter clipping, AdamW/SGD and gates exactly as
 *   `addOptimizerStep` (they share `addParameterUpdates`); `next.*` outputs.
 *
 * Sums, not means: the all-reduce adds the ranks' buffers, so each rank's loss must be its share of the global loss.
 * For a loss that is a mean over the global batch of B_global samples, a rank holding B_rank of them uses its own
 * mean times B_rank / B_global (1/N with equal slices); the summed gradient is then the gradient of the global mean.
 * The same holds for every quantity in `sums`.
 *
 * The one-graph step (`addOptimizerStep`) is unchanged: a single process keeps compiling it.
 */
import * as E from 'fp-ts/lib/Either.js';
import { type DslError, Graph, type ParamSpec, type Tensor, specOf } from '../graph.ts';
import { gradients } from '../autodiff.ts';
import { mul, sqrt } from '../ops/elementwise.ts';
import { concat, reshape, split, zerosLike } from '../ops/layout.ts';
import { type LossScaling, type LossScalingResult, finishLossScaling, lossScaleState, lossScaler } from './loss-scale.ts';
import { NEXT, type OptimizerConfig, addParameterUpdates } from './step.ts';

/** The gradient graph's output holding the packed gradients and sums, and the apply graph's input for their sum. */
export const PACKED = 'packed';

export interface PackedEntry {
  /** Graph-input name of the parameter (`kind: 'grad'`), or the caller's name of a summed quantity (`kind: 'sum'`). */
  readonly name: string;
  readonly kind: 'grad' | 'sum';
  /** The parameter's spec (gradients only). */
  readonly spec?: ParamSpec;
  readonly shape: readonly number[];
  /** First element in the packed buffer, and element count. */
  readonly offset: number;
  readonly size: number;
}

/** Where each gradient and sum lies in the packed buffer (gradients first, in parameter order, then sums). */
export interface PackedLayout {
  readonly entries: readonly PackedEntry[];
  /** Elements in the packed buffer. */
  readonly total: number;
}

/** The values of entry `name` in a packed buffer (a view, not a copy). */
export function packedEntry(layout: PackedLayout, packed: Float32Array, name: string): Float32Array {
  const e = layout.entries.find((x) => x.name === name);
  if (!e) throw new Error(`packed buffer has no entry "${name}" (entries: ${layout.entries.map((x) => x.name).join(', ')})`);
  if (packed.length !== layout.total) throw new Error(`packed buffer has ${packed.length} elements, its layout ${layout.total}`);
  return packed.subarray(e.offset, e.offset + e.size);
}

export interface GradientOutputOptions {
  /** This rank's share of the global loss (see the file comment on scaling). */
  readonly loss: Tensor;
  /** Which parameters the optimizer trains, by graph-input name (default: every trainable `param`), as addOptimizerStep. */
  readonly select?: (inputName: string, spec: ParamSpec) => boolean;
  /** Float32 quantities summed over ranks with the gradients (each rank's share, like the loss), by name. */
  readonly sums?: ReadonlyMap<string, Tensor>;
  /**
   * Dynamic loss scaling (dsl/train/loss-scale.ts): the packed gradients are of `loss * scale` (the scale read from the
   * state the apply graph updates); the sums are not scaled. Give the apply graph the same settings.
   */
  readonly lossScaling?: LossScaling;
}

/** Adds the backward pass and the `packed` output to the forward graph `graph`; returns the buffer's layout. */
export function addGradientOutputs(graph: Graph, opts: GradientOutputOptions): E.Either<DslError[], PackedLayout> {
  const select = opts.select ?? ((_: string, spec: ParamSpec) => spec.kind === 'param' && spec.trainable);
  const trained = [...graph.params].filter(([name, t]) => select(name, specOf(t)));
  if (trained.length === 0) return E.left([{ op: 'gradient-step', path: '', message: 'no trainable parameters selected', shapes: [] }]);
  for (const [name, t] of opts.sums ?? []) {
    if (t.dtype !== 'float32') return E.left([{ op: 'gradient-step', path: '', message: `sum "${name}" is ${t.dtype}; the packed buffer is float32`, shapes: [] }]);
    if (t.shape.some((d) => typeof d !== 'number')) return E.left([{ op: 'gradient-step', path: '', message: `sum "${name}" has a symbolic shape`, shapes: [] }]);
    if (trained.some(([p]) => p === name)) return E.left([{ op: 'gradient-step', path: '', message: `sum "${name}" has the name of a parameter`, shapes: [] }]);
  }
  const scaling = opts.lossScaling;
  const loss = scaling ? graph.within('loss_scaling', () => mul(opts.loss, lossScaleState(graph, scaling))) : opts.loss;
  const grads = gradients(loss, trained.map(([, t]) => t));
  if (E.isLeft(grads)) return grads;

  const entries: PackedEntry[] = [];
  const flat: Tensor[] = [];
  let offset = 0;
  const pack = (name: string, kind: 'grad' | 'sum', value: Tensor, spec?: ParamSpec) => {
    const shape = value.shape as readonly number[];
    const size = shape.reduce((a, b) => a * b, 1);
    entries.push({ name, kind, ...(spec ? { spec } : {}), shape, offset, size });
    flat.push(reshape(value, [size]));
    offset += size;
  };
  graph.within('pack', () => {
    trained.forEach(([name, p], i) => pack(name, 'grad', grads.right[i] ?? zerosLike(p), specOf(p)));
    for (const [name, t] of opts.sums ?? []) pack(name, 'sum', t);
    graph.output(PACKED, concat(flat, 0));
  });
  for (const [name, value] of graph.bufferUpdates) graph.output(NEXT + name, value);
  return E.right({ entries, total: offset });
}

export interface ApplyGraphOptions {
  readonly optimizer: OptimizerConfig;
  /** Per-parameter gradient-norm clipping threshold, as addOptimizerStep. */
  readonly clipGrad?: number;
  /** Update gates, as addOptimizerStep. */
  readonly gateOf?: (inputName: string, spec: ParamSpec) => string | undefined;
  /** The graph's name (default `apply_step`). */
  readonly name?: string;
  /**
   * Dynamic loss scaling, as the gradient graph's: the summed gradients are divided by the scale before clipping; a
   * sum with an Inf or NaN anywhere (one rank's overflow reaches every rank through the all-reduce, so all ranks
   * decide alike) leaves every `next.` output of this function at its old value, and the scale backs off. State the
   * caller adds afterwards must go through the result's `lossScaling.keep`.
   */
  readonly lossScaling?: LossScaling;
}

export interface ApplyGraph {
  readonly graph: Graph;
  /** Graph inputs for the scalars: `lr`, `wd` and the gates, by name. */
  readonly scalars: ReadonlyMap<string, Tensor>;
  /** Global norm of the summed gradients before clipping. */
  readonly gradNorm: Tensor;
  /** The updated value of each trained parameter, by graph-input name (also emitted as `next.<name>`). */
  readonly updated: ReadonlyMap<string, Tensor>;
  /** The summed extra quantities, shaped as given to addGradientOutputs, for state updates the caller adds (DINO's center). */
  readonly sums: ReadonlyMap<string, Tensor>;
  /** With `lossScaling`: the scale used, whether the step was skipped, and the gate for later state. */
  readonly lossScaling?: LossScalingResult;
}

/**
 * The apply graph for a packed layout. Its state inputs carry the parameters' graph-input names and specs, so one
 * TrainState feeds both graphs; the caller may add more state updates to `graph` (e.g. DINO's teacher EMA from `updated`).
 */
export function buildApplyGraph(layout: PackedLayout, opts: ApplyGraphOptions): E.Either<DslError[], ApplyGraph> {
  const graph = new Graph(opts.name ?? 'apply_step');
  const packed = graph.input(PACKED, 'float32', [layout.total]);
  const parts = layout.entries.length === 1 ? [packed] : split(packed, layout.entries.map((e) => e.size), 0);
  const trained: (readonly [string, Tensor])[] = [];
  const grads: Tensor[] = [];
  const sums = new Map<string, Tensor>();
  layout.entries.forEach((e, i) => {
    const value = reshape(parts[i]!, e.shape);
    if (e.kind === 'sum') return void sums.set(e.name, value);
    if (!e.spec || !e.name.endsWith(e.spec.name)) throw new Error(`packed entry "${e.name}" is a gradient without the spec of its parameter`);
    // The graph-input name is a prefix (`student.`) and the parameter's name, as Graph.param keys it.
    trained.push([e.name, graph.param(e.spec, e.name.slice(0, e.name.length - e.spec.name.length))]);
    grads.push(value);
  });
  if (trained.length === 0) return E.left([{ op: 'apply-step', path: '', message: 'the packed layout has no gradients', shapes: [] }]);
  const scaler = opts.lossScaling ? lossScaler(graph, opts.lossScaling) : undefined;
  const { scalars, updated, sumSq } = addParameterUpdates(graph, trained, grads, opts, scaler);
  const lossScaling = scaler ? finishLossScaling(graph, scaler, sumSq, NEXT) : undefined;
  // Later state (DINO's teacher EMA) reads the kept parameters, so no Inf of a skipped step reaches it.
  if (lossScaling) for (const [name, next] of updated) updated.set(name, graph.outputs.get(NEXT + name) ?? next);
  if (graph.errors.length > 0) return E.left(graph.errors);
  return E.right({ graph, scalars, gradNorm: sqrt(sumSq), updated, sums, ...(lossScaling ? { lossScaling } : {}) });
}
