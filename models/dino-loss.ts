/**
 * DINO's loss, center update and collapse metrics (Caron et al. 2021; main_dino.py DINOLoss), as graph code.
 *
 * Views are stacked view-major, as DINO's MultiCropWrapper concatenates them: the student's logits are
 * [V*B, K] (the 2 global views first, then the local views), the teacher's [2*B, K] (global views only).
 */
import {
  type Tensor,
  add,
  div,
  log,
  logSoftmax,
  maximum,
  meanAll,
  mul,
  neg,
  reduceMean,
  reduceSum,
  reshape,
  slice,
  softmax,
  stopGradient,
  sub,
  sumAll,
} from '../dsl/index.ts';
import { sinkhornKnopp } from './sinkhorn.ts';

/** How the teacher's targets are made (`DinoLossInputs.centering`). */
export const CENTERINGS = ['center', 'sinkhorn'] as const;
export type Centering = (typeof CENTERINGS)[number];

export interface DinoLossInputs {
  /** Student logits [V*B, K]; views 0 and 1 are the global crops. */
  readonly student: Tensor;
  /** Teacher logits [2*B, K] on the two global crops. */
  readonly teacher: Tensor;
  /** Center [1, K] (state), subtracted from teacher logits before sharpening. */
  readonly center: Tensor;
  /** Teacher temperature τ_t (scalar input: it follows a warm-up schedule). */
  readonly teacherTemp: Tensor;
  /** Student temperature τ_s (DINO: 0.1). */
  readonly studentTemp: number;
  /** Center EMA momentum m (DINO: 0.9). */
  readonly centerMomentum: number;
  readonly batch: number;
  readonly views: number;
  /**
   * How the teacher's targets are made. `center` (default): DINO's softmax((t - c) / τ_t). `sinkhorn`: Sinkhorn-Knopp
   * on t / τ_t over the batch (models/sinkhorn.ts, DINOv2); the center is not used by the targets then, but still
   * updated and returned, so the step's state and checkpoints have one layout in both modes.
   */
  readonly centering?: Centering;
}

export interface DinoLossOutputs {
  /** Mean over pairs (teacher view i, student view v != i) of the batch-mean cross-entropy. */
  readonly loss: Tensor;
  /** m c + (1 - m) mean of this step's teacher logits, [1, K] (computed from the teacher, no gradient). */
  readonly nextCenter: Tensor;
  /** Mean entropy of the teacher's targets: log K when uniform (collapse), 0 when one-hot. */
  readonly teacherEntropy: Tensor;
  /** Mean KL(P_t(x) || mean_x P_t): 0 when every image gets the same distribution (either collapse). */
  readonly teacherKl: Tensor;
}

export function dinoLoss(a: DinoLossInputs): DinoLossOutputs {
  const { batch: b, views: v } = a;
  const k = a.teacher.dim(-1);
  const teacher = stopGradient(a.teacher);
  // The targets [2B, K] and their log, which is asked for only after the loss, so that the centering graph keeps the
  // order of its nodes (and its bytes) from before the option.
  const targets = a.centering === 'sinkhorn' ? sinkhornTargets(teacher, a.teacherTemp) : centeredTargets(teacher, a.center, a.teacherTemp);
  const pt = targets.p;
  const logPs = logSoftmax(div(a.student, a.studentTemp), -1); // [V B, K]

  const loss = crossViewLoss(pt, logPs, b, v, k, b);

  const batchCenter = reduceMean(teacher, 0, true); // [1, K]
  const nextCenter = centerUpdate(a.center, batchCenter, a.centerMomentum);

  const logPt = targets.logP();
  const teacherEntropy = neg(div(reduceSum(mul(pt, logPt), [0, 1]), 2 * b));
  const meanPt = reduceMean(pt, 0, true);
  const teacherKl = meanAll(reduceSum(mul(pt, sub(logPt, log(maximum(meanPt, 1e-30)))), -1));
  return { loss, nextCenter, teacherEntropy, teacherKl };
}

/**
 * The sum over the b images of the cross-entropies of all pairs (teacher view i, student view v != i), divided by
 * `images` times the number of pairs: with `images` = b, the batch mean DINO minimises; with the global batch's
 * image count, one rank's share of it.
 */
