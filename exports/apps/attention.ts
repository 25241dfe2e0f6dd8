/**
 * `npx dino attention IMAGE --model FILE.onnx --out DIR`: the last block's [CLS] attention over the patches,
 * per head, overlaid on the image as PNGs, and the masks that keep 60% of the attention mass, as DINO's
 * `visualize_attention.py` draws them (nearest-neighbour upsampling of the patch grid; the mask keeps the
 * largest attention values whose cumulative mass exceeds the threshold).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { createSession, ort } from '../../runtime/backend.ts';
import type { ChwImage } from '../../runtime/data/image-ops.ts';
import { type ExportInfo, readExportInfo } from '../export/teacher.ts';

/**
 * DINO's mask: sort the (patch-normalised) attention ascending, cumulative sum, keep the patches whose cumulative
 * sum exceeds 1 - threshold. That is the smallest set of largest values holding at least `threshold` of the mass.
 * Returns 1 for kept patches.
 */
export function attentionMask(attention: ArrayLike<number>, threshold = 0.6): Uint8Array {
  const n = attention.length;
  let total = 0;
  for (let i = 0; i < n; i++) total += attention[i]!;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => attention[a]! - attention[b]! || a - b);
  const mask = new Uint8Array(n);
  let cum = 0;
  for (const i of order) {
    cum += attention[i]! / total;
    if (cum > 1 - threshold) mask[i] = 1;
  }
  return mask;
}

/** A perceptual colour map (viridis, 9 control points, linear between them), v in [0, 1] -> RGB 0..255. */
const VIRIDIS = [
  [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141], [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37],
] as const;
export function viridis(v: number): [number, number, number] {
  const x = Math.min(Math.max(v, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2), t = x - i;
  const a = VIRIDIS[i]!, b = VIRIDIS[i + 1]!;
  return [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
}

/** An image file decoded like the image-folder loader (EXIF rotation, sRGB, cover-resize, centre crop) to CHW floats. */
export async function loadImage(file: string, height: number, width: number, channels: number): Promise<ChwImage> {
  let buffer: Buffer;
  try {
    buffer = fs.readFileSync(file);
  } catch (e) {
    throw new Error(`${file}: cannot read the image (${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message})`);
  }
  let raw: Buffer;
  try {
    raw = await sharp(buffer).rotate().removeAlpha().toColourspace('srgb').resize(width, height, { fit: 'cover', position: 'centre' }).raw().toBuffer();
  } catch (e) {
    throw new Error(`${file}: not a readable image (${(e as Error).message}); use a JPEG, PNG or WebP file`);
  }
  const plane = height * width, data = new Float32Array(channels * plane);
  for (let p = 0; p < plane; p++) {
    const r = raw[3 * p]! / 255, g = raw[3 * p + 1]! / 255, b = raw[3 * p + 2]! / 255;
    if (channels === 1) data[p] = 0.299 * r + 0.587 * g + 0.114 * b;
    else {
      data[p] = r;
      data[plane + p] = g;
      data[2 * plane + p] = b;
    }
  }
  return { channels, height, width, data };
}

/**
 * The model input size for an image of h x w: a fixed model's size; for a dynamic model the image scaled down so
 * its longer side is at most `maxSide` (DINO's visualize_attention resizes to 480), then cropped to a multiple of
 * the patch size.
 */
export function modelInputSize(info: ExportInfo, h: number, w: number, maxSide = 480): [number, number] {
  if (info.imageSize) return [info.imageSize[0], info.imageSize[1]];
  const p = info.backbone.patchSize, s = Math.min(1, maxSide / Math.max(h, w));
  const fit = (n: number) => Math.max(p, Math.floor(Math.round(n * s) / p) * p);
  return [fit(h), fit(w)];
}

export interface AttentionResult {
  /** Per head: the [CLS] attention over the patches (rows x cols, row-major), normalised to sum 1. */
  readonly heads: Float32Array[];
  /** Per head: the threshold mask. */
  readonly masks: Uint8Array[];
  readonly rows: number;
  readonly cols: number;
  /** The model's feature of the image. */
  readonly features: Float32Array;
}

/** Runs the model on one image (CHW in [0, 1], already at the model's input size). */
export async function computeAttention(session: ort.InferenceSession, info: ExportInfo, image: ChwImage, threshold = 0.6): Promise<AttentionResult> {
  const out = await session.run({ images: new ort.Tensor('float32', image.data, [1, image.channels, image.height, image.width]) });
  const p = info.backbone.patchSize, rows = image.height / p, cols = image.width / p, n = rows * cols;
  const att = out['cls_attention']!.data as Float32Array;
  const heads: Float32Array[] = [], masks: Uint8Array[] = [];
  for (let h = 0; h < info.backbone.numHeads; h++) {
    const a = att.slice(h * n, (h + 1) * n);
    const total = a.reduce((s, v) => s + v, 0);
    for (let i = 0; i < n; i++) a[i]! /= total;
    heads.push(a);
    masks.push(attentionMask(a, threshold));
  }
  return { heads, masks, rows, cols, features: Float32Array.from(out['features']!.data as Float32Array) };
}

/** RGB bytes of `image` upscaled `scale` times (nearest: every pixel a scale x scale block, as the attention grid). */
function displayRgb(image: ChwImage, scale: number): Uint8Array {
  const W = image.width * scale, H = image.height * scale, plane = image.width * image.height;
  const out = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const src = Math.floor(y / scale) * image.width + Math.floor(x / scale);
    for (let c = 0; c < 3; c++) out[(y * W + x) * 3 + c] = Math.round(255 * image.data[(image.channels === 1 ? 0 : c) * plane + src]!);
  }
  return out;
}

/** The per-patch map blended over the image: (1 - alpha) image + alpha viridis(v), v scaled min..max (as matplotlib's imshow). */
function overlay(base: Uint8Array, W: number, H: number, values: Float32Array, rows: number, cols: number, alpha: number): Uint8Array {
  const min = Math.min(...values), range = Math.max(Math.max(...values) - min, 1e-12), out = new Uint8Array(base.length);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const v = (values[Math.floor((y * rows) / H) * cols + Math.floor((x * cols) / W)]! - min) / range;
    const col = viridis(v), o = (y * W + x) * 3;
    for (let c = 0; c < 3; c++) out[o + c] = Math.round((1 - alpha) * base[o + c]! + alpha * col[c]!);
  }
  return out;
}

