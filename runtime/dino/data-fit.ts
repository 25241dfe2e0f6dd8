/**
 * Refuses a training run whose data does not fit the preset, before anything is compiled or written:
 * a single-channel 28 px preset (Fashion-MNIST's) on a folder of colour images would silently train on gray
 * thumbnails, and an RGB preset without `--data` would try to train a 224 px RGB ViT on Fashion-MNIST.
 */
import type { BackboneConfig } from '../../models/presets.ts';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import type { Dataset } from '../data/dataset.ts';
import { type TrainConfig } from './config.ts';
import { fashionMnistPresetNames } from './presets.ts';

/** Files probed for colour: enough to catch an RGB folder, few enough to cost milliseconds. */
const PROBE_FILES = 8;
/** Largest |R - G|, |G - B| still counted as gray: JPEG's chroma subsampling leaves a few levels on gray images. */
const GRAY_TOLERANCE = 12;

/** What is wrong; the message says it with library words, the CLI with its flags (cli/errors.ts). */
export type DataFitProblem =
  /** The data's channel count differs from the preset's. */
  | { readonly kind: 'channels'; readonly preset: string; readonly need: number; readonly dataset: string; readonly has: number }
  /** An RGB or non-28 px preset without an image folder: it would train on Fashion-MNIST. */
  | { readonly kind: 'needs-folder'; readonly preset: string; readonly need: number; readonly size: number }
  /** A 1-channel preset on a folder of colour images. */
  | { readonly kind: 'colour-folder'; readonly preset: string; readonly folder: string; readonly example: string };

export class DataFitError extends Error {
  constructor(readonly problem: DataFitProblem) {
    const p = problem;
    super(
      p.kind === 'channels'
        ? `preset ${p.preset} takes ${p.need}-channel images, but the data set ${p.dataset} has ${p.has} channel(s): choose a ${p.has === 1 ? `1-channel preset (${fashionMnistPresetNames().join(', ')})` : 'ViT preset (vit_tiny, vit_small, vit_base)'}`
        : p.kind === 'needs-folder'
          ? `preset ${p.preset} takes ${p.need}-channel ${p.size} px images, but without an image folder (config.data) it would train on Fashion-MNIST (1 channel, 28 px)`
          : `${p.folder} holds colour images (e.g. ${p.example}), but preset ${p.preset} takes 1-channel 28 px images (Fashion-MNIST's): choose a ViT preset (vit_tiny, vit_small, vit_base)`,
    );
    this.name = 'DataFitError';
  }
}

/**
 * Throws a DataFitError when the data cannot train `cfg`: `dataset` when given (its channel count), else the
 * folder `data` (colour images for a 1-channel preset), else the built-in Fashion-MNIST (1 channel, 28 px) for a
 * preset that is not.
 */
export async function checkDataFits(cfg: TrainConfig<BackboneConfig>, data: string | undefined, dataset?: Dataset): Promise<void> {
  const { inChans, imgSize } = cfg.backbone;
  if (dataset) {
    if (dataset.channels !== inChans) throw new DataFitError({ kind: 'channels', preset: cfg.preset, need: inChans, dataset: dataset.name, has: dataset.channels });
    return;
  }
  if (data === undefined) {
    if (inChans !== 1 || imgSize !== 28) throw new DataFitError({ kind: 'needs-folder', preset: cfg.preset, need: inChans, size: imgSize });
    return;
  }
  if (inChans === 1) {
    const colour = await firstColourImage(data);
    if (colour) throw new DataFitError({ kind: 'colour-folder', preset: cfg.preset, folder: data, example: colour });
  }
}

/** The first of up to {@link PROBE_FILES} images under `root` (sorted walk) with colour, or undefined. */
export async function firstColourImage(root: string): Promise<string | undefined> {
  for (const file of await someFiles(root, PROBE_FILES)) {
    // Unreadable files are the loader's to report (with --skip-bad-images); here they just prove nothing.
    const pixels = await sharp(file).rotate().removeAlpha().toColourspace('srgb').resize(32, 32, { fit: 'inside' }).raw().toBuffer({ resolveWithObject: true }).catch(() => undefined);
    if (!pixels || pixels.info.channels !== 3) continue;
    const d = pixels.data;
    for (let i = 0; i + 2 < d.length; i += 3) {
      if (Math.abs(d[i]! - d[i + 1]!) > GRAY_TOLERANCE || Math.abs(d[i + 1]! - d[i + 2]!) > GRAY_TOLERANCE) return file;
    }
  }
  return undefined;
}

async function someFiles(dir: string, limit: number): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    const entries = (await fs.readdir(d, { withFileTypes: true }).catch(() => [])).filter((e) => !e.name.startsWith('.'));
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (out.length >= limit) return;
      const full = path.join(d, e.name);
      if (e.isDirectory()) await walk(full);
      else if (e.isFile()) out.push(full);
    }
  };
  await walk(dir);
  return out;
}
