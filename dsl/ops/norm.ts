/**
 * Normalisation.
 *
 * - `layerNorm`: ONNX LayerNormalization over the trailing axes (the ViT's norms); the VJP recomputes the statistics.
 * - `batchNormInference`: ONNX BatchNormalization with running statistics (training_mode 0).
 * - `batchNormTraining`: statistics of the batch (over N and the spatial dims, per channel) built from
 *   primitives, so autodiff differentiates through the statistics; PyTorch's semantics: normalise with the
 *   biased variance, report the unbiased one for the running update (which the caller does). Both batch norms
 *   serve models/batchnorm.ts (the ResNet).
 * - `l2Normalize`: PyTorch's F.normalize (the DINO head).
 */
import type { Tensor, TensorInfo } from '../graph.ts';
import { isFloat } from '../graph.ts';
import { cost, defineOp } from '../op.ts';
import { type Dim, dimEq, formatShape, isStatic, normAxis } from '../shape.ts';
import { add, div, maximum, mul, neg, pow, reciprocal, sqrt, sub } from './elementwise.ts';
import { expandToShapeOf, reshape, slice } from './layout.ts';
import { reduceMean, reduceSum, sumAll } from './reduce.ts';

// ---- LayerNormalization ----------------------------------------------------------------------------

export const LayerNormalization = defineOp<{ axis: number; epsilon: number }>({
  name: 'LayerNormalization',
  // mean, subtract, square, sum, multiply by 1/std, scale, shift
  flops: cost.perOutput(7),
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

// ---- BatchNormalization (inference) ------------------------------------------------------------------

/** [1, C, 1, ...]: a per-channel vector shaped to broadcast against x [N, C, ...]. */
function perChannel(v: Tensor, x: Tensor): Tensor {
  return reshape(v, x.shape.map((d, i) => (i === 1 ? d : 1)));
}

/** The axes a per-channel statistic reduces: all but axis 1. */
const statAxes = (x: { shape: readonly Dim[] }) => x.shape.map((_, i) => i).filter((i) => i !== 1);

export const BatchNormalization = defineOp<{ epsilon: number }>({
  name: 'BatchNormalization',
  // ORT folds it into one scale and one shift per element.
  flops: cost.perOutput(2),
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

