/**
 * The KoLeo regulariser (Kozachenko-Leonenko entropy estimator; Sablayrolles et al. 2019, used by DINOv2):
 *   L = -1/B sum_i log(||x_i - x_nn(i)|| + eps),  x = rows of the batch l2-normalised, nn(i) = the nearest other row,
 * which pushes each feature away from its nearest neighbour in the batch and so spreads the features over the
 * sphere, the property a k-NN classifier needs. DINOv2 applies it to the student's backbone [CLS] features of each
 * global crop separately (the two views of one image must not count as neighbours) with weight 0.1.
 */
import { type Tensor, add, l2Normalize, log, matmul, maximum, meanAll, mul, neg, reduceMax, sqrt, sub, transposeLast2 } from '../dsl/index.ts';

/** PyTorch's F.normalize and PairwiseDistance epsilons in DINOv2's KoLeoLoss. */
const NORMALIZE_EPS = 1e-8;
const DISTANCE_EPS = 1e-8;

/**
 * KoLeo loss of one batch of features `x` [B, D] (B >= 2), a scalar. The nearest neighbour is the row of largest
 * cosine similarity other than the row itself, so the distance is sqrt(2 - 2 max_j!=i <x_i, x_j>); the gradient
 * flows through that one neighbour (ReduceMax's rule), as through PyTorch's gather of the arg-max.
 */
export function koleoLoss(x: Tensor): Tensor {
  const b = x.shape[0];
  if (x.rank !== 2 || typeof b !== 'number' || b < 2) {
    // Recorded as a graph error (reported with the others at validation); the loss is then left out.
    x.graph.error('koleoLoss', 'expects features [B, D] with a static B >= 2 (a row needs a neighbour)', [x]);
    return x.graph.scalar(0, x.dtype);
  }
  const n = l2Normalize(x, -1, NORMALIZE_EPS);
  const similarity = matmul(n, transposeLast2(n)); // [B, B], in [-1, 1]
  // Lower the diagonal below any cosine (-1) so a row is never its own neighbour (DINOv2 fills it with -1).
  const eye = x.graph.constant(Array.from({ length: b * b }, (_, k) => (k % (b + 1) === 0 ? 3 : 0)), x.dtype, [b, b]);
  const nearest = reduceMax(sub(similarity, eye), 1); // [B]
  // ||x_i - x_j||^2 = 2 - 2 cos for unit rows; clamped at 0 against rounding, so the square root is real.
  const distance = sqrt(maximum(sub(2, mul(nearest, 2)), 0));
  return neg(meanAll(log(add(distance, DISTANCE_EPS))));
}
