/**
 * Gemm (a Linear layer in one ONNX node) and batch normalisation.
 *
 * - `gemm`: ONNX Gemm on 2-D operands; its backward is Gemms with the transposes folded into transA/transB.
 * - `batchNormInference`: ONNX BatchNormalization with running statistics (training_mode 0).
 * - `batchNormTraining`: statistics of the batch (over N and the spatial dims, per channel) built from
 *   primitives, so autodiff differentiates through the statistics; PyTorch's semantics: normalise with the
 *   biased variance, report the unbiased one for the running update (which the caller does).
 */
import type { Tensor, TensorInfo } from '../graph.ts';
import { isFloat } from '../graph.ts';
import { defineOp } from '../op.ts';
import { type Dim, broadcastShapes, dimEq, formatShape, isStatic, shapeEq } from '../shape.ts';
import { add, div, mul, neg, pow, reciprocal, sqrt, sub, unbroadcast } from './elementwise.ts';
import { reshape, slice } from './layout.ts';
import { reduceSum, sumAll } from './reduce.ts';
import { expandToShapeOf } from './gather.ts';

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
    return [da, db, unbroadcast(beta === 1 ? g! : mul(g!, beta), c.shape)];
  },
});

/** alpha op(A) op(B) + beta C on 2-D operands (ONNX Gemm); `nn.Linear` is gemm(x, weight, bias, { transB: true }). */
export function gemm(a: Tensor, b: Tensor, c: Tensor | null, opts: GemmOptions = {}): Tensor {
  const attrs: GemmAttrs = { transA: opts.transA ?? false, transB: opts.transB ?? false, alpha: opts.alpha ?? 1, beta: opts.beta ?? 1 };
  return a.graph.apply(Gemm, c ? [a, b, c] : [a, b], attrs)[0]!;
}

// ---- BatchNormalization (inference) ------------------------------------------------------------------

/** [1, C, 1, ...]: a per-channel vector shaped to broadcast against x [N, C, ...]. */
function perChannel(v: Tensor, x: Tensor): Tensor {
  return reshape(v, x.shape.map((d, i) => (i === 1 ? d : 1)));
}

/** The axes a per-channel statistic reduces: all but axis 1. */
const statAxes = (x: { shape: readonly Dim[] }) => x.shape.map((_, i) => i).filter((i) => i !== 1);

export const BatchNormalization = defineOp<{ epsilon: number }>({
  name: 'BatchNormalization',
  attrTypes: { epsilon: 'float' },
  infer: (ins) => {
    const x = ins[0]!;
    if (!isFloat(x.dtype)) return `input must be float, got ${x.dtype}`;
    if (x.shape.length < 2) return `input must have rank >= 2 [N, C, ...], got ${formatShape(x.shape)}`;
    const c = x.shape[1]!;
    const names = ['scale', 'bias', 'mean', 'var'];
    for (let i = 1; i < 5; i++) {
      const p = ins[i]!;
      if (p.dtype !== x.dtype) return `dtype mismatch: x ${x.dtype} vs ${names[i - 1]} ${p.dtype}`;
      if (p.shape.length !== 1 || !dimEq(p.shape[0]!, c)) return `${names[i - 1]} ${formatShape(p.shape)} must be [${c}] (the channels of x ${formatShape(x.shape)})`;
    }
    return [{ dtype: x.dtype, shape: x.shape }];
  },
  // y = (x - mean) scale rstd + bias, rstd = (var + eps)^-1/2, with eps rounded to float32 as the ONNX attribute is.
  vjp: ({ inputs: [x, scale, , mean, variance], attrs: { epsilon }, grads: [g] }) => {
    const axes = statAxes(x!);
    const rstd = reciprocal(sqrt(add(variance!, Math.fround(epsilon)))); // [C]
    const xc = sub(x!, perChannel(mean!, x!));
    const gSum = reduceSum(g!, axes); // [C]
    const gXc = reduceSum(mul(g!, xc), axes); // [C]
    const dx = mul(g!, perChannel(mul(scale!, rstd), x!));
    const dScale = mul(gXc, rstd);
    const dMean = neg(mul(gSum, mul(scale!, rstd)));
    // d rstd / d var = -rstd^3 / 2
    const dVar = mul(mul(gXc, scale!), mul(pow(rstd, 3), -0.5));
    return [dx, dScale, gSum, dMean, dVar];
  },
});

