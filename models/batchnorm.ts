/**
 * PyTorch's `nn.BatchNorm1d` / `nn.BatchNorm2d` as a module: `weight`, `bias` (learned) and the
 * buffers `running_mean`, `running_var`.
 *
 * Training mode normalises with the batch statistics (biased variance) and records the new running
 * statistics with momentum 0.1 and the *unbiased* batch variance, as PyTorch does. Inference mode
 * normalises with the running statistics.
 */
import { type Scope, type Tensor, batchNormInference, batchNormTraining } from '../dsl/index.ts';
import { ONES, ZEROS, floatType, updateRunningStat } from './layers.ts';

export interface BatchNormOptions {
  /** Batch statistics + running-stat update (true) or running statistics (false). */
  readonly train: boolean;
  /** PyTorch default 1e-5. */
  readonly eps?: number;
  /** PyTorch default 0.1 (weight of the new batch statistic). */
  readonly momentum?: number;
}

/** BatchNorm over channel axis 1 of `x` ([N, C] or [N, C, H, W]). */
export function batchNorm(s: Scope, x: Tensor, channels: number, opts: BatchNormOptions): Tensor {
  return s.run(() => {
    const eps = opts.eps ?? 1e-5, momentum = opts.momentum ?? 0.1, dtype = floatType(x);
    const weight = s.param('weight', [channels], ONES, { dtype });
    const bias = s.param('bias', [channels], ZEROS, { dtype });
    const runningMean = s.buffer('running_mean', [channels], ZEROS, dtype);
    const runningVar = s.buffer('running_var', [channels], ONES, dtype);
    if (!opts.train) return batchNormInference(x, weight, bias, runningMean, runningVar, eps);
    const bn = batchNormTraining(x, weight, bias, eps);
    updateRunningStat(s, 'running_mean', runningMean, bn.mean, momentum);
    updateRunningStat(s, 'running_var', runningVar, bn.varUnbiased, momentum);
    return bn.y;
  });
}
