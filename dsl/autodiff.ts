/**
 * Reverse-mode autodiff over the IR: one walker, the rules live with the ops (`OpDef.vjp`).
 *
 * Only nodes on a path from `wrt` to `loss` are visited. Cotangents are symbolic zeros (absent from
 * the map) until something flows, so no zero tensor is ever materialised; fan-out is accumulated
 * with Add. The backward nodes are ordinary graph nodes named `grad/<module path>`.
 */
import * as E from 'fp-ts/lib/Either.js';
import { type DslError, type Tensor, isFloat } from './graph.ts';
import { formatShape, shapeEq } from './shape.ts';
import { add } from './ops/elementwise.ts';
import { expand } from './ops/layout.ts';

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

  for (let k = graph.nodes.length - 1; k >= 0; k--) {
    const node = graph.nodes[k]!;
    if (node.id > lossNode) continue; // created after the loss (e.g. earlier backward passes)
    if (!node.outputs.some((o) => active.has(o.id))) continue;
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
    const inGrads = graph.within(node.path ? `grad/${node.path}` : 'grad', () =>
      vjp({ inputs: node.inputs, outputs: node.outputs, attrs: node.attrs, grads }),
    );
    node.inputs.forEach((x, i) => {
      const g = inGrads[i];
      if (!g || !active.has(x.id)) return;
      if (!shapeEq(g.shape, x.shape) && !g.poisoned) {
        errors.push({
          op: node.op.name,
          path: node.path,
          message: `gradient rule returned ${formatShape(g.shape)} for input ${i} of shape ${formatShape(x.shape)} (a bug in the rule)`,
          shapes: [],
        });
        return;
      }
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
