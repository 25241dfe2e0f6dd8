/**
 * Frozen features of a dataset written to a file (`dino features`): one row per image, in the order of the data,
 * with its label and (for image folders) its file.
 *
 * The extraction reads an abstract batched source ({@link BatchedImages}: preprocessed float batches, labels and
 * row numbers): image folders are indexed (runtime/data/folder-index.ts) and each batch's files decoded when it is
 * needed, through DINO's eval transform ({@link folderImages}); an in-memory dataset (Fashion-MNIST) is used as the
 * evaluations use it ({@link datasetImages}). Rows are written as they come into a file allocated at its final size up front (a feature file's
 * size is known from the row count and the feature width), so memory does not grow with the dataset, and a
 * progress record beside it (`OUT.progress.json`) says how many rows are complete: a run that is stopped (Ctrl-C,
 * a crash, a killed job) continues from there when the same command runs again, and the finished file is byte for
 * byte the one an uninterrupted run writes.
 *
 * Files (see {@link featureFilePaths}):
 * - `OUT.safetensors`: tensors `features` F32 [N, D] and `labels` I32 [N] (-1: no label), metadata key
 *   `dino.features` ({@link FeatureFileInfo} as JSON: classes, splits, model, transform).
 * - `OUT.npy`: the features [N, D] float32 (NumPy `.npy` 1.0), with `OUT.labels.npy` (int32 [N]) and `OUT.json`
 *   (the {@link FeatureFileInfo}) beside it.
 * - `OUT.files.txt` beside either: the file of each row (relative to the data folder, one per line), for image
 *   folders.
 * - Under `mpirun -np N` ({@link ExtractFeaturesOptions.collective}): one shard per rank, `OUT.rank<r>-of-<N>.*`
 *   (each a file as above, of its rows), and `OUT.shards.json` ({@link FeatureShardIndex}) naming each row's shard.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createSession, type ExecutionProvider, type ort } from '../../runtime/backend.ts';
import type { Dataset, ImageSet } from '../../runtime/data/dataset.ts';
import { BadImageError, decodeImageFile } from '../../runtime/data/decode.ts';
import { type EvalTransformOptions, evalTransform } from '../../runtime/data/multicrop.ts';
import { loadFashionMnist } from '../../runtime/data/fashion-mnist.ts';
import { type EvalDataOptions, EvalDataError, type EvalFolder, EvalOptionError, type FolderRows, evalDataSource, evalFolder } from './eval-data.ts';
import { type FeatureFileInfo, featureFilePaths, featureFormat, normalizeRows, openFeatureFile, writeAt, writeProgress } from './feature-file.ts';
import { type Extracted, type LinearFeatureSpec, checkLinearFeature, featureRows, linearFeatureDim, modelInputBatch, modelInputSize } from './extract-features.ts';
import { runModel } from './run-model.ts';
import { BACKBONE_EXPORT_KEY, readBackboneExportInfo } from '../export/backbone.ts';
import { EXPORT_INFO_KEY, type ExportInfo, findMetadata, readExportInfo, readRunConfig } from '../export/teacher.ts';
import type { Collective } from '../../runtime/dist/collective-api.ts';

// ---- the batched source ---------------------------------------------------------------------------------

/** `count` preprocessed images: float32 [count, C, H, W] in [0, 1] at the model's input size, rows first..first+count-1. */
export interface ModelInputBatch {
  readonly first: number;
  readonly count: number;
  readonly images: Float32Array;
  readonly labels: Int32Array;
  /** Rows of this batch (0-based in it) whose file could not be decoded, under `skipBadImages`: their images are zeros. */
  readonly skipped?: readonly { readonly row: number; readonly file: string; readonly reason: string }[];
}

/** A dataset as batches of model input, from any row on (so an interrupted extraction continues where it stopped). */
export interface BatchedImages {
  /** Rows in all. */
  readonly count: number;
  /** Shape of one preprocessed image. */
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  /** Class names the labels index into (empty when nothing is labelled). */
  readonly classes: readonly string[];
  /** The splits the rows hold, in row order (e.g. train then test). */
  readonly splits: readonly { readonly name: string; readonly count: number }[];
  /** Row i's file, relative to the data folder, when the images come from files. */
  readonly files?: readonly string[];
  /** What the images are and how they were preprocessed, for the file's metadata. */
  readonly description: { readonly data: string; readonly transform: string };
  /** Batches of up to `batchSize` rows from row `from` on, in order. The yielded arrays may be reused by the next batch. */
  batches(from: number, batchSize: number): AsyncIterable<ModelInputBatch>;
}

