/**
 * Features of an exported model for a set of images, in batches through onnxruntime-node: its `features` output
 * (the final-norm [CLS]), or DINO's linear-evaluation feature (`eval_linear.py`: the [CLS] of the last blocks, with
 * the mean of the patch tokens). Images of another size than the model's input are resized as training crops are.
 */
import { createSession, ort } from '../../runtime/backend.ts';
import { type ImageSet, gatherImages } from '../../runtime/data/dataset.ts';
import { resizeBicubic } from '../../runtime/data/image-ops.ts';
import { type ExportInfo, readExportInfo } from '../export/teacher.ts';
import { readBackboneExportInfo } from '../export/backbone.ts';
import { EvalOptionError } from './eval-data.ts';

/** `count` feature vectors of `dim` floats, row-major, with their labels. */
export interface FeatureSet {
  readonly count: number;
  readonly dim: number;
  readonly data: Float32Array;
  readonly labels: Int32Array;
}

export interface ImageSource {
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly set: ImageSet;
  /** Indices of the images to use (default all). */
  readonly indices?: Uint32Array | number[];
}

export interface Extracted extends FeatureSet {
  readonly imagesPerSecond: number;
}

/** The model's input size for images of h x w: its fixed size, or for dynamic models the image size rounded down to the patch. */
function inputSize(info: ExportInfo, h: number, w: number): [number, number] {
  if (info.imageSize) return [info.imageSize[0], info.imageSize[1]];
  const p = info.backbone.patchSize;
  return [Math.max(p, Math.floor(h / p) * p), Math.max(p, Math.floor(w / p) * p)];
}

/**
 * DINO's linear-evaluation feature (`eval_linear.py`): the final-norm [CLS] of the last `nLastBlocks` blocks,
 * concatenated oldest first, and with `avgpoolPatchtokens` the mean of the last block's final-norm patch tokens.
 */
export interface LinearFeatureSpec {
  readonly nLastBlocks: number;
  readonly avgpoolPatchtokens: boolean;
}

/** Feature width of `spec` for a backbone of width `d`. */
export const linearFeatureDim = (spec: LinearFeatureSpec, d: number): number => d * (spec.nLastBlocks + (spec.avgpoolPatchtokens ? 1 : 0));

/**
 * Writes image i's linear-evaluation feature into `out` (row of {@link linearFeatureDim}) from the model's outputs.
 * With one block and the average, the layout is DINO's exactly: its code stacks [CLS] and the mean on a last axis and
 * flattens, interleaving them (cls_0, avg_0, cls_1, avg_1, ...), so a classifier trained by DINO applies unchanged.
 * DINO's code cannot combine more blocks with the average (the stacked sizes differ); here the mean then follows the
 * n [CLS] tokens.
 */
function linearFeatureRow(spec: LinearFeatureSpec, d: number, cls: Float32Array, avg: Float32Array | undefined, out: Float32Array): void {
  const n = spec.nLastBlocks;
  if (avg && n === 1) {
    for (let j = 0; j < d; j++) {
      out[2 * j] = cls[j]!;
      out[2 * j + 1] = avg[j]!;
    }
    return;
  }
  out.set(cls.subarray(0, n * d));
  if (avg) out.set(avg.subarray(0, d), n * d);
}

/**
 * `features` of the exported model for the chosen images, in batches (onnxruntime-node). Images whose size
 * differs from the model's input are resized (antialiased bicubic, as training crops are). With `linear`, the
 * linear-evaluation feature instead ({@link LinearFeatureSpec}): more than one block needs a model exported with
 * `intermediate` >= nLastBlocks (its `block_cls` output); the average comes from `patch_mean` (or `patch_tokens`).
 */
