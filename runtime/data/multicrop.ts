/**
 * DINO multi-crop augmentation (facebookresearch/dino `DataAugmentationDINO`), on 8-bit images of any size (decoded
 * files) or on float32 images in [0, 1] (Fashion-MNIST), channel-first. Every random draw comes from the {@link Prng} passed in, so a batch is reproducible from its seed.
 *
 * Per image, in this order (the reference's): global view 1, global view 2, then the local views. Each view:
 * 1. RandomResizedCrop (torchvision's sampling, 10 tries then the centre-crop fallback), PIL-style bicubic
 *    resize to the view size (see image-ops.ts);
 * 2. horizontal flip with p `flipP`;
 * 3. with p `colorJitterP`: ColorJitter, its four adjustments in a random order (torchvision draws a permutation,
 *    then the brightness, contrast, saturation and hue factors); saturation and hue change nothing on 1 channel;
 * 4. grayscale with p `grayscaleP` (nothing to do on 1 channel);
 * 5. Gaussian blur with p `blurP` of the view (1.0 first global, 0.1 second, 0.5 locals), sigma uniform in
 *    `blurSigma` pixels, computed as PIL does (three extended box blurs, reaching 3 px each side for sigma up to
 *    about 1.5 and 6 px up to 2; see image-ops.ts);
 * 6. second global view only: solarize with p `solarizeP`, threshold 128/255;
 * 7. normalise: (x - mean[c]) / std[c].
 * The draw sequence is fixed by the config, not by the image's channel count: the saturation/hue factors and the
 * grayscale coin are drawn on 1-channel images too, as torchvision does.
 *
 * Two paths share these draws:
 * - {@link multiCropImages} (decoded files: 8-bit images of any size) computes as torchvision does on PIL images,
 *   uint8 between steps, and gives PIL's bytes for every step and torch's float32 tensors at the end (checked by
 *   test/runtime/data/augment-fidelity.test.ts against fixtures from tools/make_augment_fixtures.py). uint8 was
 *   chosen over float after measuring both against those fixtures: the float path (the ops below, unrounded)
 *   differs from torchvision's whole views by up to 3.6 levels of 255 (mean 0.8-1.3), mostly because PIL truncates
 *   after every colour op; uint8 by none. It is also the cheaper one (a byte per value, lookup tables for the
 *   pointwise ops). Draws happen first ({@link drawViewParams}), pixels after
 *   ({@link renderView}), with the flip folded into the resize and solarize into the normalisation table.
 * - {@link multiCrop} (float images in [0, 1], Fashion-MNIST) works in float32 with no rounding between steps.
 * {@link evalTransform} is DINO's evaluation transform on the same 8-bit images.
 */
import type { Prng } from '../../dsl/prng.ts';
import {
  adjustBrightness, adjustContrast, adjustHue, adjustSaturation, colorJitterDeferred, flipHorizontal, gaussianBlur,
  resizeBicubic, solarize, toGrayscale, type ChwImage, type CropBox, type JitterParams,
} from './image-ops.ts';
import { JS_VIEW_KERNELS, type ViewKernels } from './view-kernels.ts';
import { wasmViewKernels } from './wasm-kernels.ts';

/**
 * Augmentation strengths, with DINO's defaults in {@link DINO_AUGMENT}. Presets derive their own with
 * {@link augmentConfig} (for example smaller crop sizes, or blur sigmas scaled to the image size).
 */