/**
 * In-memory splits of a {@link Dataset} (Fashion-MNIST) as batched model input at [h, w]: each image as
 * `extractFeatures` prepares it (byte / 255, resized with antialiased bicubic when its size differs). `indices`
 * picks the images of a split (in that order; default all).
 */
export function datasetImages(
  data: Dataset,
  splits: readonly ('train' | 'test')[],
  size: readonly [number, number],
  opts: { files?: readonly string[]; transform?: string; indices?: Partial<Record<'train' | 'test', ArrayLike<number>>> } = {},
): BatchedImages {
  const sets = splits.map((name) => {
    const set: ImageSet = data[name], picked = opts.indices?.[name];
    return { name, set, indices: picked ? Uint32Array.from(picked) : Uint32Array.from({ length: set.count }, (_, i) => i) };
  });
  const count = sets.reduce((s, x) => s + x.indices.length, 0);
  if (opts.files && opts.files.length !== count) throw new Error(`datasetImages: ${opts.files.length} file names for ${count} images`);
  const [h, w] = size, c = data.channels;
  const src = { channels: c, height: data.height, width: data.width };
  return {
    count, channels: c, height: h, width: w, classes: data.classes,
    splits: sets.map((s) => ({ name: s.name, count: s.indices.length })),
    ...(opts.files ? { files: opts.files } : {}),
    description: {
      data: `${data.name} (${splits.join(' + ')})`,
      transform: opts.transform ?? (h === data.height && w === data.width ? `${data.height}x${data.width} images as they are` : `${data.height}x${data.width} images resized to ${h}x${w} (antialiased bicubic)`),
    },
    async *batches(from, batchSize) {
      const images = new Float32Array(batchSize * c * h * w);
      const labels = new Int32Array(batchSize);
      const scratch = new Float32Array(c * data.height * data.width);
      let base = 0;
      for (const { set, indices } of sets) {
        for (let i = Math.max(0, from - base); i < indices.length; i += batchSize) {
          const n = Math.min(batchSize, indices.length - i);
          const batch = indices.subarray(i, i + n);
          modelInputBatch({ ...src, set }, batch, h, w, images, scratch);
          batch.forEach((index, k) => (labels[k] = set.labels[index]!));
          yield { first: base + i, count: n, images: images.subarray(0, n * c * h * w), labels: labels.subarray(0, n) };
        }
        base += indices.length;
      }
    },
  };
}

// ---- the model ----

/** What the extraction needs of a model: a ViT export (exports/export/teacher.ts) or any backbone's (exports/export/backbone.ts). */
export interface FeatureModel {
  readonly kind: string;
  readonly inChans: number;
  /** Width of `features`. */
  readonly dim: number;
  /** The fixed input side, or null for a ViT export of any size. */
  readonly fixedSide: number | null;
  /** The side it was trained at (DINO's eval transform crops to it). */
  readonly trainedSide: number;
  /** The ViT export's own description (the linear-evaluation features need it). */
  readonly vit?: ExportInfo;
}

/** The {@link FeatureModel} of an exported model's bytes; `file` names it in errors. */
export function featureModel(bytes: Uint8Array, file: string): FeatureModel {
  const other = readBackboneExportInfo(bytes);
  if (other) return { kind: other.backbone.kind, inChans: other.backbone.inChans, dim: other.featureDim, fixedSide: other.imageSize[0], trainedSide: other.imageSize[0] };
  if (findMetadata(bytes, EXPORT_INFO_KEY) === undefined) {
    throw new Error(`${file}: no "${EXPORT_INFO_KEY}" or "${BACKBONE_EXPORT_KEY}" metadata, so not a model of dino export: export one with npx dino export (a ViT) or exportBackbone (any backbone)`);
  }
  const vit = readExportInfo(bytes);
  return { kind: 'vit', inChans: vit.backbone.inChans, dim: vit.backbone.embedDim, fixedSide: vit.imageSize ? vit.imageSize[0] : null, trainedSide: vit.imageSize ? vit.imageSize[0] : vit.backbone.imgSize, vit };
}

/**
 * The linear-evaluation feature `spec` checked against `model` (from `file`): undefined for the plain `features`
 * (1 block, no average); otherwise the spec, when the model is a ViT exported with enough blocks' [CLS].
 */
