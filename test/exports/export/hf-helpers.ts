/**
 * Shared by hf.test.ts and browser-hf.test.ts: image files to feed transformers.js, the features the plain
 * `dino export` ONNX gives for the same pixels through onnxruntime-node (the reference), and the comparison.
 */
import * as assert from 'uvu/assert';
import * as path from 'node:path';
import sharp from 'sharp';
import { Prng } from '../../../dsl/index.ts';
import { createSession, ort } from '../../../runtime/backend.ts';
import { relativeError } from '../helpers.ts';

/** An 8-bit image written as a PNG: its channels (1 = grayscale PNG, 3 = RGB PNG) and HWC bytes. */
export interface TestImage {
  readonly file: string;
  readonly channels: 1 | 3;
  readonly size: number;
  readonly hwc: Uint8Array;
}

/** PNGs of random pixels, `size` square, with the given channel counts, in `dir`. */
export async function writeTestImages(dir: string, size: number, channels: readonly (1 | 3)[], seed: number): Promise<TestImage[]> {
  const prng = Prng.seeded(seed);
  const out: TestImage[] = [];
  for (const [i, c] of channels.entries()) {
    const hwc = Uint8Array.from({ length: size * size * c }, () => Math.floor(prng.uniform() * 256));
    const file = path.join(dir, `image-${i}-${c}ch.png`);
    await sharp(Buffer.from(hwc), { raw: { width: size, height: size, channels: c } }).png().toFile(file);
    out.push({ file, channels: c, size, hwc });
  }
  return out;
}

/** PIL's convert('L') weights, as the training loader turns colour images into one channel (runtime/data/image-folder.ts). */
const PIL_LUMA = [0.299, 0.587, 0.114] as const;

/**
 * The images as the plain export takes them: [N, C, H, W] in [0, 1] for a `modelChannels` model; a colour image for a
 * one-channel model becomes its luma (the HF graph's first op), a gray image for an RGB model is repeated.
 */
export function referencePixels(images: readonly TestImage[], modelChannels: number): Float32Array {
  const size = images[0]!.size, plane = size * size;
  const out = new Float32Array(images.length * modelChannels * plane);
  images.forEach((im, n) => {
    for (let p = 0; p < plane; p++) {
      const rgb = im.channels === 3 ? [im.hwc[3 * p]!, im.hwc[3 * p + 1]!, im.hwc[3 * p + 2]!] : [im.hwc[p]!, im.hwc[p]!, im.hwc[p]!];
      if (modelChannels === 1) {
        out[n * plane + p] = (im.channels === 1 ? im.hwc[p]! : PIL_LUMA[0] * rgb[0]! + PIL_LUMA[1] * rgb[1]! + PIL_LUMA[2] * rgb[2]!) / 255;
      } else {
        for (let c = 0; c < 3; c++) out[(n * 3 + c) * plane + p] = rgb[c]! / 255;
      }
    }
  });
  return out;
}

export interface PlainTensor {
  readonly dims: number[];
  readonly data: number[] | Float32Array;
}

/** What a transformers.js program returned (hf-client.ts in Node, the page in the browser). */
export interface ClientResult {
  readonly pixel_values: PlainTensor;
  readonly last_hidden_state: PlainTensor;
  readonly pooler_output: PlainTensor;
  readonly cls_attention: PlainTensor;
  readonly pipeline: PlainTensor;
  readonly pipeline_pooled: PlainTensor;
}

/** The plain export (`images` input) run by onnxruntime-node: features, patch_tokens, cls_attention. */
export async function plainExportOutputs(model: string, pixels: Float32Array, dims: number[]): Promise<Record<string, Float32Array>> {
  const session = await createSession(model, { threads: 1 });
  const out = await session.run({ images: new ort.Tensor('float32', pixels, dims) });
  await session.release();
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
}

/** [N, T, D] rows `from` to `to` of each image. */
function tokenRows(t: PlainTensor, from: number, to: number): Float32Array {
  const [n, tokens, d] = t.dims as [number, number, number];
  const out = new Float32Array(n * (to - from) * d);
  for (let i = 0; i < n; i++) out.set(Float32Array.from(t.data).subarray((i * tokens + from) * d, (i * tokens + to) * d), i * (to - from) * d);
  return out;
}

/**
 * transformers.js's outputs against the plain export's (≤ `tolerance` relative): last_hidden_state [:, 0] and
 * pooler_output = features, [:, 1:] = patch_tokens, cls_attention; the pipeline's outputs equal the model's.
 */
export function assertSameFeatures(got: ClientResult, want: Record<string, Float32Array>, shape: { n: number; patches: number; dim: number; heads: number }, label: string, report: string[], tolerance: number): void {
  const { n, patches, dim, heads } = shape;
  assert.equal(got.pixel_values.dims.slice(0, 2), [n, 3], `${label}: pixel_values are RGB`);
  assert.equal(got.last_hidden_state.dims, [n, 1 + patches, dim], `${label}: last_hidden_state [N, 1 + P, D]`);
  assert.equal(got.pooler_output.dims, [n, dim], `${label}: pooler_output [N, D]`);
  assert.equal(got.cls_attention.dims, [n, heads, patches], `${label}: cls_attention [N, heads, P]`);
  const checks: [string, ArrayLike<number>, Float32Array][] = [
    ['last_hidden_state[:, 0]', tokenRows(got.last_hidden_state, 0, 1), want['features']!],
    ['last_hidden_state[:, 1:]', tokenRows(got.last_hidden_state, 1, 1 + patches), want['patch_tokens']!],
    ['pooler_output', got.pooler_output.data, want['features']!],
    ['cls_attention', got.cls_attention.data, want['cls_attention']!],
  ];
  for (const [name, a, b] of checks) {
    const rel = relativeError(a, b);
    report.push(`${label} ${name} vs dino export (onnxruntime-node): ${rel.toExponential(2)}`);
    assert.ok(rel <= tolerance, `${label} ${name}: relative error ${rel} > ${tolerance}`);
  }
  assert.equal(got.pipeline.dims, got.last_hidden_state.dims, `${label}: the pipeline returns last_hidden_state`);
  assert.equal(got.pipeline_pooled.dims, got.pooler_output.dims, `${label}: the pipeline with pool: true returns pooler_output`);
  assert.ok(relativeError(got.pipeline.data, got.last_hidden_state.data) <= 1e-6, `${label}: pipeline = AutoModel last_hidden_state`);
  assert.ok(relativeError(got.pipeline_pooled.data, got.pooler_output.data) <= 1e-6, `${label}: pipeline pool = AutoModel pooler_output`);
}
