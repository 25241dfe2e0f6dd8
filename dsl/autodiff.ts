/**
 * Reverse-mode autodiff over the IR: one walker, the rules live with the ops (`OpDef.vjp`).
 *
 * Only nodes on a path from `wrt` to `loss` are visited. Cotangents are symbolic zeros (absent from
 * the map) until something flows, so no zero tensor is ever materialised; fan-out is accumulated
 * with Add. The backward nodes are ordinary graph nodes named `grad/<module path>`.
 *
 * Broadcasting is undone here, once, as in tinygrad: a rule may return an input's gradient at a broadcast of
 * the input's shape (an element-wise op's output shape, an Expand's target), and the walker sums the broadcast
 * axes (`sumToShape`). Any other shape is a bug in the rule and is reported.
 */
import * as E from 'fp-ts/lib/Either.js';
import { type DslError, type Node, type RecomputeRegion, type Tensor, isFloat } from './graph.ts';
import { type Shape, broadcastShapes, formatShape, shapeEq } from './shape.ts';
import { add, cast, mul, stopGradient } from './ops/elementwise.ts';
import { expand, reshape, slice } from './ops/layout.ts';
import { reduceSum } from './ops/reduce.ts';

/** True when a value of `shape` broadcasts to exactly `target` (numpy rules). */
function broadcastsTo(shape: Shape, target: Shape): boolean {
  const b = broadcastShapes(shape, target);
  return typeof b !== 'string' && shapeEq(b, target);
}

/**
 * `g` summed over the axes along which a value of `shape` was broadcast to `g`'s shape (ReduceSum with keepdims,
 * then a Reshape that drops the leading axes), so the result has exactly `shape`.
 */
function sumToShape(g: Tensor, shape: Shape): Tensor {
  if (shapeEq(g.shape, shape)) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  const summed = axes.length ? reduceSum(g, axes, true) : g;
  return shapeEq(summed.shape, shape) ? summed : reshape(summed, shape);
}

/** Cotangents by tensor id; an absent entry is a symbolic zero. */
type Cotangents = Map<number, Tensor>;

/** Adds `g` to the cotangent of `x` (fan-out accumulates with Add, named under `grad/<path>`). */
function accumulate(cot: Cotangents, x: Tensor, g: Tensor, path: string): void {
  const prev = cot.get(x.id);
  cot.set(x.id, prev ? x.graph.within(`grad/${path}`, () => add(prev, g)) : g);
}

/**
 * Gradients of `loss` (a scalar, or any tensor when `seed` gives its cotangent) with respect to
 * each tensor of `wrt`; null where `loss` does not depend on it.
 */
export function gradients(loss: Tensor, wrt: readonly Tensor[], seed?: Tensor): E.Either<DslError[], (Tensor | null)[]> {
  const graph = loss.graph;
  // A graph with shape errors has poisoned tensors whose shapes mean nothing: report, don't differentiate.
  if (graph.errors.length) return E.left([...graph.errors]);
  if (!seed && loss.rank !== 0) {
    return E.left([{ op: 'gradients', path: '', message: `loss must be a scalar, got ${formatShape(loss.shape)}; pass a seed cotangent`, shapes: [] }]);
  }
  if (!isFloat(loss.dtype)) {
    return E.left([{ op: 'gradients', path: '', message: `loss must be float, got ${loss.dtype}`, shapes: [] }]);
  }

  // Forward reachability from wrt: which tensors depend on a variable.
  const active = new Set<number>(wrt.map((t) => t.id));
  for (const node of graph.nodes) {
    if (node.inputs.some((t) => active.has(t.id))) for (const o of node.outputs) active.add(o.id);
  }

  const cot: Cotangents = new Map([[loss.id, seed ?? graph.scalar(1, loss.dtype)]]);
  const lossNode = loss.source.kind === 'node' ? loss.source.node.id : -1;
  const errors: DslError[] = [];
  const recomputed = new Set<RecomputeRegion>();
  // The walk: every node between the variables and the loss, last first, passes its outputs' cotangents to its
  // inputs through its VJP; a checkpointed region does so once, through a copy of itself.
  for (let k = graph.nodes.length - 1; k >= 0; k--) {
    const node = graph.nodes[k]!;
    if (node.id > lossNode) continue; // created after the loss (e.g. earlier backward passes)
    if (!node.outputs.some((o) => active.has(o.id))) continue;
    const region = graph.recompute.find((r) => r.first <= node.id && node.id <= r.last);
    if (region && region.output.id !== loss.id) {
      if (recomputed.has(region)) continue;
      recomputed.add(region);
      errors.push(...backpropRegion(region, node.path, active, cot));
      continue;
    }
    errors.push(...backpropNode(node, active, cot));
  }
  if (errors.length) return E.left(errors);
  return E.right(wrt.map((t) => cot.get(t.id) ?? null));
}

