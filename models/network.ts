/**
 * The DINO network g = h ∘ f on one batch of images: the backbone at the scope's root (names such as
 * `cls_token`, `blocks.0.attn.qkv.weight`, `layer1.0.conv1.weight`) and the head under `head.`
 * (`head.mlp.0.weight`, `head.last_layer.weight_v`), as DINO's state_dict names them (docs/ARCHITECTURE.md, "DINO reference").
 */
import { type Dim, Graph, type ParamSpec, Scope, type Tensor, specOf } from '../dsl/index.ts';
import { registeredBackbone } from './backbones.ts';
import { dinoHead } from './head.ts';
import { type DinoModelConfig, featureDim } from './presets.ts';
import { resnet } from './resnet.ts';
import { type Recompute, visionTransformer } from './vit.ts';

/** Scope name of the head: its parameters are `head.<DINOHead key>`. */
export const HEAD_SCOPE = 'head';

export interface NetworkOptions {
  /** Training mode: BatchNorm uses batch statistics and updates its running statistics. */
  readonly train?: boolean;
  /** ViT stochastic-depth masks [depth, 2, B] (see `sampleDropPathMasks`); omit for no drop path. */
  readonly dropPathMasks?: Tensor;
  /** ViT: activations recomputed in the backward pass instead of kept (see `Recompute`). */
  readonly recompute?: Recompute;
}

export interface NetworkOutputs {
  /** Backbone features [B, D] (ViT: final-norm [CLS]; ResNet: pooled; a registered backbone: its `features`). */
  readonly features: Tensor;
  /** Head logits [B, K]. */
  readonly logits: Tensor;
  /** Patch tokens [B, P, D] (ViT, and a registered backbone that has them); the last block's attention [B, heads, T, T] (ViT). */
  readonly patchTokens?: Tensor;
  readonly attention?: Tensor;
}

/**
 * The backbone alone (features and, for ViTs, patch tokens and attention), by its config's kind: the built-in ViT
 * and ResNet, or a backbone registered with `registerBackbone` (models/backbones.ts). Drop path and recompute apply
 * to ViTs.
 */
export function backbone(s: Scope, images: Tensor, cfg: DinoModelConfig['backbone'], opts: NetworkOptions = {}): Omit<NetworkOutputs, 'logits'> {
  switch (cfg.kind) {
    case 'vit': {
      const out = visionTransformer(s, images, cfg, { ...(opts.dropPathMasks ? { dropPathMasks: opts.dropPathMasks } : {}), recompute: opts.recompute ?? 'none' });
      return { features: out.cls, patchTokens: out.patchTokens, attention: out.attention };
    }
    case 'resnet':
      return { features: resnet(s, images, cfg, { train: opts.train ?? false }).features };
    case 'custom': {
      const out = registeredBackbone(cfg.name).build(s, images, cfg, { train: opts.train ?? false });
      return { features: out.features, ...(out.patchTokens ? { patchTokens: out.patchTokens } : {}) };
    }
  }
}

/** Backbone then head on `images` [B, C, H, W]. */
export function dinoNetwork(s: Scope, images: Tensor, cfg: DinoModelConfig, opts: NetworkOptions = {}): NetworkOutputs {
  const f = backbone(s, images, cfg.backbone, opts);
  const head = dinoHead(s.child(HEAD_SCOPE), f.features, featureDim(cfg.backbone), cfg.head, { train: opts.train ?? false });
  return { ...f, logits: head.logits };
}

/** True for a head parameter name (`head.` prefix). */
export const isHeadParam = (name: string): boolean => name.startsWith(`${HEAD_SCOPE}.`);

/**
 * A graph of the whole network for inspection and export: input `images` [batch, C, side, side],
 * outputs `features` and `logits` (inference mode).
 */
export function buildNetworkGraph(cfg: DinoModelConfig, opts: { batch?: Dim; side?: number } = {}): Graph {
  const side = opts.side ?? cfg.backbone.imgSize;
  const g = new Graph('dino');
  const images = g.input('images', 'float32', [opts.batch ?? 'batch', cfg.backbone.inChans, side, side]);
  const out = dinoNetwork(new Scope(g), images, cfg);
  g.output('features', out.features);
  g.output('logits', out.logits);
  return g;
}

/** Every ParamSpec (parameters and buffers) of a graph, in creation order. */
export function paramSpecs(g: Graph): ParamSpec[] {
  return [...g.params.values()].map(specOf);
}
