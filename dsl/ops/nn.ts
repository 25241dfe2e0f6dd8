/** Neural-network ops: matrix products, softmax family, layer normalisation. */
import type { Tensor, TensorInfo } from '../graph.ts';
import { defineOp } from '../op.ts';
import { broadcastShapes, dimEq, formatShape, normAxis } from '../shape.ts';
import { add, div, exp, maximum, mul, reciprocal, sqrt, sub, unbroadcast } from './elementwise.ts';
import { reshape, transposeLast2 } from './layout.ts';
import { reduceMean, reduceSum } from './reduce.ts';

// ---- MatMul ----------------------------------------------------------------------------------------

export const MatMul = defineOp({
  name: 'MatMul',
  infer: (ins) => {
    const [a, b] = ins as [TensorInfo, TensorInfo];
    if (a.dtype !== b.dtype) return `dtype mismatch: ${a.dtype} vs ${b.dtype}`;
    if (a.shape.length < 2 || b.shape.length < 2) return 'MatMul needs operands of rank >= 2';
    const k1 = a.shape[a.shape.length - 1]!, k2 = b.shape[b.shape.length - 2]!;
    if (!dimEq(k1, k2)) return `inner dims differ: ${formatShape(a.shape)} @ ${formatShape(b.shape)}`;
    const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
    if (typeof batch === 'string') return `batch dims: ${batch}`;
    return [{ dtype: a.dtype, shape: [...batch, a.shape[a.shape.length - 2]!, b.shape[b.shape.length - 1]!] }];
  },
  vjp: ({ inputs: [a, b], grads: [g] }) => [matmulGradLhs(g!, a!, b!), matmulGradRhs(g!, a!, b!)],
});

function matmulGradLhs(g: Tensor, a: Tensor, b: Tensor): Tensor {
  return unbroadcast(matmul(g, transposeLast2(b)), a.shape);
}

function matmulGradRhs(g: Tensor, a: Tensor, b: Tensor): Tensor {
  if (b.rank === 2 && a.rank > 2) {
    // x[..., T, D] @ W[D, O]: fold the batch dims into rows, one [D, rows] @ [rows, O] product
    // instead of a batched product followed by a reduction over the batch.
    const a2 = reshape(a, [-1, a.shape[a.rank - 1]!]);
    const g2 = reshape(g, [-1, g.shape[g.rank - 1]!]);
    return matmul(transposeLast2(a2), g2);
  }
  return unbroadcast(matmul(transposeLast2(a), g), b.shape);
}

export const matmul = (a: Tensor, b: Tensor): Tensor => a.graph.apply(MatMul, [a, b])[0]!;

// ---- Softmax / LogSoftmax --------------------------------------------------------------------------

function axisInfer(ins: readonly TensorInfo[], { axis }: { axis: number }): TensorInfo[] | string {
  const x = ins[0]!;
  if (normAxis(axis, x.shape.length) === undefined) return `axis ${axis} out of range for rank ${x.shape.length}`;
  return [{ dtype: x.dtype, shape: x.shape }];
}

export const Softmax = defineOp<{ axis: number }>({
  name: 'Softmax',
  attrTypes: { axis: 'int' },
  infer: axisInfer,
  // y (g - <g, y>)
  vjp: ({ outputs: [y], attrs: { axis }, grads: [g] }) => [mul(y!, sub(g!, reduceSum(mul(g!, y!), axis, true)))],
});
export const LogSoftmax = defineOp<{ axis: number }>({
  name: 'LogSoftmax',
  attrTypes: { axis: 'int' },
  infer: axisInfer,
  // g - softmax(x) sum(g)
  vjp: ({ outputs: [y], attrs: { axis }, grads: [g] }) => [sub(g!, mul(exp(y!), reduceSum(g!, axis, true)))],
});
export const softmax = (x: Tensor, axis = -1): Tensor => x.graph.apply(Softmax, [x], { axis })[0]!;
export const logSoftmax = (x: Tensor, axis = -1): Tensor => x.graph.apply(LogSoftmax, [x], { axis })[0]!;

// ---- LayerNormalization ----------------------------------------------------------------------------

export const LayerNormalization = defineOp<{ axis: number; epsilon: number }>({
  name: 'LayerNormalization',
  attrTypes: { axis: 'int', epsilon: 'float' },
  infer: (ins, { axis }) => {
    const [x, scale, bias] = ins as [TensorInfo, TensorInfo, TensorInfo];
    const a = normAxis(axis, x.shape.length);
    if (a === undefined) return `axis ${axis} out of range for rank ${x.shape.length}`;
    const normShape = x.shape.slice(a);
    for (const p of [scale, bias]) {
      if (p.dtype !== x.dtype) return `dtype mismatch: ${x.dtype} vs ${p.dtype}`;
      if (p.shape.length !== normShape.length || !p.shape.every((d, i) => dimEq(d, normShape[i]!))) {
        return `scale/bias ${formatShape(p.shape)} must have the normalised shape ${formatShape(normShape)}`;
      }
    }
    return [{ dtype: x.dtype, shape: x.shape }];
  },
  vjp: ({ inputs: [x, scale], attrs: { axis, epsilon }, grads: [g] }) => {
    // Recompute the statistics in the input's precision (ONNX's Mean/InvStdDev outputs are float32 only).
    const a = normAxis(axis, x!.rank)!;
    const axes = x!.shape.map((_, i) => i).filter((i) => i >= a);
    const batchAxes = x!.shape.map((_, i) => i).filter((i) => i < a);
    const mu = reduceMean(x!, axes, true);
    const xc = sub(x!, mu);
    const rstd = reciprocal(sqrt(add(reduceMean(mul(xc, xc), axes, true), epsilon)));
    const xhat = mul(xc, rstd);
    const gx = mul(g!, scale!);
    const dx = mul(rstd, sub(sub(gx, reduceMean(gx, axes, true)), mul(xhat, reduceMean(mul(gx, xhat), axes, true))));
    const sumBatch = (t: Tensor) => (batchAxes.length ? reduceSum(t, batchAxes, false) : t);
    return [dx, sumBatch(mul(g!, xhat)), sumBatch(g!)];
  },
});
/** LayerNorm over the trailing axes starting at `axis` (DINO's ViT uses eps 1e-6). */
export const layerNorm = (x: Tensor, scale: Tensor, bias: Tensor, epsilon = 1e-5, axis = -1): Tensor =>
  x.graph.apply(LayerNormalization, [x, scale, bias], { axis, epsilon })[0]!;

/** x / max(||x||_2, eps) along `axis` (PyTorch's F.normalize). */
export function l2Normalize(x: Tensor, axis = -1, eps = 1e-12): Tensor {
  const norm = sqrt(reduceSum(mul(x, x), axis, true));
  return div(x, maximum(norm, eps));
}
