/**
 * Frozen features of a dataset written to a file (`dino features`): one row per image, in the order of the data,
 * with its label and (for image folders) its file.
 *
 * The extraction reads an abstract batched source ({@link BatchedImages}: preprocessed float batches, labels and
 * row numbers) so that a source that decodes files as it goes and one that holds the dataset in memory are used
 * the same way. Rows are written as they come into a file allocated at its final size up front (a feature file's
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
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createSession, type ExecutionProvider, type ort } from '../runtime/backend.ts';
import type { Dataset, ImageSet } from '../runtime/data/dataset.ts';
import { type EvalDataOptions, EvalOptionError, evalDataSource, loadEvalData } from './eval.ts';
import { type FeatureFileInfo, featureFilePaths, featureFormat, normalizeRows, openFeatureFile, writeAt, writeProgress } from './feature-file.ts';
import { type LinearFeatureSpec, checkLinearFeature, featureRows, linearFeatureDim, modelInputBatch, modelInputSize, runModel } from './knn.ts';
import { readExportInfo, readRunConfig } from './teacher.ts';

// ---- the batched source ---------------------------------------------------------------------------------

/** `count` preprocessed images: float32 [count, C, H, W] in [0, 1] at the model's input size, rows first..first+count-1. */
export interface ModelInputBatch {
  readonly first: number;
  readonly count: number;
  readonly images: Float32Array;
  readonly labels: Int32Array;
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
 * In-memory splits of a {@link Dataset} (Fashion-MNIST, `loadImageFolder`) as batched model input at [h, w]: each
 * image as `extractFeatures` prepares it (byte / 255, resized with antialiased bicubic when its size differs).
 */
export function datasetImages(
  data: Dataset,
  splits: readonly ('train' | 'test')[],
  size: readonly [number, number],
  opts: { files?: readonly string[]; transform?: string } = {},
): BatchedImages {
  const sets: { name: string; set: ImageSet }[] = splits.map((name) => ({ name, set: data[name] }));
  const count = sets.reduce((s, x) => s + x.set.count, 0);
  if (opts.files && opts.files.length !== count) throw new Error(`datasetImages: ${opts.files.length} file names for ${count} images`);
  const [h, w] = size, c = data.channels;
  const src = { channels: c, height: data.height, width: data.width };
  return {
    count, channels: c, height: h, width: w, classes: data.classes,
    splits: sets.map((s) => ({ name: s.name, count: s.set.count })),
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
      for (const { set } of sets) {
        for (let i = Math.max(0, from - base); i < set.count; i += batchSize) {
          const n = Math.min(batchSize, set.count - i);
          const indices = Uint32Array.from({ length: n }, (_, k) => i + k);
          modelInputBatch({ ...src, set }, indices, h, w, images, scratch);
          labels.set(set.labels.subarray(i, i + n));
          yield { first: base + i, count: n, images: images.subarray(0, n * c * h * w), labels: labels.subarray(0, n) };
        }
        base += set.count;
      }
    },
  };
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
  const model = readExportInfo(bytes);
  if (model.backbone.inChans !== images.channels) {
    throw new Error(`${opts.model} takes ${model.backbone.inChans}-channel images, the data has ${images.channels} channels`);
  }
  const linear = opts.linear && (opts.linear.nLastBlocks !== 1 || opts.linear.avgpoolPatchtokens) ? opts.linear : undefined;
  if (linear) {
    checkLinearFeature(linear, model.backbone.depth);
    if (linear.nLastBlocks > (model.intermediate ?? 1)) {
      throw new Error(`${opts.model} holds the [CLS] of its last ${model.intermediate ?? 1} block(s) only; nLastBlocks ${linear.nLastBlocks} needs a model exported with intermediate >= ${linear.nLastBlocks} (or extract from the run, which exports it)`);
    }
  }
  const batch = opts.batch ?? 128;
  if (!(Number.isInteger(batch) && batch >= 1)) throw new EvalOptionError('batch', batch, 'an integer >= 1');
  const d = model.backbone.embedDim;
  const dim = linear ? linearFeatureDim(linear, d) : d;
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
}

/**
 * `dino features`: the model (a run's teacher, exported when needed, or an `.onnx`), the data (the run's own, a
 * folder or Fashion-MNIST, split as the evaluations split it: exports/eval.ts), then {@link writeFeatures}.
 */
