/**
 * Mixed precision: which ops run in float16, decided here and nowhere else.
 *
 * PyTorch's autocast on CUDA runs matrix products (linear, matmul, bmm, conv) in float16 and keeps the numerically
 * sensitive ops (softmax, log-softmax, layer norm, norms, losses) in float32. Models here call `autocastMatmul` for
 * every product of activations with weights or with each other (Linear layers, the patch embedding, the two attention
 * products, the head's last layer); under a scope whose `precision` is `fp16` it casts both operands to float16,
 * multiplies and casts the product back. Everything else sees float32 as before, and the parameters stay float32
 * (master weights). The casts are ordinary Cast nodes, whose gradient is the reverse cast, so the backward
 * products of each MatMul run in float16 too, as they do under autocast. Under `fp32` it is `matmul` itself: the
 * graph is node for node the one built before autocast existed. `fp16-emulated` computes the numbers of `fp16` in
 * float32, for checks on a CPU (see `roundToFloat16`).
 *
 * Unlike PyTorch, the product is cast back at once, so bias additions and GELU run in float32 (PyTorch runs them
 * in float16, the dtype of their input); that costs bandwidth on a GPU, not accuracy.
 */
import type { Precision, Scope, Tensor } from './graph.ts';
import { cast } from './ops/elementwise.ts';
import { matmul } from './ops/nn.ts';

/** The precisions a training run offers (`fp16-emulated` is for CPU tests). */
export const PRECISIONS = ['fp32', 'fp16'] as const;
export type TrainPrecision = (typeof PRECISIONS)[number];

/** `a @ b` (ONNX MatMul) in the scope's precision; the result has `a`'s dtype. */
export function autocastMatmul(s: Scope, a: Tensor, b: Tensor): Tensor {
  if (s.precision === 'fp32' || a.dtype !== 'float32') return matmul(a, b);
  if (s.precision === 'fp16-emulated') return roundToFloat16(matmul(roundToFloat16(a), roundToFloat16(b)));
  return cast(matmul(cast(a, 'float16'), cast(b, 'float16')), a.dtype);
}

/**
 * `x` rounded to float16 and back: float32 values with float16's rounding, range (Inf past 65504) and subnormals.
 * Its gradient rounds the cotangent the same way, so a product of rounded operands, rounded, differentiates into
 * the same roundings as a float16 MatMul does: `fp16-emulated` is float16 operands and outputs with float32
 * accumulation, what a GPU's float16 GEMM computes. ONNX Runtime keeps a Cast pair whose float16 value no other
 * node reads; it drops the pair that its CPU provider's float32 fallback for a float16 MatMul would build around
 * the product, so on a CPU only this form carries float16's numbers.
 */
export function roundToFloat16(x: Tensor): Tensor {
  return cast(cast(x, 'float16'), x.dtype);
}
