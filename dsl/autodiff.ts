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

/**
 * Gradients of `loss` (a scalar, or any tensor when `seed` gives its cotangent) with respect to
 * each tensor of `wrt`; null where `loss` does not depend on it.
 */
export function gradients(loss: Tensor, wrt: readonly Tensor[], seed?: Tensor): E.Either<DslError[], (Tensor | null)[]> {
  const graph = loss.graph;
  // A graph with shape errors has poisoned tensors whose shapes mean nothing: report, don't differentiate.
  if (graph.errors.length) return E.left([...graph.errors]);
  const errors: DslError[] = [];
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

  const cot = new Map<number, Tensor>();
  cot.set(loss.id, seed ?? graph.scalar(1, loss.dtype));
  const lossNode = loss.source.kind === 'node' ? loss.source.node.id : -1;

  /**
   * Builds a checkpointed region again and adds the copy's gradients (for its inputs and parameters) to `cot`.
   * The copy reads each input as `x + 0 * g[0]` (g: the cotangent of the region's output): the same values, but a
   * data dependency on the backward pass, so ONNX Runtime neither merges the copy with the original (common
   * subexpression elimination) nor schedules it before the backward pass needs it.
   */
  const recomputeRegion = (region: RecomputeRegion, regionNodes: readonly Node[], g: Tensor, path: string): void => {
    const at = `recompute/${path}`;
    const barrier = graph.within(at, () => stopGradient(mul(reshape(slice(reshape(g, [-1]), [0], [1], [0]), []), 0)));
    const copyInputs = region.inputs.map((x) => (isFloat(x.dtype) && active.has(x.id) ? graph.within(at, () => add(x, cast(barrier, x.dtype))) : x));
    const copy = graph.within(at, () => region.rebuild(copyInputs));
    const produced = new Set(regionNodes.flatMap((n) => n.outputs.map((o) => o.id)));
    const params = [...new Map(regionNodes.flatMap((n) => n.inputs)
      .filter((t) => !produced.has(t.id) && active.has(t.id) && !region.inputs.includes(t)).map((t) => [t.id, t])).values()];
    const differentiable = region.inputs.map((x) => active.has(x.id));
    const inner = gradients(copy, [...copyInputs.filter((_, i) => differentiable[i]), ...params], g);
    if (E.isLeft(inner)) {
      errors.push(...inner.left);
      return;
    }
    [...region.inputs.filter((_, i) => differentiable[i]), ...params].forEach((x, i) => {
      const gi = inner.right[i];
      if (!gi) return;
      const prev = cot.get(x.id);
      cot.set(x.id, prev ? graph.within(`grad/${path}`, () => add(prev, gi)) : gi);
    });
  };

  const regionOf = (id: number) => graph.recompute.find((r) => r.first <= id && id <= r.last);
  const recomputed = new Set<RecomputeRegion>();
  for (let k = graph.nodes.length - 1; k >= 0; k--) {
    const node = graph.nodes[k]!;
    if (node.id > lossNode) continue; // created after the loss (e.g. earlier backward passes)
    if (!node.outputs.some((o) => active.has(o.id))) continue;
    const region = regionOf(node.id);
    if (region && region.output.id !== loss.id) {
      // A checkpointed region: its own nodes get no VJPs; a copy built here does (see Graph.checkpoint).
      if (recomputed.has(region)) continue;
      recomputed.add(region);
      const regionNodes = graph.nodes.filter((n) => n.id >= region.first && n.id <= region.last);
      for (const n of regionNodes) {
        for (const o of n.outputs) {
          if (o !== region.output && cot.has(o.id)) {
            errors.push({ op: 'checkpoint', path: n.path, message: `${o.name} is inside a checkpoint but differentiated outside it`, shapes: [] });
          }
        }
      }
      const g = cot.get(region.output.id);
      if (g) recomputeRegion(region, regionNodes, g, node.path);
      continue;
    }
    const grads = node.outputs.map((o) => cot.get(o.id) ?? null);
    if (grads.every((g) => g === null)) continue;
    const vjp = node.op.vjp;
    if (!vjp) {
      errors.push({
        op: node.op.name,
        path: node.path,
        message: `no gradient rule for ${node.op.name}; add a vjp to its OpDef, or cut the path with stopGradient`,
        shapes: node.inputs.map((t) => `${t.dtype}${formatShape(t.shape)}`),
      });
      continue;
    }
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
      const g = raw.poisoned ? raw : graph.within(gradPath, () => sumToShape(raw, x.shape));
      const prev = cot.get(x.id);
      cot.set(x.id, prev ? graph.within(`grad/${node.path}`, () => add(prev, g)) : g);
    });
  }
  if (errors.length) return E.left(errors);
  return E.right(wrt.map((t) => cot.get(t.id) ?? null));
}

/** The cotangent seed for a non-scalar output: ones of its shape. */
export function onesLike(t: Tensor): Tensor {
  return expand(t.graph.scalar(1, t.dtype), t.shape);
}