export async function extractFeatureFile(opts: ExtractFeaturesOptions): Promise<WriteFeaturesResult> {
  featureFormat(opts.out); // before exporting or loading anything
  const linear: LinearFeatureSpec = { nLastBlocks: opts.nLastBlocks ?? 1, avgpoolPatchtokens: opts.avgpoolPatchtokens ?? false };
  const plain = linear.nLastBlocks === 1 && !linear.avgpoolPatchtokens;
  if (!plain && opts.run && !opts.model) checkLinearFeature(linear, readRunConfig(opts.run).backbone.depth);
  const model = runModel({ ...opts, ...(plain || opts.model ? {} : { intermediate: linear.nLastBlocks }) });
  const info = readExportInfo(model);
  const split = opts.split ?? 'all';
  const data = await loadEvalData({ ...opts, skipBadImages: opts.skipBadImages ?? false }, info, { needTest: false });
  const splits = split === 'all' ? (['train', 'test'] as const) : ([split] as const);
  const size = modelInputSize(info, data.height, data.width);
  const files = await folderFiles(opts, data, splits);
  const images = datasetImages(data, splits, size, files ? { files } : {});
  return writeFeatures({
    model, images, out: opts.out, ...(plain ? {} : { linear }),
    ...(opts.normalize ? { normalize: true } : {}), ...(opts.batch ? { batch: opts.batch } : {}),
    ...(opts.ep ? { ep: opts.ep } : {}), ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
    ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.progress ? { progress: opts.progress } : {}),
  });
}

/**
 * The file of each row of a folder dataset, relative to the folder, listed as `loadImageFolder` orders them (its
 * train/ + test/ (or val/) layout, or every 10th file per class held out). Undefined for Fashion-MNIST and when a
 * validation folder or skipped images make the listing differ from the loader's rows.
 */
async function folderFiles(opts: EvalDataOptions, data: Dataset, splits: readonly ('train' | 'test')[]): Promise<string[] | undefined> {
  const src = evalDataSource(opts);
  if (src.kind !== 'folder' || src.val !== undefined) return undefined;
  const listed = listImageFolder(src.path);
  if (listed.train.length !== data.train.count || listed.test.length !== data.test.count) return undefined; // skipped images
  return splits.flatMap((s) => listed[s]);
}

/**
 * Lists an image folder in the order `loadImageFolder` (runtime/data/image-folder.ts) loads it: hidden entries
 * ignored, entries sorted by code unit, class folders searched recursively, loose files in their sorted place; the
 * train/ + test/ (or val/) layout, else in each class every 10th file is test. Paths are relative to `root`, with `/`.
 */
export function listImageFolder(root: string): { train: string[]; test: string[] } {
  const entries = (dir: string) => fs.readdirSync(dir, { withFileTypes: true }).filter((e) => !e.name.startsWith('.')).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const recursive = (dir: string): string[] => entries(dir).flatMap((e) => (e.isDirectory() ? recursive(path.join(dir, e.name)) : e.isFile() ? [path.join(dir, e.name)] : []));
  type Listed = { file: string; group: string | undefined };
  const split = (dir: string): Listed[] =>
    entries(dir).flatMap((e): Listed[] => (e.isDirectory() ? recursive(path.join(dir, e.name)).map((file) => ({ file, group: e.name })) : e.isFile() ? [{ file: path.join(dir, e.name), group: undefined }] : []));
  const dirs = new Set(entries(root).filter((e) => e.isDirectory()).map((e) => e.name));
  const testDir = dirs.has('test') ? 'test' : dirs.has('val') ? 'val' : undefined;
  const rel = (f: { file: string }) => path.relative(root, f.file).split(path.sep).join('/');
  if (dirs.has('train') && testDir !== undefined) return { train: split(path.join(root, 'train')).map(rel), test: split(path.join(root, testDir)).map(rel) };
  const train: string[] = [], test: string[] = [];
  const seen = new Map<string | undefined, number>();
  for (const f of split(root)) {
    const k = seen.get(f.group) ?? 0;
    seen.set(f.group, k + 1);
    ((k + 1) % 10 === 0 ? test : train).push(rel(f));
  }
  return { train, test };
}