export interface AugmentConfig {
  /** `'dino'`: the full pipeline. `'none'`: every global (local) crop is the whole image resized to the global
   * (local) size, then normalised; nothing random. */
  readonly augment: 'dino' | 'none';
  /** Side of the two global crops in pixels. DINO: 224. */
  readonly globalSize: number;
  /** Side of the local crops in pixels. DINO: 96. */
  readonly localSize: number;
  /** Number of local crops. main_dino.py default 8 (the paper's best ViT-S/16 run uses 10); 0 disables multi-crop. */
  readonly localCrops: number;
  /** Area fraction range of global crops. DINO: [0.4, 1]; the paper found 0.4 better than the usual 0.08 lower bound. */
  readonly globalScale: readonly [number, number];
  /** Area fraction range of local crops. DINO: [0.05, 0.4]; keep its upper end at the global range's lower end. */
  readonly localScale: readonly [number, number];
  /** Aspect ratio (width / height) range of all crops. torchvision: [3/4, 4/3]. */
  readonly aspectRatio: readonly [number, number];
  /** Probability of a horizontal flip. DINO: 0.5. */
  readonly flipP: number;
  /** Probability of applying colour jitter. DINO: 0.8. */
  readonly colorJitterP: number;
  /** Brightness factor drawn from [max(0, 1 - b), 1 + b]. DINO: 0.4. */
  readonly brightness: number;
  /** Contrast factor drawn from [max(0, 1 - c), 1 + c]. DINO: 0.4. */
  readonly contrast: number;
  /** Saturation factor drawn from [max(0, 1 - s), 1 + s] (3 channels only). DINO: 0.2. */
  readonly saturation: number;
  /** Hue shift in turns drawn from [-h, h], h <= 0.5 (3 channels only). DINO: 0.1. */
  readonly hue: number;
  /** Probability of converting to grayscale (3 channels only). DINO: 0.2. */
  readonly grayscaleP: number;
  /** Blur probability for [first global, second global, every local] view. DINO: [1.0, 0.1, 0.5]. */
  readonly blurP: readonly [number, number, number];
  /** Blur sigma range in pixels (PIL's radius). DINO: [0.1, 2.0], meant for 224 px crops: on small images
   * consider scaling it by size / 224. */
  readonly blurSigma: readonly [number, number];
  /** Probability of solarizing the second global view. DINO: 0.2. */
  readonly solarizeP: number;
  /** Values at or above this are inverted when solarizing. PIL: 128 / 255. */
  readonly solarizeThreshold: number;
  /** Per-channel mean subtracted last (one value, or one per channel). DINO: ImageNet's. */
  readonly mean: readonly number[];
  /** Per-channel standard deviation divided by last (one value, or one per channel). DINO: ImageNet's. */
  readonly std: readonly number[];
}

/** DINO's defaults (main_dino.py and DataAugmentationDINO), for RGB ImageNet-like images. */
export const DINO_AUGMENT: AugmentConfig = Object.freeze({
  augment: 'dino',
  globalSize: 224,
  localSize: 96,
  localCrops: 8,
  globalScale: [0.4, 1],
  localScale: [0.05, 0.4],
  aspectRatio: [3 / 4, 4 / 3],
  flipP: 0.5,
  colorJitterP: 0.8,
  brightness: 0.4,
  contrast: 0.4,
  saturation: 0.2,
  hue: 0.1,
  grayscaleP: 0.2,
  blurP: [1.0, 0.1, 0.5],
  blurSigma: [0.1, 2.0],
  solarizeP: 0.2,
  solarizeThreshold: 128 / 255,
  mean: [0.485, 0.456, 0.406],
  std: [0.229, 0.224, 0.225],
} as const);

