/**
 * Named model configurations: DINO's ViTs (`vit_tiny`, `vit_small`, `vit_base`, any patch size and
 * channel count), ResNet-18/50, and the Fashion-MNIST presets of docs/ARCHITECTURE.md "DINO reference" (`fmnist-tiny6`,
 * `fmnist-tiny12`). A preset is a backbone config plus a head config; `dinoNetwork` builds it.
 */
import { type CustomBackboneConfig, registeredBackbone } from './backbones.ts';
import type { DinoHeadConfig } from './head.ts';
import type { ResNetConfig } from './resnet.ts';
import { resnetFeatureDim } from './resnet.ts';
import type { ViTConfig } from './vit.ts';

/** The built-in backbones, and any registered one (models/backbones.ts). */
export type BackboneConfig = ViTConfig | ResNetConfig | CustomBackboneConfig;

/** A whole DINO network g = h ∘ f. */
export interface DinoModelConfig {
  readonly backbone: BackboneConfig;
  readonly head: DinoHeadConfig;
}

export interface Preset extends DinoModelConfig {
  readonly name: string;
  readonly description: string;
}

/** The feature width the backbone hands to the head. */
export function featureDim(backbone: BackboneConfig): number {
  switch (backbone.kind) {
    case 'vit': return backbone.embedDim;
    case 'resnet': return resnetFeatureDim(backbone);
    case 'custom': return registeredBackbone(backbone.name).featureDim(backbone);
  }
}

/** DINO's head defaults (main_dino.py): K = 65536, hidden 2048, bottleneck 256, 3 layers, no BN, norm_last_layer. */
export const DINO_HEAD: DinoHeadConfig = {
  outDim: 65536,
  hiddenDim: 2048,
  bottleneckDim: 256,
  nlayers: 3,
  useBn: false,
  normLastLayer: true,
};

export interface ViTSizeOptions {
  /** Default 16. */
  readonly patchSize?: number;
  /** Default 3. */
  readonly inChans?: number;
  /** Side of the training crop, default 224. */
  readonly imgSize?: number;
  /** Default 0.1 (DINO's student). */
  readonly dropPathRate?: number;
}

function vitOf(embedDim: number, numHeads: number, o: ViTSizeOptions): ViTConfig {
  return {
    kind: 'vit',
    imgSize: o.imgSize ?? 224,
    patchSize: o.patchSize ?? 16,
    inChans: o.inChans ?? 3,
    embedDim,
    depth: 12,
    numHeads,
    mlpRatio: 4,
    qkvBias: true,
    layerNormEps: 1e-6,
    dropPathRate: o.dropPathRate ?? 0.1,
  };
}

/** ViT-Tiny: width 192, depth 12, 3 heads (5.5 M params at patch 16). DINO recommends it for quick experiments. */
export const vitTiny = (o: ViTSizeOptions = {}): ViTConfig => vitOf(192, 3, o);
/** ViT-Small: width 384, depth 12, 6 heads (21.7 M params at patch 16), DINO's default `--arch`. */
export const vitSmall = (o: ViTSizeOptions = {}): ViTConfig => vitOf(384, 6, o);
/** ViT-Base: width 768, depth 12, 12 heads (85.8 M params at patch 16). */
export const vitBase = (o: ViTSizeOptions = {}): ViTConfig => vitOf(768, 12, o);

/** ResNet-18 / ResNet-50 backbones (torchvision layouts, `fc` removed). */
export const resnet18 = (inChans = 3): ResNetConfig => ({ kind: 'resnet', block: 'basic', layers: [2, 2, 2, 2], width: 64, inChans, imgSize: 224 });
export const resnet50 = (inChans = 3): ResNetConfig => ({ kind: 'resnet', block: 'bottleneck', layers: [3, 4, 6, 3], width: 64, inChans, imgSize: 224 });

/** The Fashion-MNIST ViT (docs/ARCHITECTURE.md, "DINO reference"): 1 channel, 28 px, patch 4 (7x7 patches + CLS), width 192, 3 heads, MLP 768. */
function fmnistTiny(depth: number): DinoModelConfig {
  return {
    backbone: { ...vitTiny({ patchSize: 4, inChans: 1, imgSize: 28, dropPathRate: 0.1 }), depth },
    head: { outDim: 4096, hiddenDim: 2048, bottleneckDim: 256, nlayers: 3, useBn: false, normLastLayer: true },
  };
}

const PRESETS: Readonly<Record<string, Preset>> = {
  vit_tiny: { name: 'vit_tiny', description: 'ViT-Tiny/16, 224 px RGB, DINO head K=65536', backbone: vitTiny(), head: DINO_HEAD },
  vit_small: { name: 'vit_small', description: 'ViT-Small/16, 224 px RGB, DINO head K=65536', backbone: vitSmall(), head: DINO_HEAD },
  vit_base: { name: 'vit_base', description: 'ViT-Base/16, 224 px RGB, DINO head K=65536', backbone: vitBase(), head: DINO_HEAD },
  resnet18: { name: 'resnet18', description: 'ResNet-18, 224 px RGB, DINO head K=65536', backbone: resnet18(), head: DINO_HEAD },
  resnet50: { name: 'resnet50', description: 'ResNet-50, 224 px RGB, DINO head K=65536', backbone: resnet50(), head: DINO_HEAD },
  'fmnist-tiny6': { name: 'fmnist-tiny6', description: 'Fashion-MNIST ViT, 28 px, patch 4, width 192, depth 6, K=4096', ...fmnistTiny(6) },
  'fmnist-tiny12': { name: 'fmnist-tiny12', description: 'Fashion-MNIST ViT, 28 px, patch 4, width 192, depth 12, K=4096', ...fmnistTiny(12) },
};

/** Every preset name `getPreset` accepts (the ViTs also as `vit_small_p8` etc. for other patch sizes). */
export function presetNames(): string[] {
  return Object.keys(PRESETS);
}

/**
 * A preset by name. `vit_tiny|vit_small|vit_base` take an optional `_p<N>` suffix for patch size N
 * (`vit_small_p8` is DINO's ViT-S/8). Throws an Error listing the known names.
 */
export function getPreset(name: string): Preset {
  const direct = PRESETS[name];
  if (direct) return direct;
  const m = /^(vit_tiny|vit_small|vit_base)_p(\d+)$/.exec(name);
  if (m) {
    const base = PRESETS[m[1]!]!;
    const patchSize = Number(m[2]);
    if (patchSize > 0 && 224 % patchSize === 0) {
      return { ...base, name, description: base.description.replace('/16', `/${patchSize}`), backbone: { ...(base.backbone as ViTConfig), patchSize } };
    }
  }
  throw new Error(`unknown preset "${name}"; known presets: ${presetNames().join(', ')} (ViTs also as <name>_p<patch>, e.g. vit_small_p8)`);
}
