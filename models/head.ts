/**
 * DINO's projection head (`DINOHead` in facebookresearch/dino `vision_transformer.py`):
 * an MLP (Linear GELU Linear GELU Linear by default), L2 normalisation, then a weight-normalised
 * Linear(bottleneck, K) without bias. Parameter names are the `nn.Sequential` indices DINO's
 * state_dict has: `mlp.0.weight`, `mlp.2.weight`, `mlp.4.weight` (with BatchNorm: `mlp.0`, `mlp.1`
 * (BN), `mlp.3`, `mlp.4` (BN), `mlp.6`), `last_layer.weight_g`, `last_layer.weight_v`.
 */
import { type Scope, type Tensor, autocastMatmul, div, gelu, l2Normalize, mul, reduceSum, sqrt, transposeLast2 } from '../dsl/index.ts';
import { batchNorm } from './batchnorm.ts';
import { ONES, floatType, linear, torchDefaultInit } from './layers.ts';

/** Tag carried by the last layer's parameters: DINO freezes them during the first epoch(s). */
export const LAST_LAYER_TAG = 'last_layer';

export interface DinoHeadConfig {
  /**
   * K, the output dimension (number of prototypes). DINO: "for complex and large datasets large values
   * (like 65k) work well" (default 65536); small datasets do well with a few thousand.
   */
  readonly outDim: number;
  /** Width of the hidden MLP layers (2048 in DINO). */
  readonly hiddenDim: number;
  /** Width of the bottleneck before the L2 normalisation (256 in DINO). */
  readonly bottleneckDim: number;
  /** Number of Linear layers in the MLP (3 in DINO; 1 means a single Linear(in, bottleneck)). */
  readonly nlayers: number;
  /**
   * BatchNorm1d after each hidden Linear (DINO default false, `--use_bn_in_head`). In training graphs it
   * normalises with the batch statistics and updates `running_mean` / `running_var` (PyTorch's rule).
   */
  readonly useBn: boolean;
  /**
   * Fix the last layer's `weight_g` to 1, i.e. a cosine-similarity layer (DINO default true). DINO:
   * "Not normalizing leads to better performance but can make the training unstable. We typically set
   * this parameter to False with vit_small and True with vit_base."
   */
  readonly normLastLayer: boolean;
}

export interface HeadOptions {
  /** BatchNorm mode when `useBn`: batch statistics and running-stat updates (true) or running statistics. */
  readonly train?: boolean;
}

export interface HeadOutputs {
  /** Logits [N, K]. */
  readonly logits: Tensor;
  /** The L2-normalised bottleneck [N, bottleneck]. */
  readonly embedding: Tensor;
}

/** The DINO head on features `x` [N, inDim]. */
export function dinoHead(s: Scope, x: Tensor, inDim: number, cfg: DinoHeadConfig, opts: HeadOptions = {}): HeadOutputs {
  return s.run(() => {
    const mlpScope = s.child('mlp');
    let h: Tensor;
    if (cfg.nlayers <= 1) {
      h = linear(mlpScope, x, inDim, cfg.bottleneckDim);
    } else {
      // Index the layers like DINO's nn.Sequential: activations (and BN) take indices too.
      let index = 0, width = inDim;
      h = x;
      for (let layer = 0; layer < cfg.nlayers - 1; layer++) {
        h = linear(mlpScope.child(index++), h, width, cfg.hiddenDim);
        if (cfg.useBn) h = batchNorm(mlpScope.child(index++), h, cfg.hiddenDim, { train: opts.train ?? false });
        h = mlpScope.run(() => gelu(h));
        index++;
        width = cfg.hiddenDim;
      }
      h = linear(mlpScope.child(index), h, width, cfg.bottleneckDim);
    }
    const embedding = s.run(() => l2Normalize(h, -1, 1e-12));
    return { embedding, logits: weightNormLinear(s.child('last_layer'), embedding, cfg) };
  });
}

/**
 * `weight_norm(nn.Linear(bottleneck, K, bias=False))`: weight = g * v / ||v|| with one norm per output
 * row (dim 0). `weight_v` keeps PyTorch's default Linear init; `weight_g` starts at 1 and is frozen
 * (trainable: false) with `normLastLayer`.
 */
function weightNormLinear(s: Scope, x: Tensor, cfg: DinoHeadConfig): Tensor {
  return s.run(() => {
    const k = cfg.outDim, n = cfg.bottleneckDim, dtype = floatType(x);
    const tags = [LAST_LAYER_TAG];
    const g = s.param('weight_g', [k, 1], ONES, { trainable: !cfg.normLastLayer, tags, dtype });
    const v = s.param('weight_v', [k, n], torchDefaultInit(n), { tags, dtype });
    const weight = mul(v, div(g, sqrt(reduceSum(mul(v, v), 1, true))));
    return autocastMatmul(s, x, transposeLast2(weight));
  });
}
