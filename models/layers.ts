/**
 * Building blocks shared by the architectures: PyTorch-layout Linear and LayerNorm, and the
 * initialisers DINO uses. Each block is a plain function `(s: Scope, x: Tensor, ...) => Tensor`;
 * the caller passes the child scope (`s.child('fc1')`), so parameter names are the module path
 * plus `weight` / `bias`, exactly as in a PyTorch `state_dict`.
 */
import { type Init, type Scope, type Tensor, add, autocastMatmul, layerNorm as layerNormOp, mul, reshape, transposeLast2 } from '../dsl/index.ts';

/** DINO's `trunc_normal_(std=.02)` (absolute bounds -2..2, i.e. practically untruncated). */
export const TRUNC_NORMAL_02: Init = { kind: 'truncnormal', std: 0.02, lo: -2, hi: 2 };
export const ZEROS: Init = { kind: 'zeros' };
export const ONES: Init = { kind: 'ones' };

/**
 * PyTorch's default init of `nn.Linear` / `nn.Conv2d` weights and biases:
 * kaiming_uniform(a = sqrt 5) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the bias uses the same bound.
 */
export function torchDefaultInit(fanIn: number): Init {
  const bound = 1 / Math.sqrt(fanIn);
  return { kind: 'uniform', lo: -bound, hi: bound };
}

export interface LinearOptions {
  /** Default true. */
  readonly bias?: boolean;
  /** Default: DINO's trunc normal std 0.02 (its `_init_weights`). */
  readonly weightInit?: Init;
  /** Default: zeros. */
  readonly biasInit?: Init;
  readonly tags?: readonly string[];
}

/**
 * `nn.Linear(inFeatures, outFeatures)`: y = x W^T + b with `weight` [out, in] (PyTorch's layout, so
 * checkpoints load unchanged) over the last axis of `x`.
 */
export function linear(s: Scope, x: Tensor, inFeatures: number, outFeatures: number, opts: LinearOptions = {}): Tensor {
  return s.run(() => {
    const tags = opts.tags ?? [];
    const weight = s.param('weight', [outFeatures, inFeatures], opts.weightInit ?? TRUNC_NORMAL_02, { tags, dtype: floatType(x) });
    const y = autocastMatmul(s, x, transposeLast2(weight));
    if (opts.bias === false) return y;
    const bias = s.param('bias', [outFeatures], opts.biasInit ?? ZEROS, { tags, dtype: floatType(x) });
    return add(y, bias);
  });
}

/**
 * The same `nn.Linear` (same parameters) on features-major input: xT [inFeatures, N] -> W xT + b [outFeatures, N].
 * Small M and large N suit ONNX Runtime's CPU GEMM better at K = 192 than x Wᵀ's large M and small N (bench/RESULTS.md).
 */
export function linearFeatureMajor(s: Scope, xT: Tensor, inFeatures: number, outFeatures: number, opts: LinearOptions = {}): Tensor {
  return s.run(() => {
    const tags = opts.tags ?? [];
    const weight = s.param('weight', [outFeatures, inFeatures], opts.weightInit ?? TRUNC_NORMAL_02, { tags, dtype: floatType(xT) });
    const y = autocastMatmul(s, weight, xT);
    if (opts.bias === false) return y;
    const bias = s.param('bias', [outFeatures], opts.biasInit ?? ZEROS, { tags, dtype: floatType(xT) });
    return add(y, reshape(bias, [outFeatures, 1]));
  });
}

/** `nn.LayerNorm(dim, eps)` over the last axis; weight 1, bias 0. */
export function layerNorm(s: Scope, x: Tensor, dim: number, eps: number): Tensor {
  return s.run(() => {
    const weight = s.param('weight', [dim], ONES, { dtype: floatType(x) });
    const bias = s.param('bias', [dim], ZEROS, { dtype: floatType(x) });
    return layerNormOp(x, weight, bias, eps, -1);
  });
}

/** Parameters take the dtype of the activations they meet (float64 models exist for gradient checks). */
export function floatType(x: Tensor): 'float32' | 'float64' {
  return x.dtype === 'float64' ? 'float64' : 'float32';
}

/**
 * Records `running <- (1 - momentum) running + momentum batchStat` for the buffer `name` of scope `s`
 * (PyTorch's BatchNorm update). When the module already ran once in this graph (DINO runs the backbone
 * once per crop resolution), the update chains from the first one's result, as two successive PyTorch
 * forwards would.
 */
export function updateRunningStat(s: Scope, name: string, running: Tensor, batchStat: Tensor, momentum: number): void {
  const key = s.paramPrefix + (s.path ? `${s.path}.${name}` : name);
  const updates = s.graph.bufferUpdates;
  const previous = updates.get(key);
  if (previous) updates.delete(key);
  const current = previous ?? running;
  s.updateBuffer(name, s.run(() => add(mul(current, 1 - momentum), mul(batchStat, momentum))));
}