/** Batch norm with fixed statistics (evaluation mode): (x - mean) / sqrt(var + eps) * scale + bias, per channel (axis 1). */
export function batchNormInference(x: Tensor, scale: Tensor, bias: Tensor, runningMean: Tensor, runningVar: Tensor, eps = 1e-5): Tensor {
  return x.graph.apply(BatchNormalization, [x, scale, bias, runningMean, runningVar], { epsilon: eps })[0]!;
}

// ---- Batch norm with batch statistics (training) -----------------------------------------------------

export interface BatchNormTrainingResult {
  /** The normalised, scaled and shifted output, shaped like x. */
  readonly y: Tensor;
  /** Per-channel batch mean [C]. */
  readonly mean: Tensor;
  /** Per-channel biased batch variance [C] (the one used to normalise). */
  readonly varBiased: Tensor;
  /** Per-channel unbiased batch variance [C] (n / (n - 1) varBiased), for running_var updates as PyTorch does. */
  readonly varUnbiased: Tensor;
}

/**
 * Batch normalisation with the statistics of this batch (PyTorch's BatchNorm in train mode), over N and the
 * spatial dims of x [N, C, ...]. A composite of primitives, so gradients flow through mean and variance.
 * PyTorch's running update, for the caller: running = (1 - momentum) running + momentum stat, with
 * `mean` and `varUnbiased` (momentum 0.1 by default). The batch may be symbolic (the count n is then
 * computed at run time).
 */
export function batchNormTraining(x: Tensor, scale: Tensor, bias: Tensor, eps = 1e-5): BatchNormTrainingResult {
  // A poisoned input stays quiet; a shape mistake is reported once, by the BatchNormalization shape rule.
  const poisoned = [x, scale, bias].find((t) => t.poisoned);
  if (poisoned) return { y: poisoned, mean: poisoned, varBiased: poisoned, varUnbiased: poisoned };
  if (typeof BatchNormalization.infer([x, scale, bias, scale, scale], { epsilon: eps }) === 'string') {
    const [bad] = x.graph.apply(BatchNormalization, [x, scale, bias, scale, scale], { epsilon: eps });
    return { y: bad!, mean: bad!, varBiased: bad!, varUnbiased: bad! };
  }
  const axes = statAxes(x);
  const c = x.shape[1]!;
  const count = statCount(x, axes);
  const mean = div(reduceSum(x, axes, true), count); // [1, C, 1, ...]
  const xc = sub(x, mean);
  const varBiased = div(reduceSum(mul(xc, xc), axes, true), count);
  const rstd = reciprocal(sqrt(add(varBiased, eps)));
  const y = add(mul(mul(xc, rstd), perChannel(scale, x)), perChannel(bias, x));
  const besselFactor = typeof count === 'number' ? count / (count - 1) : div(count, sub(count, 1));
  const varUnbiased = mul(varBiased, besselFactor);
  const flat = (t: Tensor) => reshape(t, [c]);
  return { y, mean: flat(mean), varBiased: flat(varBiased), varUnbiased: flat(varUnbiased) };
}

/** Number of elements per channel, N * H * W: a constant when static, else counted at run time. */
function statCount(x: Tensor, axes: readonly number[]): Tensor | number {
  const dims = axes.map((a) => x.shape[a]!);
  if (dims.every(isStatic)) return dims.reduce((a, b) => a * b, 1);
  // Sum of ones over one channel of x (Expand(1, Shape(x[:, :1]))): a scalar that tracks the runtime batch.
  const oneChannel = slice(x, [0], [1], [1]);
  return sumAll(expandToShapeOf(x.graph.scalar(1, x.dtype), oneChannel));
}

