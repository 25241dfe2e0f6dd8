/**
 * Mixed precision: which ops run in a 16-bit float, in which one, and whether the loss is scaled, decided here and
 * nowhere else.
 *
 * PyTorch's autocast on CUDA runs matrix products (linear, matmul, bmm, conv) in float16 or bfloat16 and keeps the
 * numerically sensitive ops (softmax, log-softmax, layer norm, norms, losses) in float32. Models here call
 * `autocastMatmul` for every product of activations with weights or with each other (Linear layers, the patch
 * embedding, the two attention products, the head's last layer); under a scope whose `precision` is `fp16` (`bf16`)
 * it casts both operands to float16 (bfloat16), multiplies and casts the product back. Everything else sees float32
 * as before, and the parameters stay float32 (master weights). The casts are ordinary Cast nodes, whose gradient is
 * the reverse cast, so the backward products of each MatMul run in the 16-bit type too, as they do under autocast.
 * Under `fp32` it is `matmul` itself: the graph is node for node the one built before autocast existed.
 * `fp16-emulated` and `bf16-emulated` compute the numbers of `fp16` and `bf16` in float32, for checks on a CPU (see
 * `roundToFloat16`, `roundToBfloat16`).
 *
 * Unlike PyTorch, the product is cast back at once, so bias additions and GELU run in float32 (PyTorch runs them
 * in the 16-bit type, the dtype of their input); that costs bandwidth on a GPU, not accuracy.
 */
import type { HalfDType, Precision, Scope, Tensor } from './graph.ts';
import { cast } from './ops/elementwise.ts';
import { matmul } from './ops/nn.ts';

/** The precisions a training run offers (the `-emulated` ones are for CPU tests). */
export const PRECISIONS = ['fp32', 'fp16', 'bf16'] as const;
export type TrainPrecision = (typeof PRECISIONS)[number];

/**
 * Each autocast precision: the dtype of its MatMul operands, whether it only emulates that dtype's rounding in
 * float32, and whether its gradients need dynamic loss scaling (dsl/train/loss-scale.ts). float16 does: its 5
 * exponent bits flush gradients below 2^-24 to zero. bfloat16 does not: it has float32's 8 exponent bits, hence
 * float32's range, and PyTorch uses no GradScaler with it.
 */
const AUTOCAST: { readonly [P in Exclude<Precision, 'fp32'>]: { readonly dtype: HalfDType; readonly emulated: boolean; readonly lossScaling: boolean } } = {
  'fp16': { dtype: 'float16', emulated: false, lossScaling: true },
  'fp16-emulated': { dtype: 'float16', emulated: true, lossScaling: true },
  'bf16': { dtype: 'bfloat16', emulated: false, lossScaling: false },
  'bf16-emulated': { dtype: 'bfloat16', emulated: true, lossScaling: false },
};

/** Whether a step in `precision` scales its loss (GradScaler): fp16 and its emulation only. */
export const usesLossScaling = (precision: Precision): boolean => precision !== 'fp32' && AUTOCAST[precision].lossScaling;

/**
 * `a @ b` (ONNX MatMul) in the scope's precision; the result has `a`'s dtype. Where the graph's target has no MatMul
 * kernel in the precision's dtype (ONNX Runtime has bfloat16 MatMul on CUDA only), the product is lowered to its
 * emulation: `bf16` builds `bf16-emulated`'s graph, the same numbers in float32.
 */
export function autocastMatmul(s: Scope, a: Tensor, b: Tensor): Tensor {
  if (s.precision === 'fp32' || a.dtype !== 'float32') return matmul(a, b);
  const { dtype, emulated } = AUTOCAST[s.precision];
  if (emulated || !s.graph.target.matmulDtypes.includes(dtype)) return roundTo(matmul(roundTo(a, dtype), roundTo(b, dtype)), dtype);
  return cast(matmul(cast(a, dtype), cast(b, dtype)), a.dtype);
}

/** `x` rounded to `dtype` and back (a Cast pair): see the two functions below. */
function roundTo(x: Tensor, dtype: HalfDType): Tensor {
  return cast(cast(x, dtype), x.dtype);
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
  return roundTo(x, 'float16');
}

/**
 * `x` rounded to bfloat16 and back: float32 values rounded to nearest even at 8 significant bits, with float32's
 * range (so no overflow short of float32's own). As `roundToFloat16`, its gradient rounds the cotangent the same
 * way, so `bf16-emulated` is bfloat16 operands and outputs with float32 accumulation, what a GPU's bfloat16 GEMM
 * computes. A Cast pair suffices on a CPU: ONNX Runtime's CPU provider has a float32 <-> bfloat16 Cast that rounds
 * to nearest even (test/dsl/float16.test.ts checks it against `bfloat16Bits`, subnormals and ties included) and keeps
 * the pair through graph optimisation; it has no bfloat16 MatMul kernel, so `bf16` itself runs only on a GPU.
 */
export function roundToBfloat16(x: Tensor): Tensor {
  return roundTo(x, 'bfloat16');
}
