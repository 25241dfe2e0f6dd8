/**
 * Refuses a training run whose data does not fit the preset, before anything is compiled or written:
 * a single-channel 28 px preset (Fashion-MNIST's) on a folder of colour images would silently train on gray
 * thumbnails, and an RGB preset without `--data` would try to train a 224 px RGB ViT on Fashion-MNIST.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import type { Dataset } from '../data/dataset.ts';
import type { TrainConfig } from './config.ts';

/** Files probed for colour: enough to catch an RGB folder, few enough to cost milliseconds. */
const PROBE_FILES = 8;
/** Largest |R - G|, |G - B| still counted as gray: JPEG's chroma subsampling leaves a few levels on gray images. */
const GRAY_TOLERANCE = 12;

/** What the user should pass instead, for a message. */
const RGB_HINT = '--arch vit_small --patch-size 16 (or --preset vit_tiny|vit_small|vit_base)';
const GRAY_HINT = '--preset fmnist-quick (or fmnist-tiny6, fmnist-tiny12)';

/**
 * Throws an Error naming the right option when the data cannot train `cfg`: `dataset` when given (its channel
 * count), else the folder `data` (colour images for a 1-channel preset), else the built-in Fashion-MNIST
 * (1 channel, 28 px) for a preset that is not.
 */
export async function checkDataFits(cfg: TrainConfig, data: string | undefined, dataset?: Dataset): Promise<void> {
  const { inChans, imgSize } = cfg.backbone;
  const what = `preset ${cfg.preset} takes ${inChans}-channel ${imgSize} px images`;
  if (dataset) {
    if (dataset.channels !== inChans) {
      throw new Error(`${what}, but the data set ${dataset.name} has ${dataset.channels} channel(s): use ${dataset.channels === 1 ? GRAY_HINT : RGB_HINT}`);
    }
    return;
  }
  if (data === undefined) {
    if (inChans !== 1 || imgSize !== 28) {
      throw new Error(`${what}, but without --data it would train on Fashion-MNIST (1 channel, 28 px): pass --data FOLDER with your images, or use ${GRAY_HINT} for Fashion-MNIST`);
    }
    return;
  }
  if (inChans === 1) {
    const colour = await firstColourImage(data);
    if (colour) {
      throw new Error(`${data} holds colour images (e.g. ${colour}), but ${what} (Fashion-MNIST's): train on RGB with ${RGB_HINT}`);
    }
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
