/**
 * Matrix products and the softmax family.
 *
 * - `matmul`: ONNX MatMul with numpy batch broadcasting; what the models use for every Linear layer.
 * - `gemm`: ONNX Gemm on 2-D operands (alpha op(A) op(B) + beta C); its backward is Gemms with the transposes
 *   folded into transA/transB. MatMul's VJP uses it for 2-D weight gradients (`gradOfRhs`); no model layer
 *   calls it (bench/proposals/05-linear-gemm.patch, Linear as one Gemm, measured within noise).
 */
import type { Tensor, TensorInfo } from '../graph.ts';
import { isFloat } from '../graph.ts';
import { cost, defineOp } from '../op.ts';
import { broadcastShapes, dimEq, formatShape, normAxis, shapeEq } from '../shape.ts';
import { exp, log, mul, stopGradient, sub } from './elementwise.ts';
import { reshape, transposeLast2 } from './layout.ts';
import { reduceMax, reduceSum } from './reduce.ts';

// ---- MatMul ----------------------------------------------------------------------------------------

export const MatMul = defineOp({
  name: 'MatMul',
  // 2·M·N·K per matrix product, times the broadcast batch size.
  flops: ({ inputs: [a], outputs: [y], numel, dim }) => 2 * numel(y!) * dim(a!, -1),
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
  vjp: ({ inputs: [a, b], grads: [g] }) => [matmulGradLhs(g!, b!), matmulGradRhs(g!, a!, b!)],
});

// Both gradients may come back with a's or b's batch dims broadcast; autodiff sums them.
function matmulGradLhs(g: Tensor, b: Tensor): Tensor {
  return matmul(g, transposeLast2(b));
}

function matmulGradRhs(g: Tensor, a: Tensor, b: Tensor): Tensor {
  if (b.rank === 2 && a.rank > 2) {
    // x[..., T, D] @ W[D, O]: fold the batch dims into rows, one [D, rows] @ [rows, O] product
    // instead of a batched product followed by a reduction over the batch.
    const a2 = reshape(a, [-1, a.shape[a.rank - 1]!]);
    const g2 = reshape(g, [-1, g.shape[g.rank - 1]!]);
    return gradOfRhs(g2, a2, b);
  }
  return b.rank === 2 && a.rank === 2 ? gradOfRhs(g, a, b) : matmul(transposeLast2(a), g);
}

/**
 * aᵀ g for 2-D a and b, as a Gemm with transA: ONNX Runtime folds a Transpose into MatMul (FusedMatMul) but not
 * into the Gemm it makes of MatMul + Add, and a weight used twice (the student's two crop resolutions) gets its
 * gradients summed, so a MatMul here left one activation-sized Transpose per weight. When b is itself a transpose
 * (a Linear's `transposeLast2(weight)`) the product is formed as (gᵀ a)ᵀ: the Transpose's own VJP then cancels the
 * outer transpose (`transpose` folds pairs), and the weight's gradient comes out of one Gemm in the weight's layout.
 */
function gradOfRhs(g: Tensor, a: Tensor, b: Tensor): Tensor {
  if (!isFloat(a.dtype)) return matmul(transposeLast2(a), g);
  if (b.source.kind === 'node' && b.source.node.op.name === 'Transpose') return transposeLast2(gemm(g, a, null, { transA: true }));
  return gemm(a, g, null, { transA: true });
}

export const matmul = (a: Tensor, b: Tensor): Tensor => a.graph.apply(MatMul, [a, b])[0]!;

// ---- Gemm --------------------------------------------------------------------------------------------

export type GemmAttrs = {
  readonly transA: boolean;
  readonly transB: boolean;
  readonly alpha: number;
  readonly beta: number;
};
export type GemmOptions = Partial<GemmAttrs>;

