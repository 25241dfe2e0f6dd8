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
 * graph is node for node the one built before autocast existed.
 *
 * Unlike PyTorch, the product is cast back at once, so bias additions and GELU run in float32 (PyTorch runs them
 * in float16, the dtype of their input); that costs bandwidth on a GPU, not accuracy.
 */
import type { Precision, Scope, Tensor } from './graph.ts';
import { cast } from './ops/elementwise.ts';
import { matmul } from './ops/nn.ts';

export const PRECISIONS: readonly Precision[] = ['fp32', 'fp16'];

/** A `Precision` from a command-line or config value; throws naming the choices. */
export function parsePrecision(value: string): Precision {
  if ((PRECISIONS as readonly string[]).includes(value)) return value as Precision;
  throw new Error(`precision must be one of ${PRECISIONS.join(', ')}, got "${value}"`);
}

/** `a @ b` (ONNX MatMul) in the scope's precision; the result has `a`'s dtype. */
export function autocastMatmul(s: Scope, a: Tensor, b: Tensor): Tensor {
  if (s.precision === 'fp32' || a.dtype !== 'float32') return matmul(a, b);
  return cast(matmul(cast(a, 'float16'), cast(b, 'float16')), a.dtype);
}