export function linearFeatureOf(model: FeatureModel, spec: LinearFeatureSpec | undefined, file: string): LinearFeatureSpec | undefined {
  const linear = spec && (spec.nLastBlocks !== 1 || spec.avgpoolPatchtokens) ? spec : undefined;
  if (linear) {
    if (!model.vit) throw new EvalOptionError('nLastBlocks', linear, `plain features: ${file} is a ${model.kind} backbone, which has no [CLS] of each block or patch tokens`);
    checkLinearFeature(linear, model.vit.backbone.depth);
    if (linear.nLastBlocks > (model.vit.intermediate ?? 1)) {
      throw new Error(`${file} holds the [CLS] of its last ${model.vit.intermediate ?? 1} block(s) only; nLastBlocks ${linear.nLastBlocks} needs a model exported with intermediate >= ${linear.nLastBlocks} (or extract from the run, which exports it)`);
    }
  }
  return linear;
}

/** Width of the rows `model` gives with `linear` ({@link linearFeatureOf}'s result). */
export const featureWidth = (model: FeatureModel, linear: LinearFeatureSpec | undefined): number => (linear ? linearFeatureDim(linear, model.dim) : model.dim);

/**
 * Features of every row of `images` in memory (N x D float32; the images pass batch by batch and are not kept):
 * the rows {@link writeFeatures} writes to a file for the same model, images and batch size, bit for bit.
 */
