/**
 * A folder of JPEG / PNG / WebP images as a {@link Dataset}, decoded and resized with `sharp`.
 *
 * Layouts (hidden entries, names starting with ".", are ignored everywhere):
 * - `root/train/...` and `root/test/...` (or `root/val/...` when there is no `test/`): those are the splits;
 *   anything else directly in `root` is ignored.
 * - otherwise `root` itself holds the images, and the split is deterministic: inside each class (and inside the
 *   unlabelled group), files sorted by path, every `testEvery`-th file (positions testEvery-1, 2 testEvery-1, ...)
 *   is test and the rest train; with the default 10 that is 10% test, the same files on every run (the listing and
 *   the split are folder-index.ts's, with holdout 1 / testEvery: training with that holdout held out these files).
 * Inside a split folder, each sub-folder is a class (its files, searched recursively, get its label); the classes
 * are the sorted (by code unit, like Python's `sorted`) union of the sub-folder names of both splits. Files lying
 * next to class folders, and all files of a folder without sub-folders, get label -1.
 *
 * Every image is auto-rotated by its EXIF orientation, converted to 8-bit sRGB with its alpha channel dropped (as
 * PIL's `convert('RGB')`), scaled so it covers `imageSize` x `imageSize` and centre-cropped to it, then stored as
 * bytes (see ImageSet). With `channels: 1` the gray level is PIL's `convert('L')` luma, 0.299 R + 0.587 G + 0.114 B of
 * the sRGB values (libvips' own grayscale would weigh linear light instead: red would come out at 127, not 76).
 *
 * Every non-hidden file is treated as an image: an empty, truncated, corrupt or non-image file (or a format other
 * than JPEG / PNG / WebP) stops loading with an Error naming the file, unless `skipBadImages` is set, in which case
 * it is left out and reported in {@link ImageFolderResult.skipped}.
 *
 * This decodes a whole split into memory (one SharedArrayBuffer, so at most 2^32 bytes: about 28,500 images at
 * 224 px), for small folders in library code; training streams its files instead (folder-index.ts, loader.ts), and
 * so do the evaluations (exports/evaluation/features.ts `evalImages`).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import type { Dataset, ImageSet } from './dataset.ts';
import { ACCEPTED_FORMATS, BadImageError } from './decode.ts';
import { type FolderFiles, type SkippedImage, indexImageFolder } from './folder-index.ts';

export { BadImageError } from './decode.ts';
export type { SkippedImage } from './folder-index.ts';

export interface ImageFolderOptions {
  /** Side of the square every image is resized to (`--image-size`). Default 224. */
  imageSize?: number;
  /** 1 (grayscale) or 3 (RGB). Default 3. */
  channels?: 1 | 3;
  /** Leave out files that cannot be decoded instead of throwing (`--skip-bad-images`). Default false. */
  skipBadImages?: boolean;
  /** Without train/ and test/ folders, every `testEvery`-th file of each class is test; 0 puts all in train. Default 10. */
  testEvery?: number;
  /** Instead of `testEvery`: the fraction of each class held out as test, as training's `--holdout F` (folder-index.ts). */
  holdout?: number;
  /** Images decoded at the same time. Default 4. */
  concurrency?: number;
}

export interface ImageFolderResult {
  readonly dataset: Dataset;
  /** Files left out under `skipBadImages`, in the order they were listed. */
  readonly skipped: SkippedImage[];
}

/**
 * Loads the images under `root` (see the module comment for layouts, split and preprocessing).
 * @throws Error naming the folder when it is missing or holds no image, or naming the file when one cannot be
 * decoded and `skipBadImages` is not set.
 */