function crossViewLoss(pt: Tensor, logPs: Tensor, b: number, v: number, k: number, images: number): Tensor {
  // Sum over all pairs (i, v != i) of <P_t^i, log P_s^v> per image
  //   = <sum_i P_t^i, sum_v log P_s^v> - sum_{i in {0,1}} <P_t^i, log P_s^i>,
  // which costs two view sums instead of 2(V-1) separate cross-entropies.
  const pt3 = reshape(pt, [2, b, k]);
  const ls3 = reshape(logPs, [v, b, k]);
  const allPairs = reduceSum(mul(reduceSum(pt3, 0), reduceSum(ls3, 0)), [0, 1]);
  const samePairs = reduceSum(mul(pt3, slice(ls3, [0], [2], [0])), [0, 1, 2]);
  const pairs = 2 * v - 2;
  return neg(div(sub(allPairs, samePairs), images * pairs));
}

/** DINO's center EMA: m c + (1 - m) · the batch mean of the teacher's logits ([1, K]); no gradient. */
export function centerUpdate(center: Tensor, batchMean: Tensor, momentum: number): Tensor {
  return stopGradient(add(mul(center, momentum), mul(batchMean, 1 - momentum)));
}

/** One rank's shares of DINO's loss and batch quantities (`dinoLossShares`). */
export interface DinoLossShares {
  /** This rank's share of the loss (its images' cross-entropies over the global batch's images and pairs). */
  readonly loss: Tensor;
  /** This rank's teacher logits summed over its rows, over 2 · globalBatch, [1, K]: the ranks' sum is the batch mean the center follows. */
  readonly teacherMean: Tensor;
  /** −Σ P_t log P_t over this rank's rows, over 2 · globalBatch: the ranks' sum is the batch's mean teacher entropy. */
  readonly teacherEntropy: Tensor;
  /** P_t summed over this rank's rows, over 2 · globalBatch, [1, K]: the ranks' sum is the batch-mean target distribution. */
  readonly teacherProbs: Tensor;
}

/**
 * One rank's shares of DINO's loss and of the batch quantities its center and metrics need, for a data-parallel step
 * (docs/DISTRIBUTED.md): each is this rank's sum over its own images divided by the global batch's count, so the
 * sum over ranks (the all-reduce) is the value one process computes on the whole batch. `a.batch` is this rank's
 * image count, `globalBatch` every rank's together. DINO's centering only: Sinkhorn-Knopp normalises over the
 * whole batch, which one sum cannot carry.
 */
export function dinoLossShares(a: Omit<DinoLossInputs, 'centering' | 'centerMomentum'>, globalBatch: number): DinoLossShares {
  const { batch: b, views: v } = a;
  const k = a.teacher.dim(-1);
  const teacher = stopGradient(a.teacher);
  const targets = centeredTargets(teacher, a.center, a.teacherTemp);
  const pt = targets.p;
  const logPs = logSoftmax(div(a.student, a.studentTemp), -1);
  const loss = crossViewLoss(pt, logPs, b, v, k, globalBatch);
  // One rank holding the whole batch computes exactly the one-process step's nodes (reduceMean, 2b).
  const rowShare = (x: Tensor) => (globalBatch === b ? reduceMean(x, 0, true) : div(reduceSum(x, 0, true), 2 * globalBatch));
  const teacherMean = rowShare(teacher);
  const teacherEntropy = neg(div(reduceSum(mul(pt, targets.logP()), [0, 1]), 2 * globalBatch));
  return { loss, teacherMean, teacherEntropy, teacherProbs: rowShare(pt) };
}

/**
 * The mean KL(P_t(x) || mean_x P_t) of `dinoLoss` from the batch's summed shares: the mean over rows of
 * Σ_k p log p − Σ_k p log m_k is −entropy − Σ_k m_k log m_k, m the batch-mean distribution. A difference of two
 * numbers near log K, so its float32 error is absolute (~1e-6), not relative to a small KL.
 */
export function teacherKlFromShares(teacherEntropy: Tensor, teacherProbs: Tensor): Tensor {
  return neg(add(teacherEntropy, sumAll(mul(teacherProbs, log(maximum(teacherProbs, 1e-30))))));
}

interface Targets {
  readonly p: Tensor;
  readonly logP: () => Tensor;
}

/** DINO: P_t = softmax((t - c) / τ_t). */
function centeredTargets(teacher: Tensor, center: Tensor, temp: Tensor): Targets {
  const teacherLogits = div(sub(teacher, center), temp);
  return { p: softmax(teacherLogits, -1), logP: () => logSoftmax(teacherLogits, -1) };
}

/** DINOv2: Sinkhorn-Knopp over the batch; the center would only shift columns, which the iterations undo anyway. */
function sinkhornTargets(teacher: Tensor, temp: Tensor): Targets {
  const { q, logQ } = sinkhornKnopp(teacher, temp);
  return { p: q, logP: () => logQ };
}
