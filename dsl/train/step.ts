/**
 * Compiling a training *step* graph (docs/ARCHITECTURE.md, "Training step graphs"): `state, batch, scalars -> state', metrics`.
 *
 * State is every parameter/buffer/optimizer tensor of the graph (`graph.params`), fed by name. A state
 * tensor X that the step changes has an output `next.X`; state without such an output is unchanged
 * (frozen weights, the teacher in a graph that does not update it), so it never travels back.
 * Scheduled hyper-parameters are scalar inputs: `lr`, `wd`, and one `gate.<name>` per update gate.
 */
import * as E from 'fp-ts/lib/Either.js';
import { type DslError, type Graph, type ParamSpec, type Tensor, specOf } from '../graph.ts';
import { gradients } from '../autodiff.ts';
import { add, mul, sqrt } from '../ops/elementwise.ts';
import { zerosLike } from '../ops/layout.ts';
import { ADAMW_DEFAULTS, type AdamWHyper, adamw, clipCoefficient, gated, norm, sgd } from './optim.ts';
import { type LossScaler, type LossScaling, type LossScalingResult, finishLossScaling, lossScaler } from './loss-scale.ts';

export const NEXT = 'next.';
export const METRIC = 'metric.';

export type OptimizerConfig =
  | { readonly kind: 'adamw'; readonly hyper?: AdamWHyper }
  | { readonly kind: 'sgd'; readonly momentum: number };

export interface OptimizerStepOptions {
  readonly loss: Tensor;
  readonly optimizer: OptimizerConfig;
  /** Per-parameter gradient-norm clipping threshold (DINO: 3.0); none when undefined. */
  readonly clipGrad?: number;
  /** Which parameters the optimizer trains, by graph-input name (default: every trainable `param`). */
  readonly select?: (inputName: string, spec: ParamSpec) => boolean;
  /**
   * An update gate for a parameter: while the scalar input `gate.<name>` is 0 the parameter, its
   * moments and its step count stay as they are (PyTorch skips parameters whose grad is None).
   */
  readonly gateOf?: (inputName: string, spec: ParamSpec) => string | undefined;
  /**
   * Dynamic loss scaling (dsl/train/loss-scale.ts), for float16 products: the gradients are of `loss * scale`, divided
   * by the scale before clipping; a step with an Inf or NaN gradient leaves every `next.` output of this function at
   * its old value. State emitted after this function must go through the result's `lossScaling.keep`.
   */
  readonly lossScaling?: LossScaling;
}

export interface OptimizerStepResult {
  /** Graph inputs for the scalars: `lr`, `wd` and the gates, by name. */
  readonly scalars: ReadonlyMap<string, Tensor>;
  /** Global norm of all raw gradients (before clipping). */
  readonly gradNorm: Tensor;
  /** The updated value of each trained parameter, by graph-input name (also emitted as `next.<name>`). */
  readonly updated: ReadonlyMap<string, Tensor>;
  /** With `lossScaling`: the scale used, whether the step was skipped, and the gate for later state. */
  readonly lossScaling?: LossScalingResult;
}

/** Adds the backward pass and the optimizer update to `graph`, emitting `next.*` outputs for the trained state. */
export function addOptimizerStep(graph: Graph, opts: OptimizerStepOptions): E.Either<DslError[], OptimizerStepResult> {
  const select = opts.select ?? ((_: string, spec: ParamSpec) => spec.kind === 'param' && spec.trainable);
  const trained = [...graph.params].filter(([name, t]) => select(name, specOf(t)));
  if (trained.length === 0) return E.left([{ op: 'optimizer', path: '', message: 'no trainable parameters selected', shapes: [] }]);

  const scaler = opts.lossScaling ? lossScaler(graph, opts.lossScaling) : undefined;
  const grads = gradients(scaler ? scaler.scaleLoss(opts.loss) : opts.loss, trained.map(([, t]) => t));
  if (E.isLeft(grads)) return grads;

  const { scalars, updated, sumSq } = addParameterUpdates(graph, trained, grads.right, opts, scaler);
  for (const [name, value] of graph.bufferUpdates) graph.output(NEXT + name, value);
  const gradNorm = sqrt(sumSq);
  if (!scaler) return E.right({ scalars, gradNorm, updated });
  const lossScaling = finishLossScaling(graph, scaler, sumSq, NEXT);
  // Later state (DINO's teacher EMA) reads the kept student, so no Inf of a skipped step reaches it.
  for (const [name, next] of updated) updated.set(name, graph.outputs.get(NEXT + name) ?? next);
  return E.right({ scalars, gradNorm, updated, lossScaling });
}

/** What `addParameterUpdates` adds to a graph. */
export interface ParameterUpdates {
  /** Graph inputs for the scalars: `lr`, `wd` and the gates, by name. */
  readonly scalars: Map<string, Tensor>;
  /** The updated value of each trained parameter, by graph-input name (also emitted as `next.<name>`). */
  readonly updated: Map<string, Tensor>;
  /** Sum of the squared norms of the (unscaled) gradients, before clipping. */
  readonly sumSq: Tensor;
}

