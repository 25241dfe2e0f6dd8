/**
 * Sinkhorn-Knopp teacher targets (SwAV, Caron et al. 2020; DINOv2's replacement for DINO's centering), as graph code.
 * The teacher's logits of a whole batch [N, K] (N = 2B: both global views together) become
 *   Q ∝ exp(logits / τ_t), then n times: each prototype (column) scaled to mass 1/K, each sample (row) to mass 1/N;
 * finally each row scaled to sum to 1: every sample gets a distribution, and the batch uses the prototypes about
 * equally, which is what centering approximates with its running mean.
 *
 * Computed in the log domain: with τ_t = 0.02 the logits / τ_t reach thousands, far past float32's exp (88).
 */
import { type Tensor, type TensorLike, add, div, exp, log, reduceMax, reduceSum, stopGradient, sub } from '../dsl/index.ts';

/** DINOv2's and SwAV's number of iterations. */
export const SINKHORN_ITERATIONS = 3;

export interface SinkhornTargets {
  /** log Q [N, K]: the targets' log-probabilities, exact where exp(logQ) would underflow to 0. */
  readonly logQ: Tensor;
  /** Q [N, K]: each row sums to 1. */
  readonly q: Tensor;
}

/** log Σ_axis exp(x), keeping the axis; the max is subtracted first so exp is at most 1. */
function logSumExp(x: Tensor, axis: number): Tensor {
  const m = reduceMax(x, axis, true);
  return add(m, log(reduceSum(exp(sub(x, m)), axis, true)));
}

/**
 * Sinkhorn-Knopp targets of `logits` [N, K] at temperature `temp` after `iterations` (>= 0; 0 is plain softmax).
 * No gradient flows into them (the teacher side). The factors 1/K and 1/N are left out: a factor common to the whole
 * matrix is undone by the next normalisation along either axis, so the result is the same; and the last iteration's
 * row step is merged with the final scaling of the rows to 1, which it only changes by the factor N.
 */
export function sinkhornKnopp(logits: Tensor, temp: TensorLike, iterations = SINKHORN_ITERATIONS): SinkhornTargets {
  if (logits.rank !== 2 || !Number.isInteger(iterations) || iterations < 0) {
    logits.graph.error('sinkhornKnopp', `expects logits [N, K] and a whole number of iterations >= 0, got ${iterations}`, [logits]);
    return { logQ: logits, q: logits };
  }
  let logQ = div(stopGradient(logits), temp);
  for (let i = 0; i < iterations; i++) {
    logQ = sub(logQ, logSumExp(logQ, 0)); // each prototype's mass over the batch equal
    if (i < iterations - 1) logQ = sub(logQ, logSumExp(logQ, 1)); // each sample's mass equal
  }
  logQ = sub(logQ, logSumExp(logQ, 1)); // rows sum to 1
  return { logQ, q: exp(logQ) };
}
