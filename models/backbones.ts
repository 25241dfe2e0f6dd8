/**
 * The backbone registry: a user's own backbone, written in the DSL, trains with DINO without editing the library.
 * `registerBackbone(name, { build, featureDim })` adds it; a config `{ kind: 'custom', name, inChans, imgSize,
 * options }` names it, and the DINO network (models/network.ts), hence the DINO step and training, builds it from the
 * registry. The config holds only JSON values (it is saved with a run), so a program that resumes or evaluates a
 * run registers its backbones again before it does. The built-in backbones (ViT, ResNet) are configs of their own
 * kinds and need no registration.
 */
import type { Scope, Tensor } from '../dsl/index.ts';

/** A registered backbone in a model config. */
export interface CustomBackboneConfig {
  readonly kind: 'custom';
  /** The name it was registered under ({@link registerBackbone}). */
  readonly name: string;
  /** Channels and side of the images it is trained on (the global crop side). */
  readonly inChans: number;
  readonly imgSize: number;
  /** The backbone's own settings (JSON values: they are saved with the run's config). */
  readonly options?: { readonly [key: string]: unknown };
}

/** What a backbone gives the DINO head (and the evaluations): the image features, and for token models more. */
export interface BackboneOutputs {
  /** [B, D]: what the head and the k-NN / linear evaluations read. */
  readonly features: Tensor;
  /** [B, P, D] patch tokens, where the backbone has them. */
  readonly patchTokens?: Tensor;
}

export interface BackboneDefinition {
  /**
   * Builds the backbone under `scope` (its parameters are named by the module paths it creates there) on `images`
   * [B, C, H, W] (normalised crops; H and W are the global or the local crop size). `train` is true in the DINO step
   * (BatchNorm: batch statistics).
   */
  build(scope: Scope, images: Tensor, cfg: CustomBackboneConfig, opts: { readonly train: boolean }): BackboneOutputs;
  /** D, the width of `features`. */
  featureDim(cfg: CustomBackboneConfig): number;
}

const REGISTRY = new Map<string, BackboneDefinition>();

/** Adds (or replaces) the backbone `name`; returns a config builder for it. */
export function registerBackbone(name: string, definition: BackboneDefinition): (cfg: Omit<CustomBackboneConfig, 'kind' | 'name'>) => CustomBackboneConfig {
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new Error(`backbone name "${name}" must be letters, digits, "_", "-" or "."`);
  if (typeof definition?.build !== 'function' || typeof definition.featureDim !== 'function') {
    throw new Error(`backbone "${name}": the definition needs build(scope, images, cfg, opts) and featureDim(cfg) functions`);
  }
  REGISTRY.set(name, definition);
  return (cfg) => ({ kind: 'custom', name, ...cfg });
}

/** The definition of a registered backbone; an error naming the registered ones otherwise. */
export function registeredBackbone(name: string): BackboneDefinition {
  const found = REGISTRY.get(name);
  if (!found) {
    const known = [...REGISTRY.keys()];
    throw new Error(`no backbone "${name}" is registered (${known.length ? `registered: ${known.join(', ')}` : 'none is'}): call registerBackbone("${name}", { build, featureDim }) before building, training or evaluating a model with it`);
  }
  return found;
}

/** The registered backbone names, in registration order. */
export const registeredBackboneNames = (): string[] => [...REGISTRY.keys()];