/**
 * The optimizer half of a step: per-parameter clipping, AdamW or SGD, update gates, and the `next.*` outputs of the
 * trained parameters and their optimizer state, from each parameter's gradient (`grads[i]` for `trained[i]`; null or
 * undefined: the parameter does not reach the loss, a zero gradient). Shared by the one-graph step
 * (`addOptimizerStep`) and the apply graph of a data-parallel step (dsl/train/split-step.ts), so both do the same maths.
 */
export function addParameterUpdates(
  graph: Graph,
  trained: readonly (readonly [string, Tensor])[],
  grads: readonly (Tensor | null | undefined)[],
  opts: Pick<OptimizerStepOptions, 'optimizer' | 'clipGrad' | 'gateOf'>,
  scaler?: LossScaler,
): ParameterUpdates {
  const scalars = new Map<string, Tensor>();
  const scalarInput = (name: string) => {
    let t = scalars.get(name);
    if (!t) scalars.set(name, (t = graph.input(name, 'float32', [])));
    return t;
  };
  const lr = scalarInput('lr');
  const wd = opts.optimizer.kind === 'adamw' || trained.some(([, t]) => specOf(t).decay) ? scalarInput('wd') : undefined;

  const optimState = (name: string, like: Tensor) =>
    graph.param({ name, shape: like.shape as number[], dtype: 'float32', init: { kind: 'zeros' }, decay: false, trainable: false, tags: [], kind: 'optim' });

  // One step counter per gate (PyTorch keeps one per parameter; parameters sharing a gate share it).
  const stepCounters = new Map<string, Tensor>();
  const stepFor = (gate: string | undefined) => {
    const key = gate ?? '';
    let next = stepCounters.get(key);
    if (!next) {
      const counter = graph.param({ name: gate ? `optim.step.${gate}` : 'optim.step', shape: [], dtype: 'float32', init: { kind: 'zeros' }, decay: false, trainable: false, tags: [], kind: 'optim' });
      next = gate ? add(counter, scalarInput(`gate.${gate}`)) : add(counter, 1);
      graph.output(NEXT + specOf(counter).name, next);
      stepCounters.set(key, next);
    }
    return next;
  };

  const updated = new Map<string, Tensor>();
  let sumSq: Tensor | undefined;
  graph.within('optimizer', () => {
    trained.forEach(([name, p], i) => {
      const spec = specOf(p);
      let g = grads[i] ?? zerosLike(p);
      if (scaler) g = scaler.unscale(g);
      const n = norm(g);
      sumSq = sumSq ? add(sumSq, mul(n, n)) : mul(n, n);
      // AdamW takes the clipping as a scalar factor (folded into its moment updates); SGD gets the clipped gradient.
      const clip = opts.clipGrad !== undefined ? clipCoefficient(n, opts.clipGrad) : undefined;
      if (clip && opts.optimizer.kind !== 'adamw') g = mul(g, clip);
      const gate = opts.gateOf?.(name, spec);
      const gateInput = gate ? scalarInput(`gate.${gate}`) : undefined;
      const keepIfGated = (next: Tensor, prev: Tensor) => (gateInput ? gated(gateInput, next, prev) : next);
      const decay = spec.decay && wd ? wd : 0;
      if (opts.optimizer.kind === 'adamw') {
        const m = optimState(`optim.m.${name}`, p), v = optimState(`optim.v.${name}`, p);
        const next = adamw({ param: p, m, v }, g, lr, decay, stepFor(gate), opts.optimizer.hyper ?? ADAMW_DEFAULTS, clip);
        graph.output(NEXT + `optim.m.${name}`, keepIfGated(next.m, m));
        graph.output(NEXT + `optim.v.${name}`, keepIfGated(next.v, v));
        updated.set(name, keepIfGated(next.param, p));
      } else {
        const buf = optimState(`optim.buf.${name}`, p);
        const next = sgd(p, buf, g, lr, opts.optimizer.momentum, decay);
        if (opts.optimizer.momentum !== 0) graph.output(NEXT + `optim.buf.${name}`, keepIfGated(next.buf, buf));
        updated.set(name, keepIfGated(next.param, p));
      }
      graph.output(NEXT + name, updated.get(name)!);
    });
  });
  return { scalars, updated, sumSq: sumSq! };
}

/** Description of a step graph's interface, what the runtime needs to drive it. */
export interface StepSignature {
  /** Every state tensor (graph.params), in graph order. */
  readonly state: readonly ParamSpec[];
  /** State names that have a `next.` output. */
  readonly updates: readonly string[];
  /** Non-state inputs: batch tensors and scalars. */
  readonly inputs: readonly { name: string; dtype: string; shape: readonly (number | string)[] }[];
  /** Metric output names (without the `metric.` prefix). */
  readonly metrics: readonly string[];
}

export function stepSignature(graph: Graph): StepSignature {
  const state = [...graph.params].map(([inputName, t]) => ({ ...specOf(t), name: inputName }));
  const outs = [...graph.outputs.keys()];
  return {
    state,
    updates: outs.filter((o) => o.startsWith(NEXT)).map((o) => o.slice(NEXT.length)),
    inputs: graph.inputs.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })),
    metrics: outs.filter((o) => o.startsWith(METRIC)).map((o) => o.slice(METRIC.length)),
  };
}
