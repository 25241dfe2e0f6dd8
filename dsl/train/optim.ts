/**
 * Optimizer updates, gradient clipping and EMA as graph code. Hyper-parameters that follow a schedule
 * (lr, weight decay, EMA momentum) are scalar graph inputs, so one compiled graph serves a whole run.
 * The formulas are PyTorch's (torch.optim.AdamW / SGD) so runs can be compared with the reference.
 */
import type { Tensor } from '../graph.ts';
import { add, div, greater, minimum, mul, pow, sqrt, sub, where } from '../ops/elementwise.ts';
import { sumAll } from '../ops/reduce.ts';

export interface AdamWHyper {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
}
export const ADAMW_DEFAULTS: AdamWHyper = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };

export interface AdamWState {
  readonly param: Tensor;
  readonly m: Tensor;
  readonly v: Tensor;
}

/**
 * One AdamW step (decoupled weight decay, bias correction). `step` is the step count *after* this
 * update (1 on the first update), a float scalar; `wd` is 0 for parameters without decay. `gradScale` (a scalar,
 * e.g. the clipping coefficient) multiplies the gradient: it is folded into the moments' scalar factors, so the
 * scaled gradient is never written out.
 *
 * Element-wise passes over the parameter's size are what this costs on a CPU (each ONNX op is one pass), so the
 * scalars are combined first: m / (√v / √bc2 + ε) · lr/bc1 is computed as m / (√v + ε√bc2) · (lr √bc2 / bc1), the
 * same value up to rounding; and g·g is the node the gradient's norm (`norm`) squares as well, so the two share it.
 */
export function adamw(s: AdamWState, grad: Tensor, lr: Tensor, wd: Tensor | number, step: Tensor, h: AdamWHyper = ADAMW_DEFAULTS, gradScale?: Tensor): AdamWState {
  const decayed = typeof wd === 'number' && wd === 0 ? s.param : mul(s.param, sub(1, mul(lr, wd)));
  const scale1 = gradScale ? mul(gradScale, 1 - h.beta1) : 1 - h.beta1;
  const scale2 = gradScale ? mul(mul(gradScale, gradScale), 1 - h.beta2) : 1 - h.beta2;
  const m = add(mul(s.m, h.beta1), mul(grad, scale1));
  const v = add(mul(s.v, h.beta2), mul(mul(grad, grad), scale2));
  const biasCorrection1 = sub(1, pow(s.param.graph.scalar(h.beta1, step.dtype), step));
  const rootBc2 = sqrt(sub(1, pow(s.param.graph.scalar(h.beta2, step.dtype), step)));
  const stepSize = div(mul(lr, rootBc2), biasCorrection1);
  const param = sub(decayed, mul(div(m, add(sqrt(v), mul(rootBc2, h.eps))), stepSize));
  return { param, m, v };
}

/** SGD with momentum as torch.optim.SGD (dampening 0, weight decay added to the gradient). */
export function sgd(param: Tensor, buf: Tensor, grad: Tensor, lr: Tensor, momentum: number, wd: Tensor | number = 0): { param: Tensor; buf: Tensor } {
  const g = typeof wd === 'number' && wd === 0 ? grad : add(grad, mul(param, wd));
  const b = momentum === 0 ? g : add(mul(buf, momentum), g);
  return { param: sub(param, mul(lr, b)), buf: b };
}

/** L2 norm of a whole tensor, as a scalar. */
export function norm(t: Tensor): Tensor {
  return sqrt(sumAll(mul(t, t)));
}

/**
 * Per-parameter gradient clipping as DINO's utils.clip_gradients: if ||g|| > c, g *= c / (||g|| + 1e-6).
 * Returns the clipped gradient and the pre-clip norm.
 */
export function clipGradNorm(grad: Tensor, maxNorm: number): { grad: Tensor; norm: Tensor } {
  const n = norm(grad);
  return { grad: mul(grad, clipCoefficient(n, maxNorm)), norm: n };
}

/** The factor clipGradNorm multiplies a gradient of norm `n` by: min(c / (n + 1e-6), 1). */
export function clipCoefficient(n: Tensor, maxNorm: number): Tensor {
  return minimum(div(maxNorm, add(n, 1e-6)), 1);
}

/** target <- momentum * target + (1 - momentum) * source (DINO's teacher update). */
export function ema(target: Tensor, source: Tensor, momentum: Tensor): Tensor {
  return add(mul(target, momentum), mul(source, sub(1, momentum)));
}

/** `gate > 0 ? updated : previous`, for updates switched off by a scalar input (e.g. a frozen last layer). */
export function gated(gate: Tensor, updated: Tensor, previous: Tensor): Tensor {
  return where(greater(gate, 0), updated, previous);
}