export async function imageFeatures(
  session: ort.InferenceSession,
  model: FeatureModel,
  images: BatchedImages,
  opts: {
    readonly linear?: LinearFeatureSpec | undefined;
    readonly batch?: number;
    readonly log?: (msg: string) => void;
    /** Sees each batch of model input before the next is decoded (the demo keeps its gallery's thumbnails). */
    readonly onBatch?: (batch: ModelInputBatch) => void;
  } = {},
): Promise<Extracted> {
  if (model.inChans !== images.channels) throw new Error(`the model takes ${model.inChans}-channel images, the data has ${images.channels} channels`);
  const batch = opts.batch ?? 128;
  if (!(Number.isInteger(batch) && batch >= 1)) throw new EvalOptionError('batch', batch, 'an integer >= 1');
  const dim = featureWidth(model, opts.linear);
  const data = new Float32Array(images.count * dim);
  const labels = new Int32Array(images.count);
  const skipped: { row: number; file: string; reason: string }[] = [];
  const t0 = performance.now();
  let lastLog = t0;
  for await (const b of images.batches(0, batch)) {
    await featureRows(session, model.dim, b.images, [b.count, images.channels, images.height, images.width], opts.linear, data.subarray(b.first * dim, (b.first + b.count) * dim));
    labels.set(b.labels, b.first);
    for (const s of b.skipped ?? []) skipped.push({ ...s, row: b.first + s.row });
    opts.onBatch?.(b);
    const now = performance.now();
    if (opts.log && now - lastLog > 2000) {
      lastLog = now;
      const done = b.first + b.count;
      opts.log(`features ${done}/${images.count} (${((done * 1000) / (now - t0)).toFixed(0)} images/s)`);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const imagesPerSecond = images.count / Math.max(seconds, 1e-9);
  if (skipped.length === 0) return { count: images.count, dim, data, labels, imagesPerSecond };
  // Files that could not be decoded (skipBadImages) are left out: the rows after each move up over it.
  opts.log?.(`skipped ${skipped.length} image(s) that could not be decoded, e.g. ${skipped[0]!.file}: ${skipped[0]!.reason}`);
  const bad = new Set(skipped.map((s) => s.row));
  let kept = 0;
  for (let r = 0; r < images.count; r++) {
    if (bad.has(r)) continue;
    if (kept !== r) {
      data.copyWithin(kept * dim, r * dim, (r + 1) * dim);
      labels[kept] = labels[r]!;
    }
    kept++;
  }
  return { count: kept, dim, data: data.subarray(0, kept * dim), labels: labels.subarray(0, kept), imagesPerSecond };
}

// ---- extraction -----------------------------------------------------------------------------------------

export interface WriteFeaturesOptions {
  /** The exported model (`.onnx`, dino export): its path or bytes with a name for the metadata. */
  readonly model: string;
  readonly images: BatchedImages;
  /** `.safetensors` or `.npy`. */
  readonly out: string;
  /** DINO's linear-evaluation feature instead of `features` (needs a model exported with `intermediate` >= nLastBlocks when > 1). */
  readonly linear?: LinearFeatureSpec;
  /** L2-normalise each row (as DINO's `eval_knn.py` does before dumping). Default false. */
  readonly normalize?: boolean;
  /** Rows per batch. Default 128. */
  readonly batch?: number;
  readonly ep?: ExecutionProvider;
  readonly threads?: number;
  /** Stops after the batch in flight; what is done is kept, and the same call continues it. */
  readonly signal?: AbortSignal;
  /** Called after every batch with the rows done and the total. */
  readonly progress?: (done: number, total: number) => void;
  readonly session?: ort.InferenceSession;
}

export interface WriteFeaturesResult {
  readonly out: string;
  readonly info: FeatureFileInfo;
  /** Rows done before this call (an interrupted run continued), and rows done in all. */
  readonly resumedAt: number;
  readonly completed: number;
  /** True when every row is written (false: stopped by `signal`). */
  readonly finished: boolean;
  readonly seconds: number;
}

/** Features of every row of `images` through the model into `out` (see the module comment), continuing an interrupted run. */
export async function writeFeatures(opts: WriteFeaturesOptions): Promise<WriteFeaturesResult> {
  const t0 = performance.now();
  const { images } = opts;
  featureFormat(opts.out);
  const bytes = fs.readFileSync(opts.model);
  const model = featureModel(bytes, opts.model);
  if (model.inChans !== images.channels) {
    throw new Error(`${opts.model} takes ${model.inChans}-channel images, the data has ${images.channels} channels`);
  }
  const linear = linearFeatureOf(model, opts.linear, opts.model);
  const batch = opts.batch ?? 128;
  if (!(Number.isInteger(batch) && batch >= 1)) throw new EvalOptionError('batch', batch, 'an integer >= 1');
  const d = model.dim;
  const dim = featureWidth(model, linear);
  const info: FeatureFileInfo = {
    format: 'dino-ts-features/1', count: images.count, dim, classes: images.classes, splits: images.splits,
    model: path.basename(opts.model), modelSha256: createHash('sha256').update(bytes).digest('hex'),
    data: images.description.data, transform: images.description.transform,
    ...(linear ? { linear: { nLastBlocks: linear.nLastBlocks, avgpoolPatchtokens: linear.avgpoolPatchtokens } } : {}),
    ...(opts.normalize ? { normalized: true } : {}),
    ...(images.files ? { files: path.basename(featureFilePaths(opts.out).files) } : {}),
  };
  const file = openFeatureFile(opts.out, info, images.files, batch);
  const resumedAt = file.completed;
  let completed = resumedAt;
  if (completed < images.count && !opts.signal?.aborted) {
    const session = opts.session ?? (await createSession(bytes, { ...(opts.ep ? { ep: opts.ep } : {}), ...(opts.threads !== undefined ? { threads: opts.threads } : {}) }));
    const { features: fr, labels: lr } = file.regions;
    const fdFeatures = fs.openSync(fr.file, 'r+');
    const fdLabels = lr.file === fr.file ? fdFeatures : fs.openSync(lr.file, 'r+');
    const rows = new Float32Array(batch * dim);
    let lastRecord = performance.now();
    try {
      for await (const b of images.batches(completed, batch)) {
        if (b.first !== completed) throw new Error(`the image source gave rows from ${b.first}, expected ${completed}`);
        const bad = b.skipped?.[0];
        if (bad) throw new BadImageError(bad.file, `${bad.reason} (a feature file holds a row for every file listed)`);
        const out = rows.subarray(0, b.count * dim);
        await featureRows(session, d, b.images, [b.count, images.channels, images.height, images.width], linear, out);
        if (opts.normalize) normalizeRows(out, dim);
        writeAt(fdFeatures, new Uint8Array(out.buffer, out.byteOffset, out.byteLength), fr.offset + b.first * fr.rowBytes);
        writeAt(fdLabels, new Uint8Array(b.labels.buffer, b.labels.byteOffset, b.count * 4), lr.offset + b.first * lr.rowBytes);
        completed += b.count;
        // About once a second (fsyncs cost more than a small batch), and when stopping or done: the rows are on disk
        // before the record says so, so a crash redoes at most the rows since the last record.
        if (performance.now() - lastRecord >= 1000 || opts.signal?.aborted || completed === images.count) {
          fs.fsyncSync(fdFeatures);
          if (fdLabels !== fdFeatures) fs.fsyncSync(fdLabels);
          writeProgress(file.progress, completed, batch);
          lastRecord = performance.now();
        }
        opts.progress?.(completed, images.count);
        if (opts.signal?.aborted) break;
      }
    } finally {
      fs.closeSync(fdFeatures);
      if (fdLabels !== fdFeatures) fs.closeSync(fdLabels);
      if (!opts.session) await session.release();
    }
  }
  const finished = completed === images.count;
  if (finished) fs.rmSync(file.progress, { force: true });
  return { out: opts.out, info, resumedAt, completed, finished, seconds: (performance.now() - t0) / 1000 };
}


// ---- the command ----------------------------------------------------------------------------------------

export interface ExtractFeaturesOptions extends EvalDataOptions {
  readonly run?: string;
  readonly model?: string;
  readonly out: string;
  /** Which rows: the data's train split, its test split, or both (train first). Default 'all'. */
  readonly split?: 'train' | 'test' | 'all';
  readonly nLastBlocks?: number;
  readonly avgpoolPatchtokens?: boolean;
  readonly normalize?: boolean;
  readonly batch?: number;
  readonly ep?: ExecutionProvider;
  readonly threads?: number;
  readonly signal?: AbortSignal;
  readonly progress?: (done: number, total: number) => void;
  /**
   * The processes extracting together (runtime/dist/collective.ts `openCollective`: `mpirun -np N`). With N > 1,
   * rank r writes rows [⌊r·count/N⌋, ⌊(r+1)·count/N⌋) to its shard ({@link shardPath}), and once every shard is
   * complete rank 0 writes the index ({@link shardIndexPath}) naming each row's shard.
   */
  readonly collective?: Collective;
}

/** Where rank `rank` of `ranks` writes its rows of `out`: `feats.safetensors` -> `feats.rank0-of-2.safetensors`. */
export function shardPath(out: string, rank: number, ranks: number): string {
  const ext = path.extname(out);
  return `${out.slice(0, out.length - ext.length)}.rank${rank}-of-${ranks}${ext}`;
}

/** The index of a sharded extraction of `out`: `feats.safetensors` -> `feats.shards.json`. */
export function shardIndexPath(out: string): string {
  return `${out.slice(0, out.length - path.extname(out).length)}.shards.json`;
}

/** The index a sharded extraction writes: rows [first, first + count) are rows 0.. of `file` (beside the index). */
export interface FeatureShardIndex {
  readonly format: 'dino-ts-feature-shards/1';
  readonly count: number;
  readonly dim: number;
  readonly classes: readonly string[];
  readonly shards: readonly { readonly file: string; readonly first: number; readonly count: number }[];
}

/** The rows of `ranks` shards of `count` rows: contiguous, in order, sizes differing by at most one. */
export function shardRows(count: number, ranks: number): { first: number; count: number }[] {
  return Array.from({ length: ranks }, (_, r) => {
    const first = Math.floor((r * count) / ranks);
    return { first, count: Math.floor(((r + 1) * count) / ranks) - first };
  });
}

/** Rows [from, to) of `images`, numbered from 0: a rank's share of a sharded extraction. */
export function rowRange(images: BatchedImages, from: number, to: number): BatchedImages {
  const splits: { name: string; count: number }[] = [];
  let start = 0;
  for (const s of images.splits) {
    const n = Math.min(to, start + s.count) - Math.max(from, start);
    if (n > 0) splits.push({ name: s.name, count: n });
    start += s.count;
  }
  return {
    count: to - from, channels: images.channels, height: images.height, width: images.width, classes: images.classes, splits,
    ...(images.files ? { files: images.files.slice(from, to) } : {}),
    description: { data: `${images.description.data}, rows ${from}..${to - 1}`, transform: images.description.transform },
    async *batches(first, batchSize) {
      if (from + first >= to) return;
      for await (const b of images.batches(from + first, batchSize)) {
        const n = Math.min(b.count, to - b.first);
        const per = b.images.length / b.count;
        yield { first: b.first - from, count: n, images: b.images.subarray(0, n * per), labels: b.labels.subarray(0, n) };
        if (b.first + b.count >= to) return;
      }
    },
  };
}

/** DINO's evaluation transform (eval_knn.py, eval_linear.py) scaled to a model input side `side`: the short side resized
 * to side * 256 / 224 (bicubic), a centred side x side crop; values in [0, 1] (the exported model normalises). */
export function dinoEvalTransform(side: number): EvalTransformOptions {
  return { resize: Math.round((side * 256) / 224), crop: side, mean: [0], std: [1] };
}

export type { FolderRows } from './eval-data.ts';

/** The splits of `rows` (part names in row order), parts of the same name (a validation folder's train/ and val/) counted as one. */
function splitsOf(names: readonly string[]): { name: string; count: number }[] {
  const splits: { name: string; count: number }[] = [];
  for (const name of names) {
    const last = splits[splits.length - 1];
    if (last && last.name === name) last.count++;
    else splits.push({ name, count: 1 });
  }
  return splits;
}

/**
 * Image files streamed as model input: each batch's files are read and decoded when the batch is asked for (the
 * next batch while the model runs the current one), through {@link evalTransform} with `transform`. Memory holds two
 * batches of images, whatever the number of files, and the file list (its paths, as the index does). A file that
 * cannot be decoded stops the extraction with an error naming it, or with `skipBadImages` is reported in its batch's
 * `skipped` (its image zeros) for the caller to leave out. `rows` picks files of the parts (indices into their
 * concatenation, in that order; default all).
 */
export function folderImages(
  parts: readonly FolderRows[],
  opts: { root: string; classes: readonly string[]; channels: 1 | 3; transform: EvalTransformOptions; data: string; concurrency?: number; rows?: ArrayLike<number>; skipBadImages?: boolean },
): BatchedImages {
  const { channels, transform } = opts;
  const side = transform.crop, per = channels * side * side;
  const total = parts.reduce((n, p) => n + p.files.count, 0);
  const rows = opts.rows === undefined ? undefined : Uint32Array.from(opts.rows);
  const bad = rows?.find((r) => r >= total);
  if (bad !== undefined) throw new RangeError(`folderImages: row ${bad} is outside the ${total} files`);
  const count = rows ? rows.length : total;
  // Row r is file s - starts[k] of part k, s its row of the parts, for the last part k starting at or before s (a handful of parts).
  const starts = parts.map((_, k) => parts.slice(0, k).reduce((n, p) => n + p.files.count, 0));
  const rowFile = (r: number) => {
    const s = rows ? rows[r]! : r;
    let k = parts.length - 1;
    while (starts[k]! > s) k--;
    return { part: parts[k]!, i: s - starts[k]! };
  };
  const files: string[] = [], names: string[] = [];
  for (let r = 0; r < count; r++) {
    const { part, i } = rowFile(r);
    files.push(path.relative(opts.root, part.files.file(i)).split(path.sep).join('/'));
    names.push(part.name);
  }
  const concurrency = opts.concurrency ?? 8;
  const load = async (first: number, n: number, images: Float32Array, labels: Int32Array): Promise<ModelInputBatch> => {
    let next = 0;
    const skipped: { row: number; file: string; reason: string }[] = [];
    const work = async () => {
      for (let k = next++; k < n; k = next++) {
        const { part, i } = rowFile(first + k);
        labels[k] = part.label ? part.label(i) : part.files.label(i);
        let image;
        try {
          image = await decodeImageFile(part.files.file(i), channels);
        } catch (error) {
          // The index checked each file's header only; a file corrupt inside is found here.
          if (!(opts.skipBadImages && error instanceof BadImageError)) throw error;
          skipped.push({ row: k, file: error.file, reason: error.reason });
          images.fill(0, k * per, (k + 1) * per);
          continue;
        }
        evalTransform(image, transform, images, k * per);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, n) }, work));
    return { first, count: n, images: images.subarray(0, n * per), labels: labels.subarray(0, n), ...(skipped.length ? { skipped: skipped.sort((a, b) => a.row - b.row) } : {}) };
  };
  return {
    count, channels, height: side, width: side, classes: opts.classes,
    splits: splitsOf(names), files,
    description: { data: opts.data, transform: `DINO's eval transform: Resize(${transform.resize}, bicubic) + CenterCrop(${side}), values in [0, 1]` },
    async *batches(from, batchSize) {
      // Two buffers: the next batch is decoded into one while the caller uses the other.
      const buffers = [0, 1].map(() => ({ images: new Float32Array(batchSize * per), labels: new Int32Array(batchSize) }));
      let turn = 0;
      const start = (first: number) => {
        if (first >= count) return undefined;
        const buffer = buffers[turn]!;
        turn = 1 - turn;
        return load(first, Math.min(batchSize, count - first), buffer.images, buffer.labels);
      };
      let pending = start(from);
      while (pending) {
        const batch = await pending;
        pending = start(batch.first + batch.count);
        yield batch;
      }
    },
  };
}