export const Gemm = defineOp<GemmAttrs>({
  name: 'Gemm',
  // 2·M·N·K, plus M·N when C is added.
  flops: ({ inputs: [a, , c], outputs: [y], attrs: { transA }, numel, dim }) =>
    2 * numel(y!) * (transA ? dim(a!, 0) : dim(a!, 1)) + (c ? numel(y!) : 0),
  attrTypes: { transA: 'int', transB: 'int', alpha: 'float', beta: 'float' },
  infer: (ins, { transA, transB }) => {
    const [a, b, c] = ins as [TensorInfo, TensorInfo, TensorInfo | undefined];
    if (!isFloat(a.dtype)) return `expects float operands, got ${a.dtype}`;
    for (const t of [b, c]) if (t && t.dtype !== a.dtype) return `dtype mismatch: ${a.dtype} vs ${t.dtype}`;
    if (a.shape.length !== 2 || b.shape.length !== 2) return `A ${formatShape(a.shape)} and B ${formatShape(b.shape)} must be 2-D`;
    const [m, ka] = transA ? [a.shape[1]!, a.shape[0]!] : [a.shape[0]!, a.shape[1]!];
    const [kb, n] = transB ? [b.shape[1]!, b.shape[0]!] : [b.shape[0]!, b.shape[1]!];
    if (!dimEq(ka, kb)) return `inner dims differ: A${transA ? "'" : ''} ${formatShape(a.shape)} @ B${transB ? "'" : ''} ${formatShape(b.shape)}`;
    if (c) {
      const out = broadcastShapes(c.shape, [m, n]);
      if (typeof out === 'string' || !shapeEq(out, [m, n])) return `C ${formatShape(c.shape)} does not broadcast to [${m}, ${n}]`;
    }
    return [{ dtype: a.dtype, shape: [m, n] }];
  },
  // Y = alpha op(A) op(B) + beta C. With G = dY: d op(A) = alpha G op(B)^T, d op(B) = alpha op(A)^T G;
  // undoing op() on either side only flips which operand is transposed.
  vjp: ({ inputs: [a, b, c], attrs: { transA, transB, alpha, beta }, grads: [g] }) => {
    const da = transA ? gemm(b!, g!, null, { transA: transB, transB: true, alpha }) : gemm(g!, b!, null, { transB: !transB, alpha });
    const db = transB ? gemm(g!, a!, null, { transA: true, transB: transA, alpha }) : gemm(a!, g!, null, { transA: !transA, alpha });
    if (!c) return [da, db];
    return [da, db, beta === 1 ? g! : mul(g!, beta)];
  },
});

/** alpha op(A) op(B) + beta C on 2-D operands (ONNX Gemm); `nn.Linear` is gemm(x, weight, bias, { transB: true }). */
export function gemm(a: Tensor, b: Tensor, c: Tensor | null, opts: GemmOptions = {}): Tensor {
  const attrs: GemmAttrs = { transA: opts.transA ?? false, transB: opts.transB ?? false, alpha: opts.alpha ?? 1, beta: opts.beta ?? 1 };
  return a.graph.apply(Gemm, c ? [a, b, c] : [a, b], attrs)[0]!;
}

// ---- Softmax / LogSoftmax --------------------------------------------------------------------------

function axisInfer(ins: readonly TensorInfo[], { axis }: { axis: number }): TensorInfo[] | string {
  const x = ins[0]!;
  if (normAxis(axis, x.shape.length) === undefined) return `axis ${axis} out of range for rank ${x.shape.length}`;
  return [{ dtype: x.dtype, shape: x.shape }];
}

export const Softmax = defineOp<{ axis: number }>({
  name: 'Softmax',
  // max, subtract, exp, sum, divide
  flops: cost.perOutput(5),
  attrTypes: { axis: 'int' },
  infer: axisInfer,
  // y (g - <g, y>)
  vjp: ({ outputs: [y], attrs: { axis }, grads: [g] }) => [mul(y!, sub(g!, reduceSum(mul(g!, y!), axis, true)))],
});
export const LogSoftmax = defineOp<{ axis: number }>({
  name: 'LogSoftmax',
  // max, subtract, exp, sum, log-subtract
  flops: cost.perOutput(5),
  attrTypes: { axis: 'int' },
  infer: axisInfer,
  // g - softmax(x) sum(g)
  vjp: ({ outputs: [y], attrs: { axis }, grads: [g] }) => [sub(g!, mul(exp(y!), reduceSum(g!, axis, true)))],
  // ONNX Runtime's WebGPU EP has no LogSoftmax kernel (runtime/ep/records.ts).
  lowering: ([x], { axis }) => [logSoftmaxComposite(x!, axis)],
});
export const softmax = (x: Tensor, axis = -1): Tensor => x.graph.apply(Softmax, [x], { axis })[0]!;
export const logSoftmax = (x: Tensor, axis = -1): Tensor => x.graph.apply(LogSoftmax, [x], { axis })[0]!;

/**
 * log softmax built from ops every execution provider has (ReduceMax, Sub, Exp, ReduceSum, Log): LogSoftmax's
 * lowering. ONNX Runtime's WebGPU EP has no LogSoftmax kernel and would run that op on the CPU, moving its input and
 * output across the bus both ways. The same values to rounding; the gradient flows through the composite (the max is a constant shift, cut with
 * stopGradient), at the cost of keeping exp(z) for the backward pass where LogSoftmax keeps only its output.
 */
export function logSoftmaxComposite(x: Tensor, axis = -1): Tensor {
  const z = sub(x, stopGradient(reduceMax(x, axis, true)));
  return sub(z, log(reduceSum(exp(z), axis, true)));
}