export async function loadImageFolder(root: string, options: ImageFolderOptions = {}): Promise<ImageFolderResult> {
  const imageSize = options.imageSize ?? 224;
  const channels = options.channels ?? 3;
  const testEvery = options.testEvery ?? 10;
  if (!(Number.isInteger(imageSize) && imageSize > 0)) throw new Error(`image size must be a positive integer, got ${imageSize}`);
  if (channels !== 1 && channels !== 3) throw new Error(`channels must be 1 or 3, got ${String(channels)}`);
  if (!(Number.isInteger(testEvery) && testEvery >= 0)) throw new Error(`testEvery must be a non-negative integer, got ${testEvery}`);

  const skipBadImages = options.skipBadImages ?? false;
  const index = await indexImageFolder(root, { skipBadImages, holdout: options.holdout ?? (testEvery > 0 ? 1 / testEvery : 0) });
  const skipped: SkippedImage[] = [...index.skipped];
  const decodeOptions = { imageSize, channels, skipBadImages, concurrency: options.concurrency ?? 4 };
  const train = await decodeAll(index.train, decodeOptions, skipped);
  const test = await decodeAll(index.test, decodeOptions, skipped);
  const classes = [...index.classes];
  if (train.count + test.count === 0) throw new Error(`no readable image in ${root}: all ${skipped.length} files were skipped`);
  const dataset: Dataset = { name: path.basename(path.resolve(root)), channels, height: imageSize, width: imageSize, train, test, classes };
  return { dataset, skipped };
}

interface DecodeOptions {
  imageSize: number;
  channels: 1 | 3;
  skipBadImages: boolean;
  concurrency: number;
}

/** Decodes `files` into an ImageSet (pixels in a SharedArrayBuffer), `concurrency` files at a time, order kept. */
async function decodeAll(files: FolderFiles, options: DecodeOptions, skipped: SkippedImage[]): Promise<ImageSet> {
  const { imageSize, channels } = options;
  const decoded = new Array<Uint8Array | SkippedImage>(files.count);
  let nextIndex = 0;
  const work = async () => {
    while (nextIndex < files.count) {
      const i = nextIndex++;
      const file = files.file(i);
      try {
        decoded[i] = await decodeRgb(file, imageSize);
      } catch (error) {
        const reason = (error as Error).message;
        if (!options.skipBadImages) {
          nextIndex = files.count; // stop the other workers from starting new files
          throw new BadImageError(file, reason);
        }
        decoded[i] = { file, reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, options.concurrency) }, work));

  const good: number[] = [];
  decoded.forEach((d, i) => (d instanceof Uint8Array ? good.push(i) : skipped.push(d!)));
  const imageLength = channels * imageSize * imageSize;
  const pixels = new Uint8Array(new SharedArrayBuffer(good.length * imageLength));
  const labels = new Int32Array(good.length);
  const plane = imageSize * imageSize;
  good.forEach((src, dst) => {
    labels[dst] = files.label(src);
    // sharp gives HWC RGB bytes; store CHW bytes (or PIL's luma for 1 channel: ITU-R 601-2 in 16-bit fixed point, as PIL's convert('L')).
    const bytes = decoded[src] as Uint8Array;
    const base = dst * imageLength;
    for (let p = 0; p < plane; p++) {
      const r = bytes[3 * p]!, g = bytes[3 * p + 1]!, b = bytes[3 * p + 2]!;
      if (channels === 1) {
        pixels[base + p] = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
      } else {
        pixels[base + p] = r;
        pixels[base + plane + p] = g;
        pixels[base + 2 * plane + p] = b;
      }
    }
  });
  return { count: good.length, pixels, labels };
}

/** One file as HWC uint8 RGB of `imageSize` x `imageSize`; throws an Error saying why it cannot. */
async function decodeRgb(file: string, imageSize: number): Promise<Uint8Array> {
  const bytes = await fs.readFile(file);
  if (bytes.length === 0) throw new Error('the file is empty');
  const metadata = await sharp(bytes).metadata();
  if (metadata.format === undefined || !ACCEPTED_FORMATS.has(metadata.format)) {
    throw new Error(`not a JPEG, PNG or WebP image (format: ${metadata.format ?? 'unknown'})`);
  }
  const { data, info } = await sharp(bytes, { failOn: 'warning' })
    .rotate()
    .removeAlpha()
    .toColourspace('srgb')
    .resize(imageSize, imageSize, { fit: 'cover', position: 'centre' })
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || data.length !== imageSize * imageSize * 3) {
    throw new Error(`decoded to ${info.width}x${info.height}x${info.channels}, expected ${imageSize}x${imageSize}x3`);
  }
  return new Uint8Array(data.buffer, data.byteOffset, data.length);
}