/**
 * `dino features`: the model (a run's teacher, exported when needed, or an `.onnx`), the data (the run's own, a
 * folder or Fashion-MNIST, split as the evaluations split it: exports/evaluation/eval-data.ts), then {@link writeFeatures}. Image
 * folders are streamed through DINO's eval transform ({@link folderImages}); Fashion-MNIST is read in memory and
 * used at its 28 px, as the evaluations use it.
 */
export async function extractFeatureFile(opts: ExtractFeaturesOptions): Promise<WriteFeaturesResult & { readonly index?: string }> {
  featureFormat(opts.out); // before exporting or loading anything
  const linear: LinearFeatureSpec = { nLastBlocks: opts.nLastBlocks ?? 1, avgpoolPatchtokens: opts.avgpoolPatchtokens ?? false };
  const plain = linear.nLastBlocks === 1 && !linear.avgpoolPatchtokens;
  if (!plain && opts.run && !opts.model) checkLinearFeature(linear, readRunConfig(opts.run).backbone.depth);
  const resolveModel = () => runModel({ ...opts, ...(plain || opts.model ? {} : { intermediate: linear.nLastBlocks }) });
  const collective = opts.collective !== undefined && opts.collective.size > 1 ? opts.collective : undefined;
  // A run's teacher is exported (when missing or stale) by rank 0 alone; the others then find it up to date.
  let model = collective === undefined || collective.rank === 0 ? resolveModel() : '';
  collective?.barrier();
  if (model === '') model = resolveModel();
  const bytes = fs.readFileSync(model);
  const shape = featureModel(bytes, model);
  const split = opts.split ?? 'all';
  const splits = split === 'all' ? (['train', 'test'] as const) : ([split] as const);
  const src = evalDataSource(opts);
  let images: BatchedImages;
  if (src.kind === 'folder') {
    const folder = await evalFolder(src, opts, { needTest: false });
    images = folderImages(splits.flatMap((name) => folder[name]), {
      root: folder.root, classes: folder.classes, channels: shape.inChans === 1 ? 1 : 3, transform: dinoEvalTransform(shape.trainedSide),
      data: `${folder.name} (${splits.join(' + ')})`,
    });
  } else {
    const data = await fashionMnistFor(shape, opts, src);
    images = datasetImages(data, splits, datasetInputSize(data, shape));
  }
  const write = (rows: BatchedImages, out: string) => writeFeatures({
    model, images: rows, out, ...(plain ? {} : { linear }),
    ...(opts.normalize ? { normalize: true } : {}), ...(opts.batch ? { batch: opts.batch } : {}),
    ...(opts.ep ? { ep: opts.ep } : {}), ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.progress ? { progress: opts.progress } : {}),
  });
  if (collective === undefined) return write(images, opts.out);
  if (images.count < collective.size) throw new Error(`${images.count} rows cannot be shared by ${collective.size} processes: run fewer (mpirun -np ${images.count})`);
  const shards = shardRows(images.count, collective.size);
  const own = shards[collective.rank]!;
  const r = await write(rowRange(images, own.first, own.first + own.count), shardPath(opts.out, collective.rank, collective.size));
  // The index is written once every shard is complete (an interrupted rank leaves it unwritten: run again to finish).
  const finished = Float32Array.of(r.finished ? 1 : 0);
  collective.allreduceSum(finished);
  if (finished[0] !== collective.size) return r;
  const index = shardIndexPath(opts.out);
  if (collective.rank === 0) {
    const content: FeatureShardIndex = {
      format: 'dino-ts-feature-shards/1', count: images.count, dim: r.info.dim, classes: images.classes,
      shards: shards.map((s, rank) => ({ file: path.basename(shardPath(opts.out, rank, collective.size)), ...s })),
    };
    fs.writeFileSync(index, JSON.stringify(content, null, 2) + '\n');
  }
  return { ...r, index };
}