/** Kept patches in full colour with a warm tint, the rest darkened; the mask's border drawn in white. */
function maskImage(base: Uint8Array, W: number, H: number, mask: Uint8Array, rows: number, cols: number): Uint8Array {
  const out = new Uint8Array(base.length);
  const at = (y: number, x: number) => (y < 0 || x < 0 || y >= H || x >= W ? 0 : mask[Math.floor((y * rows) / H) * cols + Math.floor((x * cols) / W)]!);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
    const o = (y * W + x) * 3, kept = at(y, x);
    const edge = kept && (!at(y - 1, x) || !at(y + 1, x) || !at(y, x - 1) || !at(y, x + 1));
    for (let c = 0; c < 3; c++) {
      const tint = [255, 140, 0][c]!;
      out[o + c] = edge ? 255 : kept ? Math.round(0.65 * base[o + c]! + 0.35 * tint) : Math.round(0.25 * base[o + c]!);
    }
  }
  return out;
}

export interface AttentionMapsOptions {
  /** Image file (JPEG / PNG / WebP). */
  readonly image: string;
  readonly model: string;
  /** Output folder. */
  readonly out: string;
  /** Mass the mask keeps (DINO: 0.6). */
  readonly threshold?: number;
  /** Upscale factor for the PNGs (default: enough to make the longer side at least 224 px). */
  readonly scale?: number;
  /** Dynamic-size models: longest side the image is scaled down to (default 480, as DINO's visualisation). */
  readonly maxSide?: number;
  /** Session to reuse. */
  readonly session?: ort.InferenceSession;
}

export interface AttentionMapsResult extends AttentionResult {
  /** Written PNGs: image.png, attn-head<h>.png, mask-head<h>.png, attn-mean.png; and attention.json. */
  readonly files: string[];
}

/** Writes the attention PNGs of one image (see {@link AttentionMapsResult.files}). */
export async function attentionMaps(opts: AttentionMapsOptions): Promise<AttentionMapsResult> {
  const info = readExportInfo(opts.model);
  const meta = await sharp(opts.image).metadata().catch((e: Error) => {
    throw new Error(`${opts.image}: not a readable image (${e.message}); use a JPEG, PNG or WebP file`);
  });
  const rotated = (meta.orientation ?? 1) >= 5; // EXIF orientations 5-8 swap width and height
  const [h, w] = modelInputSize(info, (rotated ? meta.width : meta.height) ?? 0, (rotated ? meta.height : meta.width) ?? 0, opts.maxSide);
  const image = await loadImage(opts.image, h, w, info.backbone.inChans);
  const session = opts.session ?? (await createSession(opts.model));
  const result = await computeAttention(session, info, image, opts.threshold ?? 0.6);
  if (!opts.session) await session.release();
  const files = await writeAttentionPngs(opts.out, image, result, opts.scale);
  const json = path.join(opts.out, 'attention.json');
  fs.writeFileSync(json, JSON.stringify({
    image: opts.image, model: opts.model, rows: result.rows, cols: result.cols, threshold: opts.threshold ?? 0.6,
    heads: result.heads.map((a, i) => ({ attention: Array.from(a), mask: Array.from(result.masks[i]!), kept_mass: keptMass(a, result.masks[i]!) })),
  }) + '\n');
  return { ...result, files: [...files, json] };
}

export function keptMass(attention: ArrayLike<number>, mask: Uint8Array): number {
  let kept = 0, total = 0;
  for (let i = 0; i < mask.length; i++) {
    total += attention[i]!;
    if (mask[i]) kept += attention[i]!;
  }
  return kept / total;
}

/** PNGs of one image's attention into `dir`; returns their paths. */
export async function writeAttentionPngs(dir: string, image: ChwImage, result: AttentionResult, scaleOpt?: number): Promise<string[]> {
  fs.mkdirSync(dir, { recursive: true });
  const scale = scaleOpt ?? Math.max(1, Math.ceil(224 / Math.max(image.height, image.width)));
  const W = image.width * scale, H = image.height * scale;
  const base = displayRgb(image, scale);
  const files: string[] = [];
  const png = async (name: string, rgb: Uint8Array) => {
    const file = path.join(dir, name);
    await sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), { raw: { width: W, height: H, channels: 3 } }).png().toFile(file);
    files.push(file);
  };
  await png('image.png', base);
  const mean = new Float32Array(result.rows * result.cols);
  for (let hd = 0; hd < result.heads.length; hd++) {
    const a = result.heads[hd]!;
    a.forEach((v, i) => (mean[i]! += v / result.heads.length));
    await png(`attn-head${hd}.png`, overlay(base, W, H, a, result.rows, result.cols, 0.6));
    await png(`mask-head${hd}.png`, maskImage(base, W, H, result.masks[hd]!, result.rows, result.cols));
  }
  await png('attn-mean.png', overlay(base, W, H, mean, result.rows, result.cols, 0.6));
  return files;
}