/**
 * One node's step of the walk: its VJP turns its outputs' cotangents into its inputs', each summed back to its
 * input's shape over broadcast axes and accumulated into `cot`.
 */
function backpropNode(node: Node, active: ReadonlySet<number>, cot: Cotangents): DslError[] {
  const graph = node.outputs[0]!.graph;
  const grads = node.outputs.map((o) => cot.get(o.id) ?? null);
  if (grads.every((g) => g === null)) return [];
  const vjp = node.op.vjp;
  if (!vjp) {
    return [{
      op: node.op.name,
      path: node.path,
      message: `no gradient rule for ${node.op.name}; add a vjp to its OpDef, or cut the path with stopGradient`,
      shapes: node.inputs.map((t) => `${t.dtype}${formatShape(t.shape)}`),
    }];
  }
  const errors: DslError[] = [];
  const gradPath = node.path ? `grad/${node.path}` : 'grad';
  const inGrads = graph.within(gradPath, () => vjp({ inputs: node.inputs, outputs: node.outputs, attrs: node.attrs, grads }));
  node.inputs.forEach((x, i) => {
    const raw = inGrads[i];
    if (!raw || !active.has(x.id)) return;
    // A poisoned gradient (a shape error inside the rule, already recorded) has no meaningful shape: pass it on.
    if (!raw.poisoned && !broadcastsTo(x.shape, raw.shape)) {
      errors.push({
        op: node.op.name,
        path: node.path,
        message: `gradient rule returned ${formatShape(raw.shape)} for input ${i} of shape ${formatShape(x.shape)}, which is not a broadcast of it (a bug in the rule)`,
        shapes: [],
      });
      return;
    }
    accumulate(cot, x, raw.poisoned ? raw : graph.within(gradPath, () => sumToShape(raw, x.shape)), node.path);
  });
  return errors;
}

/**
 * A checkpointed region's step of the walk (see Graph.checkpoint): its own nodes get no VJPs; it is built again
 * where its output's cotangent arrives, and the copy is differentiated, adding the gradients of the region's inputs
 * and parameters to `cot`. The copy reads each input as `x + 0 * g[0]` (g: that cotangent): the same values, but a
 * data dependency on the backward pass, so ONNX Runtime neither merges the copy with the original (common
 * subexpression elimination) nor schedules it before the backward pass needs it.
 */
function backpropRegion(region: RecomputeRegion, path: string, active: ReadonlySet<number>, cot: Cotangents): DslError[] {
  const graph = region.output.graph;
  const regionNodes = graph.nodes.filter((n) => n.id >= region.first && n.id <= region.last);
  const errors: DslError[] = [];
  for (const n of regionNodes) {
    for (const o of n.outputs) {
      if (o !== region.output && cot.has(o.id)) {
        errors.push({ op: 'checkpoint', path: n.path, message: `${o.name} is inside a checkpoint but differentiated outside it`, shapes: [] });
      }
    }
  }
  const g = cot.get(region.output.id);
  if (!g) return errors;
  const at = `recompute/${path}`;
  const barrier = graph.within(at, () => stopGradient(mul(reshape(slice(reshape(g, [-1]), [0], [1], [0]), []), 0)));
  const copyInputs = region.inputs.map((x) => (isFloat(x.dtype) && active.has(x.id) ? graph.within(at, () => add(x, cast(barrier, x.dtype))) : x));
  const copy = graph.within(at, () => region.rebuild(copyInputs));
  const produced = new Set(regionNodes.flatMap((n) => n.outputs.map((o) => o.id)));
  const params = [...new Map(regionNodes.flatMap((n) => n.inputs)
    .filter((t) => !produced.has(t.id) && active.has(t.id) && !region.inputs.includes(t)).map((t) => [t.id, t])).values()];
  const differentiable = region.inputs.map((x) => active.has(x.id));
  const inner = gradients(copy, [...copyInputs.filter((_, i) => differentiable[i]), ...params], g);
  if (E.isLeft(inner)) return [...errors, ...inner.left];
  [...region.inputs.filter((_, i) => differentiable[i]), ...params].forEach((x, i) => {
    const gi = inner.right[i];
    if (gi) accumulate(cot, x, gi, path);
  });
  return errors;
}

/** The cotangent seed for a non-scalar output: ones of its shape. */
export function onesLike(t: Tensor): Tensor {
  return expand(t.graph.scalar(1, t.dtype), t.shape);
}