// ---- the evaluations' images -----------------------------------------------------------------------------

/** One split of the evaluation data: its labels (known without decoding anything) and its images, streamed. */
export interface EvalSplit {
  readonly count: number;
  readonly labels: Int32Array;
  /** The images of rows `rows` (in that order; default all) as model input, decoded batch by batch. */
  images(rows?: ArrayLike<number>): BatchedImages;
}

/** The evaluation data (exports/evaluation/eval-data.ts) of a model: the bank / probe training set and the evaluated images. */
export interface EvalImages {
  readonly name: string;
  readonly classes: readonly string[];
  readonly train: EvalSplit;
  readonly test: EvalSplit;
}

/**
 * What k-NN, the linear probe, the report and the demo evaluate on, as `dino features` reads it: an image folder
 * split as exports/evaluation/eval-data.ts splits it ({@link evalFolder}: only the index is read) and streamed through
 * DINO's eval transform at the model's trained side ({@link folderImages}); Fashion-MNIST in memory (60,000 images
 * of 28 x 28 bytes), at the model's input size ({@link datasetImages}).
 * @throws EvalDataError as eval-data.ts words it (missing folder, nothing held out unless `use.needTest` is false,
 * a model of more than one channel on Fashion-MNIST).
 */
export async function evalImages(opts: EvalDataOptions, model: FeatureModel, use: { readonly needTest?: boolean } = {}): Promise<EvalImages> {
  const src = evalDataSource(opts);
  if (src.kind === 'fmnist') return datasetEvalImages(await fashionMnistFor(model, opts, src), model);
  return folderEvalImages(await evalFolder(src, opts, use), model, { skipBadImages: opts.skipBadImages ?? false });
}