/** {@link DINO_AUGMENT} with `overrides` applied, checked; throws an Error listing every invalid field. */
export function augmentConfig(overrides: Partial<AugmentConfig> = {}): AugmentConfig {
  const config: AugmentConfig = { ...DINO_AUGMENT, ...overrides };
  const problems: string[] = [];
  const isProbability = (p: number) => p >= 0 && p <= 1;
  const isRange = (r: readonly number[], lo: number, hi: number) => r.length === 2 && r[0]! >= lo && r[0]! <= r[1]! && r[1]! <= hi;
  if (config.augment !== 'dino' && config.augment !== 'none') problems.push(`augment must be 'dino' or 'none', got ${String(config.augment)}`);
  for (const key of ['globalSize', 'localSize'] as const) {
    if (!(Number.isInteger(config[key]) && config[key] > 0)) problems.push(`${key} must be a positive integer, got ${config[key]}`);
  }
  if (!(Number.isInteger(config.localCrops) && config.localCrops >= 0)) problems.push(`localCrops must be a non-negative integer, got ${config.localCrops}`);
  for (const key of ['globalScale', 'localScale'] as const) {
    if (!isRange(config[key], Number.MIN_VALUE, 1)) problems.push(`${key} must be [lo, hi] with 0 < lo <= hi <= 1, got ${JSON.stringify(config[key])}`);
  }
  if (!isRange(config.aspectRatio, Number.MIN_VALUE, Infinity)) problems.push(`aspectRatio must be [lo, hi] with 0 < lo <= hi, got ${JSON.stringify(config.aspectRatio)}`);
  for (const key of ['flipP', 'colorJitterP', 'grayscaleP', 'solarizeP'] as const) {
    if (!isProbability(config[key])) problems.push(`${key} must be a probability, got ${config[key]}`);
  }
  if (config.blurP.length !== 3 || !config.blurP.every(isProbability)) problems.push(`blurP must be three probabilities, got ${JSON.stringify(config.blurP)}`);
  for (const key of ['brightness', 'contrast', 'saturation'] as const) {
    if (!(config[key] >= 0)) problems.push(`${key} must be >= 0, got ${config[key]}`);
  }
  if (!(config.hue >= 0 && config.hue <= 0.5)) problems.push(`hue must be in [0, 0.5], got ${config.hue}`);
  if (!isRange(config.blurSigma, 0, Infinity)) problems.push(`blurSigma must be [lo, hi] with 0 <= lo <= hi, got ${JSON.stringify(config.blurSigma)}`);
  if (!(config.solarizeThreshold >= 0 && config.solarizeThreshold <= 1)) problems.push(`solarizeThreshold must be in [0, 1], got ${config.solarizeThreshold}`);
  if (config.mean.length === 0 || config.mean.length !== config.std.length) problems.push(`mean and std must have the same non-zero length, got ${config.mean.length} and ${config.std.length}`);
  if (!config.std.every((s) => s > 0)) problems.push(`std values must be > 0, got ${JSON.stringify(config.std)}`);
  if (problems.length > 0) throw new Error(`invalid augmentation config:\n  ${problems.join('\n  ')}`);
  return config;
}

/** A batch of equally sized source images, (count, channels, height, width), values in [0, 1]. */
export interface ImageBatch {
  readonly count: number;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly pixels: Float32Array;
}

/**
 * The crops of a batch of B images, view-major as DINO's MultiCropWrapper concatenates them:
 * `globals` is [2 * B, C, G, G] (all B images' view 0, then all B images' view 1),
 * `locals` is [localCrops * B, C, L, L] (local view 0 of all images, then local view 1, ...).
 */
export interface MultiCropBatch {
  readonly batchSize: number;
  readonly channels: number;
  readonly globalSize: number;
  readonly localSize: number;
  readonly localCrops: number;
  readonly globals: Float32Array;
  readonly locals: Float32Array;
}

/** Python's `round` (half to even), which torchvision's crop sampling uses. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * torchvision `RandomResizedCrop.get_params`: up to 10 tries of (area fraction uniform in `scale`, log aspect ratio
 * uniform in log `ratio`, rounded sides, uniform position); if none fits, the largest centred crop whose aspect
 * ratio is clamped to `ratio`.
 */
