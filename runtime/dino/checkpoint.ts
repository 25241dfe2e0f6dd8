/**
 * Checkpoints (docs/ARCHITECTURE.md, "Runtime"): the whole training state as safetensors plus a JSON metadata block
 * (config, completed steps, seed, loader position), written atomically: a crash mid-write leaves the
 * previous checkpoint intact.
 */
import type { BackboneConfig } from '../../models/presets.ts';
import { existsSync } from 'node:fs';
import type { TrainState } from '../state.ts';
import { ort } from '../backend.ts';
import { readSafetensors, readSafetensorsMetadata, writeSafetensorsAtomic, type NamedTensor } from '../io/safetensors.ts';
import type { LoaderPosition } from '../data/loader.ts';
import { type TrainConfig, checkTrainConfig } from './config.ts';

export const CHECKPOINT_FORMAT = 'dino-ts/1';

export interface CheckpointMeta {
  readonly config: TrainConfig<BackboneConfig>;
  /** Steps completed. */
  readonly step: number;
  readonly seed: number;
  /** Where the data loader resumes. */
  readonly loader: LoaderPosition;
  /** The processes of the data-parallel run that wrote it (absent: one); `config.batch` is their global batch. */
  readonly ranks?: number;
}

/** Saves any backbone's run (`meta.config` of a ViT, a ResNet or a registered backbone). */
export function saveCheckpoint(path: string, state: TrainState, meta: Omit<CheckpointMeta, 'config'> & { readonly config: TrainConfig<BackboneConfig> }): void {
  const tensors = new Map<string, NamedTensor>();
  for (const name of state.names()) {
    const t = state.get(name);
    tensors.set(name, { dtype: 'float32', shape: [...t.dims], data: t.data as Float32Array });
  }
  writeSafetensorsAtomic(path, tensors, {
    format: CHECKPOINT_FORMAT,
    config: JSON.stringify(meta.config),
    step: String(meta.step),
    seed: String(meta.seed),
    loader: JSON.stringify(meta.loader),
    ...(meta.ranks !== undefined ? { ranks: String(meta.ranks) } : {}),
  });
}

export interface LoadedCheckpoint {
  readonly meta: CheckpointMeta;
  readonly tensors: Map<string, NamedTensor>;
}

/**
 * `missing`: no file at `path`; `format`: a safetensors file that is not a training checkpoint (plain weights).
 * The message names library options; the CLI words it with its flags (cli/errors.ts).
 */
export class CheckpointError extends Error {
  constructor(readonly problem: { readonly kind: 'missing'; readonly path: string } | { readonly kind: 'format'; readonly path: string; readonly format: string | undefined }) {
    super(
      problem.kind === 'missing'
        ? `${problem.path}: no checkpoint there; train first, or pass the run folder that holds checkpoint.safetensors`
        : `${problem.path}: not a dino-ts training checkpoint (format "${problem.format ?? 'missing'}"); to start from plain weights pass them as initial weights (initWeights)`,
    );
    this.name = 'CheckpointError';
  }
}

/** A checkpoint's metadata (config, step, seed, loader position), read from its header alone. */
export function readCheckpointMeta(path: string): CheckpointMeta {
  if (!existsSync(path)) throw new CheckpointError({ kind: 'missing', path });
  return parseMeta(readSafetensorsMetadata(path), path);
}

function parseMeta(md: Record<string, string>, path: string): CheckpointMeta {
  if (md['format'] !== CHECKPOINT_FORMAT) throw new CheckpointError({ kind: 'format', path, format: md['format'] });
  let meta: { config: unknown; loader: LoaderPosition };
  try {
    meta = { config: JSON.parse(md['config']!), loader: JSON.parse(md['loader']!) };
  } catch (e) {
    throw new Error(`${path}: checkpoint metadata is unreadable (${(e as Error).message}); resume from an earlier checkpoint`);
  }
  return {
    config: checkTrainConfig(meta.config, `the config in ${path}'s metadata`), step: Number(md['step']), seed: Number(md['seed']), loader: meta.loader,
    ...(md['ranks'] !== undefined ? { ranks: Number(md['ranks']) } : {}),
  };
}

export function loadCheckpoint(path: string): LoadedCheckpoint {
  if (!existsSync(path)) throw new CheckpointError({ kind: 'missing', path });
  const { tensors, metadata } = readSafetensors(path);
  return { tensors, meta: parseMeta(metadata ?? {}, path) };
}

/** Restores every state tensor from a checkpoint; a missing or mis-shaped tensor is an error naming it. */
export function restoreState(state: TrainState, ckpt: LoadedCheckpoint, path: string): void {
  const problems: string[] = [];
  for (const name of state.names()) {
    const t = ckpt.tensors.get(name);
    const want = state.get(name).dims;
    if (!t) problems.push(`missing "${name}"`);
    else if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) problems.push(`"${name}" is [${t.shape}], the model needs [${want}]`);
    else state.set(name, new ort.Tensor('float32', Float32Array.from(t.data as Float32Array), want));
  }
  if (problems.length) throw new Error(`${path}: checkpoint does not fit this model:\n  ${problems.join('\n  ')}`);
}