export async function extractFeatures(
  model: string | Uint8Array,
  src: ImageSource,
  opts: { batch?: number; threads?: number; log?: (msg: string) => void; session?: ort.InferenceSession; linear?: LinearFeatureSpec } = {},
): Promise<Extracted> {
  // A backbone export (a ResNet, a registered backbone: exportBackbone) gives `features` at its fixed size only.
  const other = readBackboneExportInfo(model);
  const info: ExportInfo | undefined = other ? undefined : readExportInfo(model);
  const inChans = other ? other.backbone.inChans : info!.backbone.inChans;
  if (inChans !== src.channels) {
    throw new Error(`the model takes ${inChans}-channel images, the dataset has ${src.channels} channels`);
  }
  const linear = opts.linear;
  if (linear && !info) throw new Error(`the model is a ${other!.backbone.kind} backbone's features model: DINO's linear-evaluation features ([CLS] of several blocks, patch tokens) need a ViT; use its plain features`);
  if (linear && info) {
    checkLinearFeature(linear, info.backbone.depth);
    const have = info.intermediate ?? 1;
    if (linear.nLastBlocks > have) {
      throw new Error(`${typeof model === 'string' ? model : 'the model'} holds the [CLS] of its last ${have} block(s) only; nLastBlocks ${linear.nLastBlocks} needs a model exported with intermediate >= ${linear.nLastBlocks} (or evaluate the run, which exports it)`);
    }
  }
  const [h, w] = info ? inputSize(info, src.height, src.width) : other!.imageSize;
  const session = opts.session ?? (await createSession(model, opts.threads !== undefined ? { threads: opts.threads } : {}));
  const indices = src.indices ? Uint32Array.from(src.indices) : Uint32Array.from({ length: src.set.count }, (_, i) => i);
  const count = indices.length, batch = opts.batch ?? 256, c = src.channels;
  const per = c * src.height * src.width, perIn = c * h * w;
  const d = info ? info.backbone.embedDim : other!.featureDim;
  const dim = linear ? linearFeatureDim(linear, d) : d;
  const features = new Float32Array(count * dim);
  const labels = new Int32Array(count);
  const input = new Float32Array(batch * perIn);
  const scratch = new Float32Array(per); // one source image before resizing
  const t0 = performance.now();
  let lastLog = t0;
  for (let b0 = 0; b0 < count; b0 += batch) {
    const n = Math.min(batch, count - b0);
    const batchIndices = indices.subarray(b0, b0 + n);
    batchIndices.forEach((idx, i) => (labels[b0 + i] = src.set.labels[idx]!));
    modelInputBatch(src, batchIndices, h, w, input, scratch);
    await featureRows(session, d, input.subarray(0, n * perIn), [n, c, h, w], linear, features.subarray(b0 * dim, (b0 + n) * dim));
    const now = performance.now();
    if (opts.log && now - lastLog > 2000) {
      lastLog = now;
      opts.log(`features ${b0 + n}/${count} (${(((b0 + n) * 1000) / (now - t0)).toFixed(0)} images/s)`);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  if (!opts.session) await session.release();
  return { count, dim, data: features, labels, imagesPerSecond: count / Math.max(seconds, 1e-9) };
}

/**
 * Images `indices` of `src.set` as the model's input: float32 in [0, 1] at h x w, packed (N, C, H, W) into `out`;
 * an image of another size is resized (antialiased bicubic, as training crops are) through `scratch` (one source
 * image, C * src.height * src.width floats).
 */
export function modelInputBatch(src: Omit<ImageSource, 'indices'>, indices: ArrayLike<number>, h: number, w: number, out: Float32Array, scratch?: Float32Array): void {
  const c = src.channels, perIn = c * h * w;
  if (h === src.height && w === src.width) return void gatherImages(src, src.set, indices, out);
  const buffer = scratch ?? new Float32Array(c * src.height * src.width);
  for (let i = 0; i < indices.length; i++) {
    const image = { channels: c, height: src.height, width: src.width, data: gatherImages(src, src.set, [indices[i]!], buffer) };
    resizeBicubic(image, { top: 0, left: 0, height: src.height, width: src.width }, h, w, out.subarray(i * perIn, (i + 1) * perIn));
  }
}

/**
 * One batch through an exported model: `images` [n, C, H, W] in [0, 1], the rows (the model's `features`, or with
 * `linear` DINO's linear-evaluation feature, {@link LinearFeatureSpec}) written into `rows` (n rows). `d` is the
 * backbone's width.
 */
export async function featureRows(session: ort.InferenceSession, d: number, images: Float32Array, dims: readonly [number, number, number, number], linear: LinearFeatureSpec | undefined, rows: Float32Array): Promise<void> {
  const out = await session.run({ images: new ort.Tensor('float32', images, [...dims]) });
  if (!linear) rows.set(out['features']!.data as Float32Array);
  else linearRows(linear, d, out, dims[0], rows);
}

/** The model's input [H, W] for images of h x w (see {@link extractFeatures}). */
export const modelInputSize = (info: ExportInfo, h: number, w: number): [number, number] => inputSize(info, h, w);

/** `nLastBlocks` an integer in 1..depth; errors name the option. */
export function checkLinearFeature(spec: LinearFeatureSpec, depth: number): void {
  if (!(Number.isInteger(spec.nLastBlocks) && spec.nLastBlocks >= 1 && spec.nLastBlocks <= depth)) {
    throw new EvalOptionError('nLastBlocks', spec.nLastBlocks, `an integer from 1 to ${depth} (the backbone's depth)`);
  }
}

/** The linear-evaluation features of a batch of `n` images from the model's outputs, into `out` (n rows). */
function linearRows(spec: LinearFeatureSpec, d: number, out: Record<string, ort.Tensor>, n: number, rows: Float32Array): void {
  const k = spec.nLastBlocks, dim = linearFeatureDim(spec, d);
  let cls: Float32Array, stride: number, skip: number;
  if (k === 1) {
    [cls, stride, skip] = [out['features']!.data as Float32Array, d, 0];
  } else {
    const blocks = out['block_cls']!; // [n, m, D], oldest first: the last k are the last k rows
    const m = blocks.dims[1]!;
    [cls, stride, skip] = [blocks.data as Float32Array, m * d, (m - k) * d];
  }
  let avg: Float32Array | undefined;
  if (spec.avgpoolPatchtokens) {
    if (out['patch_mean']) avg = out['patch_mean'].data as Float32Array;
    else {
      // A model without patch_mean (the default export): average patch_tokens [n, P, D] here.
      const tokens = out['patch_tokens']!, p = tokens.dims[1]!, t = tokens.data as Float32Array;
      avg = new Float32Array(n * d);
      const sum = new Float64Array(d);
      for (let i = 0; i < n; i++) {
        sum.fill(0);
        for (let q = 0; q < p; q++) for (let j = 0; j < d; j++) sum[j]! += t[(i * p + q) * d + j]!;
        for (let j = 0; j < d; j++) avg[i * d + j] = sum[j]! / p;
      }
    }
  }
  for (let i = 0; i < n; i++) {
    const start = i * stride + skip;
    linearFeatureRow(spec, d, cls.subarray(start, start + k * d), avg?.subarray(i * d, (i + 1) * d), rows.subarray(i * dim, (i + 1) * dim));
  }
}

/** `limit` indices spread evenly over [0, count) (class-balanced for class-major datasets like Fashion-MNIST). */
export function evenlySpaced(count: number, limit?: number): Uint32Array {
  const n = limit === undefined ? count : Math.min(count, Math.max(0, Math.floor(limit)));
  return Uint32Array.from({ length: n }, (_, i) => Math.floor((i * count) / n));
}