/** Fashion-MNIST (in memory: 60,000 + 10,000 images of 28 x 28 bytes) for a one-channel `model`; `src` is the data source the options chose. */
async function fashionMnistFor(model: FeatureModel, opts: Pick<EvalDataOptions, 'dataset'>, src: { readonly run?: string }): Promise<Dataset> {
  if (model.inChans !== 1) throw new EvalDataError({ kind: 'channels', channels: model.inChans, ...(opts.dataset === undefined && src.run ? { run: src.run } : {}) });
  return loadFashionMnist();
}

/** The input size `model` takes an in-memory dataset's images at: a ViT's for their size, another backbone's fixed side. */
const datasetInputSize = (data: Dataset, model: FeatureModel): readonly [number, number] =>
  model.vit ? modelInputSize(model.vit, data.height, data.width) : [model.trainedSide, model.trainedSide];

/** An in-memory dataset's splits as {@link EvalImages}, at the model's input size (see {@link datasetImages}). */
export function datasetEvalImages(data: Dataset, model: FeatureModel): EvalImages {
  if (model.inChans !== data.channels) throw new Error(`the model takes ${model.inChans}-channel images, ${data.name} has ${data.channels} channels`);
  const size = datasetInputSize(data, model);
  const split = (name: 'train' | 'test'): EvalSplit => ({
    count: data[name].count, labels: data[name].labels,
    images: (rows) => datasetImages(data, [name], size, rows ? { indices: { [name]: rows } } : {}),
  });
  return { name: data.name, classes: data.classes, train: split('train'), test: split('test') };
}

/** A folder's evaluation split ({@link evalFolder}) as {@link EvalImages}: streamed through DINO's eval transform at the model's trained side. */
export function folderEvalImages(folder: EvalFolder, model: FeatureModel, opts: { readonly skipBadImages?: boolean } = {}): EvalImages {
  const how = { root: folder.root, classes: folder.classes, channels: model.inChans === 1 ? (1 as const) : (3 as const), transform: dinoEvalTransform(model.trainedSide), skipBadImages: opts.skipBadImages ?? false };
  const split = (name: 'train' | 'test'): EvalSplit => {
    const parts = folder[name];
    const labels = new Int32Array(parts.reduce((n, p) => n + p.files.count, 0));
    let r = 0;
    for (const p of parts) for (let i = 0; i < p.files.count; i++) labels[r++] = p.label ? p.label(i) : p.files.label(i);
    return { count: labels.length, labels, images: (rows) => folderImages(parts, { ...how, data: `${folder.name} (${name})`, ...(rows ? { rows } : {}) }) };
  };
  return { name: folder.name, classes: folder.classes, train: split('train'), test: split('test') };
}