export function sampleCropBox(
  height: number,
  width: number,
  scale: readonly [number, number],
  ratio: readonly [number, number],
  prng: Prng,
): CropBox {
  const area = height * width;
  const logRatioLo = Math.log(ratio[0]);
  const logRatioHi = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * prng.range(scale[0], scale[1]);
    const aspect = Math.exp(prng.range(logRatioLo, logRatioHi));
    const w = roundHalfEven(Math.sqrt(targetArea * aspect));
    const h = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = prng.int(height - h + 1);
      const left = prng.int(width - w + 1);
      return { top, left, height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < Math.min(ratio[0], ratio[1])) h = roundHalfEven(w / Math.min(ratio[0], ratio[1]));
  else if (inRatio > Math.max(ratio[0], ratio[1])) w = roundHalfEven(h * Math.max(ratio[0], ratio[1]));
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

/** torchvision ColorJitter: a random order of the four adjustments, each with its own random factor. */
function colorJitter(image: ChwImage, config: AugmentConfig, prng: Prng): void {
  const order = prng.permutation(4);
  const brightness = prng.range(Math.max(0, 1 - config.brightness), 1 + config.brightness);
  const contrast = prng.range(Math.max(0, 1 - config.contrast), 1 + config.contrast);
  const saturation = prng.range(Math.max(0, 1 - config.saturation), 1 + config.saturation);
  const hue = prng.range(-config.hue, config.hue);
  for (const op of order) {
    if (op === 0) adjustBrightness(image, brightness);
    else if (op === 1) adjustContrast(image, contrast);
    else if (op === 2) adjustSaturation(image, saturation);
    else adjustHue(image, hue);
  }
}

/** Which of DINO's three view kinds a crop is: they differ in scale, size, blur probability and solarization. */
export type ViewKind = 'global1' | 'global2' | 'local';

/** One augmented view of `source`, written normalised into `out` at `offset`. */
function augmentView(
  source: ChwImage,
  kind: ViewKind,
  config: AugmentConfig,
  prng: Prng,
  out: Float32Array,
  offset: number,
): void {
  const isGlobal = kind !== 'local';
  const size = isGlobal ? config.globalSize : config.localSize;
  const box = sampleCropBox(source.height, source.width, isGlobal ? config.globalScale : config.localScale, config.aspectRatio, prng);
  const view = resizeBicubic(source, box, size, size);
  if (prng.uniform() < config.flipP) flipHorizontal(view);
  if (prng.uniform() < config.colorJitterP) colorJitter(view, config, prng);
  if (prng.uniform() < config.grayscaleP) toGrayscale(view);
  const blurP = kind === 'global1' ? config.blurP[0] : kind === 'global2' ? config.blurP[1] : config.blurP[2];
  // DINO's GaussianBlur: `random.random() <= p` then `radius = random.uniform(lo, hi)`.
  if (prng.uniform() <= blurP) gaussianBlur(view, prng.range(config.blurSigma[0], config.blurSigma[1]));
  if (kind === 'global2' && prng.uniform() < config.solarizeP) solarize(view, config.solarizeThreshold);
  normalizeInto(view, config, out, offset);
}

/** The whole image resized to `size` (the `'none'` mode view), normalised into `out` at `offset`. */
function plainView(source: ChwImage, size: number, config: AugmentConfig, out: Float32Array, offset: number): void {
  const view = resizeBicubic(source, { top: 0, left: 0, height: source.height, width: source.width }, size, size);
  normalizeInto(view, config, out, offset);
}

function normalizeInto(view: ChwImage, config: AugmentConfig, out: Float32Array, offset: number): void {
  const plane = view.height * view.width;
  for (let c = 0; c < view.channels; c++) {
    const mean = config.mean.length === 1 ? config.mean[0]! : config.mean[c]!;
    const invStd = 1 / (config.std.length === 1 ? config.std[0]! : config.std[c]!);
    const base = c * plane;
    for (let p = 0; p < plane; p++) out[offset + base + p] = (view.data[base + p]! - mean) * invStd;
  }
}

/**
 * An 8-bit image of its own size, values 0-255: what decoding one file gives, before any resize. Channel-first
 * (C, H, W), or with `interleaved` in a decoder's pixel order (H, W, C), read in place without a copy. DINO crops
 * every view from the original image, so a batch's sources may all differ in size.
 */
export interface SourceImage {
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly data: Uint8Array;
  /** `data[(y * width + x) * channels + c]` when true; else `data[c * height * width + y * width + x]`. */
  readonly interleaved?: boolean;
}

/**
 * Multi-crop views of every image in `images`, in the layout of {@link MultiCropBatch}.
 * Each image gets its own generator, forked from `prng` in image order, so image b's crops depend only on
 * `prng`'s state and b. In `'none'` mode `prng` is not used.
 * @throws Error when the config is invalid for these images (mean/std length vs channels).
 */
export function multiCrop(images: ImageBatch, config: AugmentConfig, prng: Prng): MultiCropBatch {
  const { count, channels, height, width } = images;
  const imageLength = channels * height * width;
  if (images.pixels.length !== count * imageLength) {
    throw new Error(`image batch holds ${images.pixels.length} values, expected ${count} x ${channels} x ${height} x ${width}`);
  }
  const sources = Array.from({ length: count }, (_, b): ChwImage => ({ channels, height, width, data: images.pixels.subarray(b * imageLength, (b + 1) * imageLength) }));
  return cropAll(sources, channels, config, prng);
}

/**
 * {@link multiCrop} of 8-bit source images of any size, each cropped from its own full extent as
 * DataAugmentationDINO crops the decoded file, and computed as torchvision computes it on PIL images: uint8 between
 * operations, bytes equal to PIL's for every operation (see image-ops.ts), normalised as ToTensor + Normalize do
 * in float32. Every image must have the same channel count. Same draws, in the same order, as {@link multiCrop}.
 */
export function multiCropImages(images: readonly SourceImage[], config: AugmentConfig, prng: Prng, kernels: ViewKernels = augmentKernels()): MultiCropBatch {
  const channels = images[0]?.channels ?? config.mean.length;
  images.forEach((image, b) => {
    if (image.channels !== channels) throw new Error(`image ${b} of the batch has ${image.channels} channels, image 0 has ${channels}`);
    if (image.data.length !== image.channels * image.height * image.width) {
      throw new Error(`image ${b} holds ${image.data.length} bytes, expected ${image.channels} x ${image.height} x ${image.width}`);
    }
  });
  const { plain } = normalizeTablesOf(config, channels);
  const count = images.length;
  const globalLength = channels * config.globalSize * config.globalSize;
  const localLength = channels * config.localSize * config.localSize;
  const globals = new Float32Array(2 * count * globalLength);
  const locals = new Float32Array(config.localCrops * count * localLength);
  for (let b = 0; b < count; b++) {
    const source = images[b]!;
    const globalOffset = (view: number) => (view * count + b) * globalLength;
    const localOffset = (view: number) => (view * count + b) * localLength;
    const loaded = kernels.load(source, Math.max(config.globalSize, config.localSize));
    if (config.augment === 'none') {
      const whole = { top: 0, left: 0, height: source.height, width: source.width };
      const plainView = (size: number, out: Float32Array, offset: number) => kernels.normalize(kernels.resize(loaded, whole, size, size), plain, out, offset);
      for (let v = 0; v < 2; v++) plainView(config.globalSize, globals, globalOffset(v));
      for (let v = 0; v < config.localCrops; v++) plainView(config.localSize, locals, localOffset(v));
      continue;
    }
    const imagePrng = prng.fork();
    const view = (kind: ViewKind) => drawViewParams(source.height, source.width, kind, config, imagePrng);
    renderView(loaded, view('global1'), config, globals, globalOffset(0), kernels);
    renderView(loaded, view('global2'), config, globals, globalOffset(1), kernels);
    for (let v = 0; v < config.localCrops; v++) renderView(loaded, view('local'), config, locals, localOffset(v), kernels);
  }
  return { batchSize: count, channels, globalSize: config.globalSize, localSize: config.localSize, localCrops: config.localCrops, globals, locals };
}

/**
 * The kernels {@link multiCropImages} runs by default: the WebAssembly SIMD ones where WebAssembly SIMD runs
 * (runtime/data/wasm-kernels.ts), else the JS ones; `DINO_AUGMENT_KERNELS=js` (or `wasm`, which fails where it cannot
 * run) chooses. Both give the same bytes.
 */
export function augmentKernels(): ViewKernels {
  const choice = process.env['DINO_AUGMENT_KERNELS'];
  if (choice === 'js') return JS_VIEW_KERNELS;
  const wasm = wasmViewKernels();
  if (wasm === null && choice === 'wasm') throw new Error('DINO_AUGMENT_KERNELS=wasm, but the WebAssembly kernels cannot run here (runtime/data/wasm/augment.wasm missing, or no WebAssembly SIMD): unset it to use the JS kernels');
  if (choice !== undefined && choice !== 'wasm') throw new Error(`DINO_AUGMENT_KERNELS must be js or wasm, got ${JSON.stringify(choice)}`);
  return wasm ?? JS_VIEW_KERNELS;
}

/** Per channel, value byte -> normalised float32, as ToTensor (v / 255) then Normalize ((x - mean) / std) compute
 * it in float32; bytes at or above `solarizeFrom` are first inverted (255 - v), folding Solarization in. */
function normalizeTables(config: AugmentConfig, channels: number, solarizeFrom: number): Float32Array[] {
  const f = Math.fround;
  return Array.from({ length: channels }, (_, c) => {
    const mean = f(config.mean.length === 1 ? config.mean[0]! : config.mean[c]!);
    const std = f(config.std.length === 1 ? config.std[0]! : config.std[c]!);
    const table = new Float32Array(256);
    for (let v = 0; v < 256; v++) table[v] = f(f(f((v >= solarizeFrom ? 255 - v : v) / 255) - mean) / std);
    return table;
  });
}

/** The byte threshold of PIL's `ImageOps.solarize` for a threshold in [0, 1]: the first v with v / 255 >= it. */
function solarizeThresholdByte(threshold: number): number {
  return Math.ceil(threshold * 255 - 1e-9);
}

/** Everything random about one view, drawn before any pixel is touched (the draws of {@link augmentView}). */
export interface ViewParams {
  /** RandomResizedCrop's box in the source, resized to `size` x `size`. */
  readonly box: CropBox;
  readonly size: number;
  readonly flip: boolean;
  /** ColorJitter when applied: the order of the adjustments (0 brightness, 1 contrast, 2 saturation, 3 hue) and
   * their factors. */
  readonly jitter: JitterParams | null;
  readonly grayscale: boolean;
  /** GaussianBlur's radius (PIL's), when applied. */
  readonly blurSigma: number | null;
  readonly solarize: boolean;
}

/** The parameters of one view of a `height` x `width` source, drawn from `prng` in torchvision's order. */
export function drawViewParams(height: number, width: number, kind: ViewKind, config: AugmentConfig, prng: Prng): ViewParams {
  const isGlobal = kind !== 'local';
  const box = sampleCropBox(height, width, isGlobal ? config.globalScale : config.localScale, config.aspectRatio, prng);
  const flip = prng.uniform() < config.flipP;
  let jitter: ViewParams['jitter'] = null;
  if (prng.uniform() < config.colorJitterP) {
    const order = prng.permutation(4);
    const brightness = prng.range(Math.max(0, 1 - config.brightness), 1 + config.brightness);
    const contrast = prng.range(Math.max(0, 1 - config.contrast), 1 + config.contrast);
    const saturation = prng.range(Math.max(0, 1 - config.saturation), 1 + config.saturation);
    const hue = prng.range(-config.hue, config.hue);
    jitter = { order, brightness, contrast, saturation, hue };
  }
  const grayscale = prng.uniform() < config.grayscaleP;
  const blurP = kind === 'global1' ? config.blurP[0] : kind === 'global2' ? config.blurP[1] : config.blurP[2];
  const blurSigma = prng.uniform() <= blurP ? prng.range(config.blurSigma[0], config.blurSigma[1]) : null;
  const solarize = kind === 'global2' && prng.uniform() < config.solarizeP;
  return { box, size: isGlobal ? config.globalSize : config.localSize, flip, jitter, grayscale, blurSigma, solarize };
}

/**
 * One view of an 8-bit `source` with the given parameters, as DataAugmentationDINO computes it on a PIL image
 * (uint8 between steps, PIL's bytes; see image-ops.ts), normalised into `out` at `offset`
 * (`channels * size * size` floats). `source` must have been loaded by `kernels` (`kernels.load`).
 */
export function renderView(source: SourceImage, view: ViewParams, config: AugmentConfig, out: Float32Array, offset: number, kernels: ViewKernels = JS_VIEW_KERNELS): void {
  // The flip is folded into the resize: exact, as every later step commutes with it.
  const image = kernels.resize(source, view.box, view.size, view.size, { flip: view.flip });
  // A trailing brightness / contrast table is applied before the blur, else folded into the normalisation.
  let pending = colorJitterDeferred(image, view.jitter, view.grayscale, kernels.color);
  if (view.blurSigma !== null) {
    if (pending !== null) kernels.applyTable(image, pending);
    pending = null;
    kernels.blur(image, view.blurSigma);
  }
  const tables = normalizeTablesOf(config, source.channels);
  const normalize = view.solarize ? tables.solarized : tables.plain;
  kernels.normalize(image, pending === null ? normalize : composedNormalizeTables(normalize, pending), out, offset);
}

/** Per channel, byte -> normalize[c][pending[byte]], in scratch tables reused from view to view. */
const composedTables: Float32Array[] = [];
function composedNormalizeTables(normalize: readonly Float32Array[], pending: Uint8Array): Float32Array[] {
  while (composedTables.length < normalize.length) composedTables.push(new Float32Array(256));
  for (let c = 0; c < normalize.length; c++) {
    const from = normalize[c]!, into = composedTables[c]!;
    for (let v = 0; v < 256; v++) into[v] = from[pending[v]!]!;
  }
  return composedTables;
}

/** The normalisation tables of a config, made once per config object and channel count. */
const tablesByConfig = new WeakMap<AugmentConfig, Map<number, { plain: Float32Array[]; solarized: Float32Array[] }>>();
function normalizeTablesOf(config: AugmentConfig, channels: number): { plain: Float32Array[]; solarized: Float32Array[] } {
  let byChannels = tablesByConfig.get(config);
  if (byChannels === undefined) tablesByConfig.set(config, (byChannels = new Map()));
  let tables = byChannels.get(channels);
  if (tables === undefined) {
    checkMeanStd(config, channels);
    tables = { plain: normalizeTables(config, channels, 256), solarized: normalizeTables(config, channels, solarizeThresholdByte(config.solarizeThreshold)) };
    byChannels.set(channels, tables);
  }
  return tables;
}

/** Sizes and normalisation of DINO's evaluation transform; ImageNet's is resize 256, crop 224. */
export interface EvalTransformOptions {
  /** The image's short side is resized to this (torchvision `Resize(resize)`, bicubic). */
  readonly resize: number;
  /** Side of the centred square crop taken next (torchvision `CenterCrop(crop)`); at most `resize`. */
  readonly crop: number;
  /** Per-channel mean and standard deviation (one value, or one per channel). */
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

/**
 * DINO's eval transform (eval_knn.py / eval_linear.py): `Resize(resize, BICUBIC)`, `CenterCrop(crop)`, `ToTensor`,
 * `Normalize(mean, std)`, as torchvision computes it on a PIL image (the resize is PIL's, bytes equal; only the
 * cropped pixels are computed). Writes `channels * crop * crop` floats into `out` at `offset`, on `kernels` (the
 * default: {@link augmentKernels}).
 */
export function evalTransform(image: SourceImage, options: EvalTransformOptions, out: Float32Array, offset = 0, kernels: ViewKernels = augmentKernels()): void {
  const { resize, crop } = options;
  if (!(Number.isInteger(resize) && Number.isInteger(crop) && crop > 0 && crop <= resize)) {
    throw new Error(`eval transform: resize ${resize} and crop ${crop} must be integers with 0 < crop <= resize (DINO: 256 and 224)`);
  }
  if (image.data.length !== image.channels * image.height * image.width) {
    throw new Error(`eval transform: the image holds ${image.data.length} bytes, expected ${image.channels} x ${image.height} x ${image.width}`);
  }
  const length = image.channels * crop * crop;
  if (offset + length > out.length) throw new Error(`eval transform: ${length} values at offset ${offset} do not fit an output of ${out.length}`);
  checkMeanStd(options, image.channels);
  // torchvision's _compute_resized_output_size: the short side becomes `resize`, the long side is truncated.
  const { height, width } = image;
  const outHeight = width <= height ? Math.trunc((resize * height) / width) : resize;
  const outWidth = width <= height ? resize : Math.trunc((resize * width) / height);
  const window = { top: roundHalfEven((outHeight - crop) / 2), left: roundHalfEven((outWidth - crop) / 2), height: crop, width: crop };
  const view = kernels.resize(kernels.load(image, crop), { top: 0, left: 0, height, width }, outHeight, outWidth, { window });
  kernels.normalize(view, normalizeTables({ ...DINO_AUGMENT, mean: options.mean, std: options.std }, image.channels, 256), out, offset);
}

function checkMeanStd(config: { readonly mean: readonly number[]; readonly std: readonly number[] }, channels: number): void {
  if ((config.mean.length !== 1 && config.mean.length !== channels) || config.std.length !== config.mean.length) {
    throw new Error(`mean/std have ${config.mean.length}/${config.std.length} values for ${channels}-channel images: give 1 or ${channels} of each`);
  }
}

function cropAll(sources: readonly ChwImage[], channels: number, config: AugmentConfig, prng: Prng): MultiCropBatch {
  if (config.mean.length !== 1 && config.mean.length !== channels) {
    throw new Error(`augmentation mean/std have ${config.mean.length} values for ${channels}-channel images: give 1 or ${channels}`);
  }
  const count = sources.length;
  const globalLength = channels * config.globalSize * config.globalSize;
  const localLength = channels * config.localSize * config.localSize;
  const globals = new Float32Array(2 * count * globalLength);
  const locals = new Float32Array(config.localCrops * count * localLength);
  for (let b = 0; b < count; b++) {
    const source = sources[b]!;
    const globalOffset = (view: number) => (view * count + b) * globalLength;
    const localOffset = (view: number) => (view * count + b) * localLength;
    if (config.augment === 'none') {
      for (let v = 0; v < 2; v++) plainView(source, config.globalSize, config, globals, globalOffset(v));
      for (let v = 0; v < config.localCrops; v++) plainView(source, config.localSize, config, locals, localOffset(v));
      continue;
    }
    const imagePrng = prng.fork();
    augmentView(source, 'global1', config, imagePrng, globals, globalOffset(0));
    augmentView(source, 'global2', config, imagePrng, globals, globalOffset(1));
    for (let v = 0; v < config.localCrops; v++) augmentView(source, 'local', config, imagePrng, locals, localOffset(v));
  }
  return { batchSize: count, channels, globalSize: config.globalSize, localSize: config.localSize, localCrops: config.localCrops, globals, locals };
}
