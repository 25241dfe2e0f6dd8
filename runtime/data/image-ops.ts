/**
 * Pixel operations behind multi-crop augmentation, on float32 channel-first images with values in [0, 1].
 *
 * They follow what DINO's pipeline does through PIL / torchvision, computed in float instead of uint8:
 * - {@link resizeBicubic}: PIL's convolution resampling (bicubic kernel a = -0.5, support widened by the scale
 *   factor when shrinking, i.e. antialiased), horizontal pass then vertical, each clipped to [0, 1] as PIL clips
 *   to uint8; samples only inside the crop box, as torchvision crops before it resizes.
 * - {@link gaussianBlur}: PIL's `GaussianBlur(radius=sigma)` as Pillow computes it (checked against Pillow 9.4):
 *   not a sampled Gaussian but three extended box blurs whose combined variance is sigma^2, along rows then
 *   columns, edges replicated. The effective kernel is a bell reaching 3 (floor(r) + 1) pixels each side
 *   (r = the box radius {@link boxBlurRadius}; 3 px for sigma up to about 1.5, 6 px from there to 2): the kernel
 *   size DINO's blur really had.
 *   A sampled Gaussian truncated at 3 sigma differs from PIL by up to ~10 levels of 255 at sigma 2; this by <= 3.
 * - colour ops follow torchvision's `adjust_*` functional definitions; grayscale uses PIL's (ITU-R 601-2) weights.
 */

/** A float32 image, channel-first: `data[c * height * width + y * width + x]`. */
export interface ChwImage {
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly data: Float32Array;
}

/** A crop rectangle in pixels: top row, left column, height, width (torchvision's `i, j, h, w`). */
export interface CropBox {
  readonly top: number;
  readonly left: number;
  readonly height: number;
  readonly width: number;
}

/** Luma weights PIL uses for `convert('L')` (ITU-R 601-2). */
const LUMA_R = 0.299;
const LUMA_G = 0.587;
const LUMA_B = 0.114;

const clamp01 = (x: number) => (x < 0 ? 0 : x > 1 ? 1 : x);

/** PIL's bicubic kernel (a = -0.5). */
function bicubic(x: number): number {
  const a = -0.5;
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}

/** Per output pixel: first input index and normalised weights (PIL's coefficient computation, box-clamped). */
interface Coefficients {
  readonly taps: number;
  readonly first: Int32Array;
  readonly count: Int32Array;
  readonly weights: Float64Array;
}

function resampleCoefficients(inStart: number, inEnd: number, outSize: number): Coefficients {
  const scale = (inEnd - inStart) / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 2 * filterScale;
  const taps = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * taps);
  for (let o = 0; o < outSize; o++) {
    const center = inStart + (o + 0.5) * scale;
    const lo = Math.max(Math.floor(center - support + 0.5), inStart);
    const hi = Math.min(Math.floor(center + support + 0.5), inEnd);
    let total = 0;
    for (let k = 0; k < hi - lo; k++) {
      const w = bicubic((lo + k - center + 0.5) / filterScale);
      weights[o * taps + k] = w;
      total += w;
    }
    if (total !== 0) for (let k = 0; k < hi - lo; k++) weights[o * taps + k]! /= total;
    first[o] = lo;
    count[o] = hi - lo;
  }
  return { taps, first, count, weights };
}

/**
 * Crops `box` out of `src` and resizes it to `outHeight` x `outWidth` with PIL-style antialiased bicubic
 * resampling (see the module comment). Writes into `out` when given (length `channels * outHeight * outWidth`).
 */
export function resizeBicubic(
  src: ChwImage,
  box: CropBox,
  outHeight: number,
  outWidth: number,
  out?: Float32Array,
): ChwImage {
  const { channels, width: inWidth } = src;
  const inPlane = src.height * inWidth;
  const h = resampleCoefficients(box.left, box.left + box.width, outWidth);
  const v = resampleCoefficients(box.top, box.top + box.height, outHeight);
  // Horizontal pass over the crop's rows only: channels x box.height x outWidth.
  const rows = box.height;
  const mid = new Float32Array(channels * rows * outWidth);
  const srcData = src.data;
  const hFirst = h.first, hCount = h.count, hWeights = h.weights, hTaps = h.taps;
  for (let c = 0; c < channels; c++) {
    for (let r = 0; r < rows; r++) {
      const srcRow = c * inPlane + (box.top + r) * inWidth;
      const midRow = (c * rows + r) * outWidth;
      for (let x = 0; x < outWidth; x++) {
        const base = x * hTaps;
        const from = srcRow + hFirst[x]!;
        const n = hCount[x]!;
        let sum = 0;
        for (let k = 0; k < n; k++) sum += srcData[from + k]! * hWeights[base + k]!;
        mid[midRow + x] = sum < 0 ? 0 : sum > 1 ? 1 : sum;
      }
    }
  }
  // Vertical pass.
  const outPlane = outHeight * outWidth;
  const result = out ?? new Float32Array(channels * outPlane);
  const vFirst = v.first, vCount = v.count, vWeights = v.weights, vTaps = v.taps;
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < outHeight; y++) {
      const base = y * vTaps;
      const firstRow = vFirst[y]! - box.top;
      const n = vCount[y]!;
      const outRow = c * outPlane + y * outWidth;
      const midStart = (c * rows + firstRow) * outWidth;
      for (let x = 0; x < outWidth; x++) {
        let sum = 0;
        for (let k = 0, m = midStart + x; k < n; k++, m += outWidth) sum += mid[m]! * vWeights[base + k]!;
        result[outRow + x] = sum < 0 ? 0 : sum > 1 ? 1 : sum;
      }
    }
  }
  return { channels, height: outHeight, width: outWidth, data: result };
}

/** Mirrors every row in place (left-right flip). */
export function flipHorizontal(image: ChwImage): void {
  const { channels, height, width, data } = image;
  for (let row = 0; row < channels * height; row++) {
    const base = row * width;
    for (let a = base, b = base + width - 1; a < b; a++, b--) {
      const t = data[a]!;
      data[a] = data[b]!;
      data[b] = t;
    }
  }
}

/** Box blurs PIL chains to approximate one Gaussian. */
const BLUR_PASSES = 3;

/**
 * Radius of each of PIL's three box blurs for a Gaussian of standard deviation `sigma` ("extended box blur",
 * Gwosdek et al. 2011, as Pillow's `_gaussian_blur_radius`): a box of integer half-width l plus a fractional
 * weight on the two next pixels, chosen so the three boxes together have variance sigma^2 exactly.
 */
export function boxBlurRadius(sigma: number): number {
  const variance = (sigma * sigma) / BLUR_PASSES;
  const l = Math.floor((Math.sqrt(12 * variance + 1) - 1) / 2);
  const fraction = ((2 * l + 1) * (l * (l + 1) - 3 * variance)) / (6 * (variance - (l + 1) * (l + 1)));
  return l + fraction;
}

/**
 * PIL's `ImageFilter.GaussianBlur(radius=sigma)`, in place: three passes of an extended box blur of radius
 * {@link boxBlurRadius} along rows, then three along columns, edge pixels replicated. Each pass's box spans
 * 2 floor(r) + 3 pixels, so the blur reaches 3 (floor(r) + 1) pixels each side (6 at sigma 2).
 */
export function gaussianBlur(image: ChwImage, sigma: number): void {
  if (!(sigma > 0)) return;
  const radius = boxBlurRadius(sigma);
  const whole = Math.floor(radius);
  const inner = 1 / (2 * radius + 1); // weight of each of the 2 whole + 1 central pixels
  const outer = (1 - (2 * whole + 1) * inner) / 2; // weight of each of the two pixels just beyond
  const { channels, height, width, data } = image;
  const pad = whole + 1;
  // A line is copied into `a` between `pad` replicated edge values each side; passes alternate a -> b -> a -> b.
  const a = new Float64Array(Math.max(width, height) + 2 * pad);
  const b = new Float64Array(a.length);
  for (let c = 0; c < channels; c++) {
    const plane = c * height * width;
    for (let y = 0; y < height; y++) {
      const row = plane + y * width;
      for (let x = 0; x < width; x++) a[pad + x] = data[row + x]!;
      boxPass(a, b, width, pad, whole, inner, outer);
      boxPass(b, a, width, pad, whole, inner, outer);
      boxPass(a, b, width, pad, whole, inner, outer);
      for (let x = 0; x < width; x++) data[row + x] = b[pad + x]!;
    }
    for (let x = 0; x < width; x++) {
      for (let y = 0; y < height; y++) a[pad + y] = data[plane + y * width + x]!;
      boxPass(a, b, height, pad, whole, inner, outer);
      boxPass(b, a, height, pad, whole, inner, outer);
      boxPass(a, b, height, pad, whole, inner, outer);
      for (let y = 0; y < height; y++) data[plane + y * width + x] = b[pad + y]!;
    }
  }
}

/** One extended box blur of the line `from[pad .. pad + length)` into `to`, with a running sum. */
function boxPass(from: Float64Array, to: Float64Array, length: number, pad: number, whole: number, inner: number, outer: number): void {
  const first = from[pad]!, last = from[pad + length - 1]!;
  for (let k = 0; k < pad; k++) {
    from[k] = first;
    from[pad + length + k] = last;
  }
  let sum = 0;
  for (let k = -whole; k <= whole; k++) sum += from[pad + k]!;
  for (let x = pad; x < pad + length; x++) {
    to[x] = inner * sum + outer * (from[x - pad]! + from[x + pad]!);
    sum += from[x + whole + 1]! - from[x - whole]!;
  }
}

/** Multiplies every value by `factor`, clipped to [0, 1] (torchvision `adjust_brightness`). */
export function adjustBrightness(image: ChwImage, factor: number): void {
  const data = image.data;
  for (let i = 0; i < data.length; i++) data[i] = clamp01(data[i]! * factor);
}

/** Blends with the mean gray level of the whole image (torchvision `adjust_contrast`). */
export function adjustContrast(image: ChwImage, factor: number): void {
  const plane = image.height * image.width;
  const data = image.data;
  let sum = 0;
  if (image.channels === 3) {
    for (let p = 0; p < plane; p++) sum += LUMA_R * data[p]! + LUMA_G * data[plane + p]! + LUMA_B * data[2 * plane + p]!;
  } else {
    for (let p = 0; p < plane; p++) sum += data[p]!;
  }
  const offset = (1 - factor) * (sum / plane);
  for (let i = 0; i < data.length; i++) data[i] = clamp01(factor * data[i]! + offset);
}

/** Blends each pixel with its own gray level (torchvision `adjust_saturation`); a no-op for 1 channel. */
export function adjustSaturation(image: ChwImage, factor: number): void {
  if (image.channels !== 3) return;
  const plane = image.height * image.width;
  const data = image.data;
  for (let p = 0; p < plane; p++) {
    const r = data[p]!, g = data[plane + p]!, b = data[2 * plane + p]!;
    const gray = (1 - factor) * (LUMA_R * r + LUMA_G * g + LUMA_B * b);
    data[p] = clamp01(factor * r + gray);
    data[plane + p] = clamp01(factor * g + gray);
    data[2 * plane + p] = clamp01(factor * b + gray);
  }
}

/** Rotates the hue by `shift` turns, in [-0.5, 0.5] (torchvision `adjust_hue`, via HSV); a no-op for 1 channel. */
export function adjustHue(image: ChwImage, shift: number): void {
  if (image.channels !== 3) return;
  const plane = image.height * image.width;
  const data = image.data;
  for (let p = 0; p < plane; p++) {
    const r = data[p]!, g = data[plane + p]!, b = data[2 * plane + p]!;
    const max = Math.max(r, g, b);
    const min = Math.min(r, g, b);
    const chroma = max - min;
    if (chroma === 0) continue; // gray: hue undefined, rotation changes nothing
    let hue: number;
    if (max === r) hue = (g - b) / chroma;
    else if (max === g) hue = 2 + (b - r) / chroma;
    else hue = 4 + (r - g) / chroma;
    hue = hue / 6 + shift;
    hue -= Math.floor(hue); // wrap to [0, 1)
    // HSV -> RGB with value = max, saturation = chroma / max.
    const h6 = hue * 6;
    const sector = Math.floor(h6) % 6;
    const f = h6 - Math.floor(h6);
    const pv = max - chroma;
    const qv = max - chroma * f;
    const tv = max - chroma * (1 - f);
    let nr: number, ng: number, nb: number;
    switch (sector) {
      case 0: nr = max; ng = tv; nb = pv; break;
      case 1: nr = qv; ng = max; nb = pv; break;
      case 2: nr = pv; ng = max; nb = tv; break;
      case 3: nr = pv; ng = qv; nb = max; break;
      case 4: nr = tv; ng = pv; nb = max; break;
      default: nr = max; ng = pv; nb = qv;
    }
    data[p] = nr;
    data[plane + p] = ng;
    data[2 * plane + p] = nb;
  }
}

/** Replaces RGB by its PIL luma in all three channels (RandomGrayscale keeps 3 channels); a no-op for 1 channel. */
export function toGrayscale(image: ChwImage): void {
  if (image.channels !== 3) return;
  const plane = image.height * image.width;
  const data = image.data;
  for (let p = 0; p < plane; p++) {
    const gray = LUMA_R * data[p]! + LUMA_G * data[plane + p]! + LUMA_B * data[2 * plane + p]!;
    data[p] = gray;
    data[plane + p] = gray;
    data[2 * plane + p] = gray;
  }
}

/** Inverts every value at or above `threshold` (PIL `ImageOps.solarize`: `v < t ? v : 1 - v`). */
export function solarize(image: ChwImage, threshold: number): void {
  const t = Math.fround(threshold); // compare in float32, so a pixel of exactly 128/255 counts as >= 128/255
  const data = image.data;
  for (let i = 0; i < data.length; i++) if (data[i]! >= t) data[i] = 1 - data[i]!;
}

// ---------------------------------------------------------------------------------------------------------------
// 8-bit operations: DataAugmentationDINO as PIL computes it on uint8 images (Pillow 9.4, torchvision 0.14).
//
// torchvision's transforms on a PIL image round to uint8 after every operation (and PIL inside some of them);
// these reproduce that integer arithmetic, so they give PIL's bytes, not an approximation of them:
// - {@link resizeBytes}: Resample.c's fixed-point convolution (22-bit coefficients, rounded and clipped to uint8
//   after the horizontal pass and after the vertical pass);
// - {@link gaussianBlurBytes}: BoxBlur.c's three extended box blurs per direction, 24-bit fixed point, a uint8
//   line after each pass;
// - colour adjustments: ImageEnhance's `Image.blend(degenerate, image, factor)` in float32, truncated to uint8;
//   hue through PIL's uint8 HSV (Convert.c's rgb2hsv / hsv2rgb, float32 as C computes it);
// - grayscale: PIL's `convert('L')`, (19595 R + 38470 G + 7471 B + 2^15) >> 16.
// Working in uint8 is also what makes them fast: one byte per value, lookup tables for the pointwise colour ops.
// ---------------------------------------------------------------------------------------------------------------

/** An 8-bit image, channel-first: `data[c * height * width + y * width + x]`, values 0-255. */
export interface ByteImage {
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly data: Uint8Array;
}

/** Fractional bits of PIL's 8-bit resampling coefficients (Resample.c PRECISION_BITS = 32 - 8 - 2). */
const RESAMPLE_BITS = 22;
const RESAMPLE_ONE = 1 << RESAMPLE_BITS;
const RESAMPLE_HALF = 1 << (RESAMPLE_BITS - 1);

/** PIL's 8-bit resampling coefficients for `inSize` input pixels onto `outSize`: per output pixel, its first input
 * pixel and `taps` fixed-point weights (Resample.c `precompute_coeffs` + `normalize_coeffs_8bpc`). Every output
 * gets exactly `taps` weights, zero-padded, its window moved left where it would pass the input's end (zero weights
 * change no sum), so that the kernels below run a fixed, unrolled number of taps. */
export interface FixedCoefficients {
  readonly taps: number;
  readonly first: Int32Array;
  readonly weights: Int32Array;
}

function fixedCoefficients(inSize: number, outSize: number): FixedCoefficients {
  const scale = inSize / outSize;
  const filterScale = scale < 1 ? 1 : scale;
  const support = 2 * filterScale; // bicubic support 2, widened when shrinking (antialiasing)
  const inverse = 1 / filterScale;
  // Each output's input range [lo, hi), as PIL rounds it; the kernels run the longest one's length for every output
  // (PIL's buffer holds 2 ceil(support) + 1, up to two more taps, always zero).
  const lows = new Int32Array(outSize);
  const highs = new Int32Array(outSize);
  let taps = 1;
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    lows[o] = Math.max(Math.trunc(center - support + 0.5), 0);
    highs[o] = Math.min(Math.trunc(center + support + 0.5), inSize);
    taps = Math.max(taps, highs[o]! - lows[o]!);
  }
  const first = new Int32Array(outSize);
  const weights = new Int32Array(outSize * taps);
  const raw = new Float64Array(taps);
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const lo = lows[o]!, hi = highs[o]!;
    let total = 0;
    for (let k = 0; k < hi - lo; k++) {
      const w = bicubic((k + lo - center + 0.5) * inverse);
      raw[k] = w;
      total += w;
    }
    const start = Math.min(lo, inSize - taps); // window [start, start + taps) holds [lo, hi)
    for (let k = 0; k < hi - lo; k++) {
      const w = total !== 0 ? raw[k]! / total : raw[k]!;
      weights[o * taps + lo - start + k] = w < 0 ? Math.trunc(-0.5 + w * RESAMPLE_ONE) : Math.trunc(0.5 + w * RESAMPLE_ONE);
    }
    first[o] = start;
  }
  return { taps, first, weights };
}

/** Fixed-point sums at or above this clip to 255 (PIL's clip8). */
const RESAMPLE_MAX = 255 * RESAMPLE_ONE;

/**
 * The two resampling passes over a plane, taps unrolled (V8 runs a short loop of variable length about three
 * times slower than the same multiply-adds written out), made once per tap count. Sums stay below 2^31 (255
 * times the positive weights, about 1.1 x 2^22), so int32 arithmetic is exact.
 * Each kernel does every channel at once (planes `srcPlane` / `dstPlane` apart), sharing the weight loads.
 * They are made with `new Function` (code generation from strings, which Node allows unless started with
 * --disallow-code-generation-from-strings).
 * Horizontal: `lines` rows of `src` from `srcStart` (row step `srcStride`), output o of a row reading taps from
 * pixel `first[o]`, pixels `pixelStep` bytes apart (1 channel-first, the channel count interleaved), channels
 * `srcPlane` apart; written from `dstStart`, `dstStep` apart (-1 mirrors), rows `dstStride` apart, channel-first.
 * It runs output by output, down every line, so that an output's weights are loaded once into locals (measured
 * ~0.9x the resize time of line by line, which reloads them on every line).
 * Vertical: output row y reads rows `first[y]`.. of `src` (`width` bytes each, from `srcStart`), all its
 * outputs sharing one set of weights, held in locals; rows written `width` apart from `dstStart`.
 */
type HorizontalKernel = (
  src: Uint8Array, srcStart: number, srcStride: number, srcPlane: number, lines: number, first: Int32Array, weights: Int32Array,
  dst: Uint8Array, dstStart: number, dstStep: number, dstStride: number, dstPlane: number, outputs: number,
) => void;
type VerticalKernel = (
  src: Uint8Array, srcStart: number, width: number, srcPlane: number, first: Int32Array, weights: Int32Array,
  dst: Uint8Array, dstStart: number, dstPlane: number, outputs: number,
) => void;

const horizontalKernels = new Map<number, HorizontalKernel>();
const verticalKernels = new Map<number, VerticalKernel>();
const clipSource = (sum: string) => `${sum} <= 0 ? 0 : ${sum} >= ${RESAMPLE_MAX} ? 255 : ${sum} >> ${RESAMPLE_BITS}`;

function horizontalKernel(taps: number, channels: number, pixelStep: number): HorizontalKernel {
  const key = (taps * 16 + channels) * 16 + pixelStep;
  let kernel = horizontalKernels.get(key);
  if (kernel === undefined) {
    const weights = Array.from({ length: taps }, (_, k) => `const w${k} = weights[b + ${k}];`).join(' ');
    const perChannel = Array.from({ length: channels }, (_, c) => {
      const terms = Array.from({ length: taps }, (_, k) => `Math.imul(src[i${c} + ${k * pixelStep}], w${k})`).join(' + ');
      return `const i${c} = i + ${c} * srcPlane; const sum${c} = (${RESAMPLE_HALF} + ${terms}) | 0; dst[d + ${c} * dstPlane] = ${clipSource(`sum${c}`)};`;
    }).join('\n');
    kernel = new Function('src', 'srcStart', 'srcStride', 'srcPlane', 'lines', 'first', 'weights', 'dst', 'dstStart', 'dstStep', 'dstStride', 'dstPlane', 'outputs', `
      for (let o = 0, b = 0; o < outputs; o++, b += ${taps}) {
        ${weights}
        let i = srcStart + first[o] * ${pixelStep};
        for (let line = 0, d = dstStart + o * dstStep; line < lines; line++, i += srcStride, d += dstStride) {
          ${perChannel}
        }
      }`) as HorizontalKernel;
    horizontalKernels.set(key, kernel);
  }
  return kernel;
}

function verticalKernel(taps: number, channels: number): VerticalKernel {
  const key = taps * 16 + channels;
  let kernel = verticalKernels.get(key);
  if (kernel === undefined) {
    const loads = Array.from({ length: taps }, (_, k) => `const w${k} = weights[b + ${k}];`).join(' ');
    // One start index per (channel, tap) row, so that each load inside the x loop is a start plus x.
    const rowStarts = Array.from({ length: channels }, (_, c) => Array.from({ length: taps }, (_, k) => `const r${c}_${k} = row + ${c} * srcPlane + ${k} * width;`).join(' ')).join(' ');
    const perChannel = Array.from({ length: channels }, (_, c) => {
      const terms = Array.from({ length: taps }, (_, k) => `Math.imul(src[r${c}_${k} + x], w${k})`).join(' + ');
      return `const sum${c} = (${RESAMPLE_HALF} + ${terms}) | 0; dst[d + x + ${c} * dstPlane] = ${clipSource(`sum${c}`)};`;
    }).join('\n');
    kernel = new Function('src', 'srcStart', 'width', 'srcPlane', 'first', 'weights', 'dst', 'dstStart', 'dstPlane', 'outputs', `
      for (let y = 0, b = 0; y < outputs; y++, b += ${taps}) {
        ${loads}
        const row = srcStart + first[y] * width;
        ${rowStarts}
        const d = dstStart + y * width;
        for (let x = 0; x < width; x++) {
          ${perChannel}
        }
      }`) as VerticalKernel;
    verticalKernels.set(key, kernel);
  }
  return kernel;
}

/**
 * How `box` of a source is resized to `outHeight` x `outWidth` and cut to `window` (PIL's coefficients): the
 * horizontal pass computes `window.width` outputs over `rows` crop rows starting at crop row `rowFirst`; the
 * vertical pass's `first` indices count from that row. What {@link resizeBytes} runs, whatever the kernels.
 */
export interface ResizePlan {
  readonly window: CropBox;
  /** First crop row the window's outputs read, and how many crop rows the horizontal pass computes. */
  readonly rowFirst: number;
  readonly rows: number;
  /** Per window column: first source column (relative to the box) and `taps` weights. */
  readonly horizontal: FixedCoefficients;
  /** Per window row: first crop row relative to `rowFirst`, and `taps` weights. */
  readonly vertical: FixedCoefficients;
}

export function resizePlan(box: CropBox, outHeight: number, outWidth: number, window: CropBox = { top: 0, left: 0, height: outHeight, width: outWidth }): ResizePlan {
  const h = fixedCoefficients(box.width, outWidth);
  const v = fixedCoefficients(box.height, outHeight);
  // Crop rows that the window's output rows read: the horizontal pass computes only these (as PIL does).
  const rowFirst = v.first[window.top]!;
  const rows = v.first[window.top + window.height - 1]! + v.taps - rowFirst;
  // Offsets relative to the window's first output, so the kernels index `first` and `weights` from 0.
  return {
    window, rowFirst, rows,
    horizontal: {
      taps: h.taps,
      first: h.first.subarray(window.left, window.left + window.width),
      weights: h.weights.subarray(window.left * h.taps, (window.left + window.width) * h.taps),
    },
    vertical: {
      taps: v.taps,
      first: v.first.subarray(window.top, window.top + window.height).map((f) => f - rowFirst),
      weights: v.weights.subarray(window.top * v.taps, (window.top + window.height) * v.taps),
    },
  };
}

/** Scratch for the horizontal pass, grown as needed (each worker thread has its own module instance). */
let resizeScratch = new Uint8Array(0);

/**
 * `image.crop(box).resize((outWidth, outHeight), BICUBIC)` as Pillow computes it, bytes equal, from a
 * channel-first source or (`interleaved`) one in a decoder's pixel order, always written channel-first; optionally
 * mirrored left-right (exact: the flip commutes with every later step) and restricted to the `window` of the
 * resized image (exact too: each output pixel depends only on its own coefficients; CenterCrop after Resize).
 * Writes into `out` when given (length `channels * window.height * window.width`).
 */
export function resizeBytes(
  src: ByteImage & { readonly interleaved?: boolean },
  box: CropBox,
  outHeight: number,
  outWidth: number,
  options: { readonly flip?: boolean; readonly window?: CropBox; readonly out?: Uint8Array } = {},
): ByteImage {
  const { channels, width: inWidth } = src;
  const flip = options.flip ?? false;
  const { window, rowFirst, rows, horizontal: h, vertical: v } = resizePlan(box, outHeight, outWidth, options.window);
  const midWidth = window.width;
  const midPlane = rows * midWidth;
  if (resizeScratch.length < channels * midPlane) resizeScratch = new Uint8Array(channels * midPlane);
  const mid = resizeScratch;
  const outPlane = window.height * window.width;
  const result = options.out ?? new Uint8Array(channels * outPlane);
  // Every channel in one pass when there are at most 4 (RGB, gray), else one channel at a time.
  const fused = channels <= 4 ? channels : 1;
  // Interleaved sources (a decoder's pixel order) are read in place: no channel-first copy of the whole image.
  const interleaved = src.interleaved === true && channels > 1;
  const pixelStep = interleaved ? channels : 1;
  const horizontal = horizontalKernel(h.taps, fused, pixelStep);
  const vertical = verticalKernel(v.taps, fused);
  const inPlane = interleaved ? 1 : src.height * inWidth;
  const rowStride = inWidth * pixelStep;
  for (let c = 0; c < channels; c += fused) {
    const srcStart = c * inPlane + (box.top + rowFirst) * rowStride + box.left * pixelStep;
    // Horizontal over the needed crop rows, mirrored by writing right to left; then vertical.
    horizontal(src.data, srcStart, rowStride, inPlane, rows, h.first, h.weights, mid, c * midPlane + (flip ? midWidth - 1 : 0), flip ? -1 : 1, midWidth, midPlane, midWidth);
    vertical(mid, c * midPlane, midWidth, midPlane, v.first, v.weights, result, c * outPlane, outPlane, window.height);
  }
  return { channels, height: window.height, width: window.width, data: result };
}

/** Pillow's `_gaussian_blur_radius` in float32, as C computes it: the radius of each of the three box blurs. */
function boxBlurRadiusF32(sigma: number): number {
  const f = Math.fround;
  const r = f(sigma);
  const sigma2 = f(f(r * r) / BLUR_PASSES);
  const boxLength = f(Math.sqrt(12.0 * sigma2 + 1.0));
  const l = f(Math.floor((boxLength - 1.0) / 2.0));
  let a = f(f(2 * l + 1) * f(f(l * f(l + 1)) - f(3 * sigma2)));
  a = f(a / f(6 * f(sigma2 - f(f(l + 1) * f(l + 1)))));
  return f(l + a);
}

/**
 * BoxBlur.c's pass weights for PIL's GaussianBlur(sigma): the whole radius of each box, the weight of each of its
 * 2 radius + 1 pixels (`ww`) and of the two next ones (`fw`), out of 2^24; null when the blur changes nothing.
 */
export function boxBlurWeights(sigma: number): { readonly radius: number; readonly ww: number; readonly fw: number } | null {
  const radiusF = boxBlurRadiusF32(sigma);
  if (radiusF === 0) return null;
  const radius = Math.trunc(radiusF);
  const ww = Math.trunc(Math.fround(16777216 / Math.fround(Math.fround(radiusF * 2) + 1)));
  const fw = Math.trunc((16777216 - (radius * 2 + 1) * ww) / 2);
  return { radius, ww, fw };
}

let blurLineIn = new Int32Array(0);
let blurLineOut = new Int32Array(0);
let blurPlanes = new Uint8Array(0);
let blurRowA = new Uint8Array(0);
let blurRowB = new Uint8Array(0);
let blurColumnSums = new Int32Array(0);

/**
 * PIL's `ImageFilter.GaussianBlur(radius=sigma)` on an 8-bit image, in place, bytes equal to Pillow's: three
 * extended box blurs along rows, then three along columns (BoxBlur.c: 24-bit fixed-point weights, edge pixels
 * replicated, a uint8 line after each pass). Column passes run a row at a time, every column's window sum side by
 * side, so that memory is read in order.
 */
export function gaussianBlurBytes(image: ByteImage, sigma: number): void {
  const weights = boxBlurWeights(sigma);
  if (weights === null) return;
  const { radius, ww, fw } = weights;
  const { channels, height, width, data } = image;
  const pad = radius + 1;
  if (blurLineIn.length < width + 2 * pad) {
    blurLineIn = new Int32Array(width + 2 * pad);
    blurLineOut = new Int32Array(width + 2 * pad);
  }
  if (blurRowA.length < width) {
    blurRowA = new Uint8Array(width);
    blurRowB = new Uint8Array(width);
  }
  const plane = height * width;
  if (blurPlanes.length < 2 * plane) blurPlanes = new Uint8Array(2 * plane);
  if (blurColumnSums.length < width) blurColumnSums = new Int32Array(width);
  const a = blurLineIn, b = blurLineOut;
  const first = blurPlanes.subarray(0, plane), second = blurPlanes.subarray(plane, 2 * plane);
  for (let c = 0; c < channels; c++) {
    const channel = data.subarray(c * plane, (c + 1) * plane);
    if (radius <= 1) {
      // DINO's sigmas (up to 2) give whole radius 0 or 1: windows written out, int32 arithmetic throughout.
      for (let y = 0; y < height; y++) rowPassesNarrow(channel, y * width, width, blurRowA, blurRowB, radius, ww, fw);
      if (radius === 0) {
        // Three-row windows: whole rows at a time read memory in order (measured faster than per column here).
        columnPassRadius0(channel, first, width, height, ww, fw);
        columnPassRadius0(first, second, width, height, ww, fw);
        columnPassRadius0(second, channel, width, height, ww, fw);
        continue;
      }
      // Five-row windows: per column, sliding through locals (one load per output instead of five; measured faster),
      // channel -> first (transposed) -> second (transposed) -> channel.
      for (let x = 0; x < width; x++) {
        const t = x * height;
        slidingPassStrided(channel, x, width, first, t, 1, height, radius, ww, fw);
        slidingPass(first, t, second, t, height, radius, ww, fw);
        slidingPassStrided(second, t, 1, channel, x, width, height, radius, ww, fw);
      }
      continue;
    }
    for (let y = 0; y < height; y++) {
      const row = y * width;
      for (let x = 0; x < width; x++) a[pad + x] = channel[row + x]!;
      boxPassBytes(a, b, width, pad, radius, ww, fw);
      boxPassBytes(b, a, width, pad, radius, ww, fw);
      boxPassBytes(a, b, width, pad, radius, ww, fw);
      for (let x = 0; x < width; x++) channel[row + x] = b[pad + x]!;
    }
    columnBoxPass(channel, first, width, height, radius, ww, fw, blurColumnSums);
    columnBoxPass(first, second, width, height, radius, ww, fw, blurColumnSums);
    columnBoxPass(second, channel, width, height, radius, ww, fw, blurColumnSums);
  }
}

/**
 * The three row passes of radius 0 or 1 over `row[start .. start + width)`, in place, through the byte lines
 * `a` and `b`: row -> a -> b -> row (see {@link slidingPass}).
 */
function rowPassesNarrow(row: Uint8Array, start: number, width: number, a: Uint8Array, b: Uint8Array, radius: number, ww: number, fw: number): void {
  slidingPass(row, start, a, 0, width, radius, ww, fw);
  slidingPass(a, 0, b, 0, width, radius, ww, fw);
  slidingPass(b, 0, row, start, width, radius, ww, fw);
}

/**
 * One extended box pass of radius 0 or 1 over the `length` bytes `src[from ..]` into `dst[to ..]`, edge values
 * replicated: the window slides through locals, one load per output. Sums of weights times values stay below 2^32
 * (the weights total 2^24), so they wrap in int32 and `>>> 24` reads them back unsigned: exact, and no float
 * arithmetic.
 */
function slidingPass(src: Uint8Array, from: number, dst: Uint8Array, to: number, length: number, radius: number, ww: number, fw: number): void {
  slidingPassStrided(src, from, 1, dst, to, 1, length, radius, ww, fw);
}

/** {@link slidingPass} over `src[from + k * srcStep]` into `dst[to + k * dstStep]`, k < length. */
function slidingPassStrided(src: Uint8Array, from: number, srcStep: number, dst: Uint8Array, to: number, dstStep: number, length: number, radius: number, ww: number, fw: number): void {
  const last = from + (length - 1) * srcStep;
  let left2 = src[from]!, left = left2, centre = left2, right = src[length > 1 ? from + srcStep : from]!;
  let ahead = from + 2 * srcStep; // the next value to load, clamped to the last
  if (radius === 0) {
    for (let x = 0, d = to; x < length; x++, d += dstStep, ahead += srcStep) {
      const next = src[ahead <= last ? ahead : last]!;
      dst[d] = ((Math.imul(centre, ww) + Math.imul(left + right, fw) + 8388608) | 0) >>> 24;
      left = centre; centre = right; right = next;
    }
    return;
  }
  for (let x = 0, d = to; x < length; x++, d += dstStep, ahead += srcStep) {
    const right2 = src[ahead <= last ? ahead : last]!;
    dst[d] = ((Math.imul(left + centre + right, ww) + Math.imul(left2 + right2, fw) + 8388608) | 0) >>> 24;
    left2 = left; left = centre; centre = right; right = right2;
  }
}

/** One column pass of radius 0 over a `width` x `height` plane, a row at a time (memory read in order), rows
 * clamped at the edges; int32 arithmetic as in {@link slidingPass}. */
function columnPassRadius0(src: Uint8Array, dst: Uint8Array, width: number, height: number, ww: number, fw: number): void {
  const lastRow = (height - 1) * width;
  for (let y = 0, mid = 0; y < height; y++, mid += width) {
    const up = mid === 0 ? 0 : mid - width, down = mid === lastRow ? lastRow : mid + width;
    for (let x = 0; x < width; x++) dst[mid + x] = ((Math.imul(src[mid + x]!, ww) + Math.imul(src[up + x]! + src[down + x]!, fw) + 8388608) | 0) >>> 24;
  }
}

/** One of BoxBlur.c's line passes over `from[pad .. pad + length)` into `to`, for whole radius 2 or more (sigmas
 * above DINO's 2): a running window of 2 radius + 1 pixels weighted `ww` plus the two next ones weighted `fw`
 * (weights / 2^24), rounded to uint8. */
function boxPassBytes(from: Int32Array, to: Int32Array, length: number, pad: number, radius: number, ww: number, fw: number): void {
  const firstValue = from[pad]!, lastValue = from[pad + length - 1]!;
  for (let k = 0; k < pad; k++) {
    from[k] = firstValue;
    from[pad + length + k] = lastValue;
  }
  const end = pad + length;
  let sum = 0;
  for (let k = -radius; k <= radius; k++) sum += from[pad + k]!;
  for (let x = pad; x < end; x++) {
    // < 2^32: exact in a double; `>>> 24` truncates as C's unsigned shift does.
    to[x] = (sum * ww + (from[x - pad]! + from[x + pad]!) * fw + 8388608) >>> 24;
    sum += from[x + radius + 1]! - from[x - radius]!;
  }
}

/** {@link boxPassBytes} down every column of a `width` x `height` plane at once, rows clamped at the edges. */
function columnBoxPass(src: Uint8Array, dst: Uint8Array, width: number, height: number, radius: number, ww: number, fw: number, sums: Int32Array): void {
  const last = height - 1;
  const rowAt = (y: number) => (y < 0 ? 0 : y > last ? last : y) * width;
  // The window of the row before row 0, [-radius - 1, radius - 1].
  sums.fill(0, 0, width);
  for (let y = -radius - 1; y <= radius - 1; y++) {
    const r = rowAt(y);
    for (let x = 0; x < width; x++) sums[x] = sums[x]! + src[r + x]!;
  }
  for (let y = 0; y < height; y++) {
    const add = rowAt(y + radius), leave = rowAt(y - radius - 1), far = rowAt(y + radius + 1), out = y * width;
    for (let x = 0; x < width; x++) {
      const left = src[leave + x]!;
      const sum = sums[x]! + src[add + x]! - left;
      sums[x] = sum;
      dst[out + x] = (sum * ww + (left + src[far + x]!) * fw + 8388608) >>> 24;
    }
  }
}

/** PIL's luma of one pixel, `convert('L')`. */
const lumaByte = (r: number, g: number, b: number) => (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;

/** `Image.blend(degenerate, image, alpha)` of one value (Blend.c: float32, truncated, clipped when extrapolating). */
function blendByte(degenerate: number, value: number, alpha: number): number {
  const t = Math.fround(degenerate + Math.fround(alpha * (value - degenerate)));
  return t <= 0 ? 0 : t >= 255 ? 255 : t | 0;
}

/** The 256-entry table of `blendByte(degenerate, v, factor)`. */
export function blendTable(degenerate: number, factor: number): Uint8Array {
  const alpha = Math.fround(factor);
  const table = new Uint8Array(256);
  for (let v = 0; v < 256; v++) table[v] = blendByte(degenerate, v, alpha);
  return table;
}

/** data[i] = table[data[i]] for every byte. */
export function applyTableBytes(data: Uint8Array, table: Uint8Array): void {
  for (let i = 0; i < data.length; i++) data[i] = table[data[i]!]!;
}

/** torchvision `adjust_brightness` on a PIL image (ImageEnhance.Brightness: blend with black), in place. */
export function adjustBrightnessBytes(image: ByteImage, factor: number): void {
  applyTableBytes(image.data, blendTable(0, factor));
}

/** The mean of PIL's `convert('L')` rounded to an integer, as ImageEnhance.Contrast takes it. */
function meanLumaByte(image: ByteImage, input: Uint8Array = IDENTITY_TABLE): number {
  const plane = image.height * image.width;
  const data = image.data;
  let sum = 0;
  if (image.channels === 3) {
    for (let p = 0; p < plane; p++) sum += lumaByte(input[data[p]!]!, input[data[plane + p]!]!, input[data[2 * plane + p]!]!);
  } else {
    for (let p = 0; p < plane; p++) sum += input[data[p]!]!;
  }
  return Math.trunc(sum / plane + 0.5);
}

/** v -> v: the table of no adjustment. */
const IDENTITY_TABLE = Uint8Array.from({ length: 256 }, (_, v) => v);

/** torchvision `adjust_contrast` on a PIL image (ImageEnhance.Contrast: blend with the rounded mean luma), in place. */
export function adjustContrastBytes(image: ByteImage, factor: number): void {
  applyTableBytes(image.data, blendTable(meanLumaByte(image), factor));
}

/** torchvision `adjust_saturation` on a PIL image (ImageEnhance.Color: blend with the pixel's luma), in place;
 * nothing changes on 1 channel. `input` maps each byte first (a pointwise adjustment not yet applied). */
export function adjustSaturationBytes(image: ByteImage, factor: number, input: Uint8Array = IDENTITY_TABLE): void {
  if (image.channels !== 3) return;
  const plane = image.height * image.width;
  const data = image.data;
  const alpha = Math.fround(factor);
  const f = Math.fround;
  for (let p = 0; p < plane; p++) {
    const r = input[data[p]!]!, g = input[data[plane + p]!]!, b = input[data[2 * plane + p]!]!;
    const l = lumaByte(r, g, b);
    const tr = f(l + f(alpha * (r - l)));
    const tg = f(l + f(alpha * (g - l)));
    const tb = f(l + f(alpha * (b - l)));
    data[p] = tr <= 0 ? 0 : tr >= 255 ? 255 : tr | 0;
    data[plane + p] = tg <= 0 ? 0 : tg >= 255 ? 255 : tg | 0;
    data[2 * plane + p] = tb <= 0 ? 0 : tb >= 255 ? 255 : tb | 0;
  }
}

/** Convert.c `rgb2hsv`'s hue byte of a pixel whose max and min differ, in its float32 arithmetic. */
function hueByteOf(r: number, g: number, b: number): number {
  const f = Math.fround;
  const max = r > g ? (r > b ? r : b) : g > b ? g : b;
  const cr = max - (r < g ? (r < b ? r : b) : g < b ? g : b);
  const rc = f((max - r) / cr), gc = f((max - g) / cr), bc = f((max - b) / cr);
  let h: number;
  if (r === max) h = f(bc - gc);
  else if (g === max) h = f(2.0 + rc - bc);
  else h = f(4.0 + gc - rc);
  return Math.trunc(f((h / 6.0 + 1.0) % 1.0) * 255.0);
}

/**
 * Lookup tables for PIL's uint8 HSV round trip, made on first use (about 1 MB; tens of ms, once per thread):
 * - hue: the hue byte depends only on the channel differences from the max, one of which is 0 (the max channel, the
 *   first of r, g, b among equals) and one of which is the chroma (the min channel); indexed by
 *   (max channel x 2 + which of the other two is the min) x 65536 + chroma x 256 + the third channel's difference;
 * - saturation byte by max x 256 + chroma; per hue byte, the HSV sector; p by v x 256 + s and the middle value's
 *   factor by s x 256 + hue (below); the rgb2hsv case tables by channel comparisons.
 */
let hsvTables: {
  hue: Uint8Array; saturation: Uint8Array; sector: Uint8Array; valueLow: Uint8Array; middleFactor: Float64Array;
  hueBase: Int32Array;
} | null = null;
function hsv(): NonNullable<typeof hsvTables> {
  if (hsvTables !== null) return hsvTables;
  const f = Math.fround;
  const hue = new Uint8Array(6 * 65536);
  for (let maxChannel = 0; maxChannel < 3; maxChannel++) {
    for (let minSlot = 0; minSlot < 2; minSlot++) {
      const others = [0, 1, 2].filter((c) => c !== maxChannel);
      const minChannel = others[minSlot]!, midChannel = others[1 - minSlot]!;
      const pixel = new Int32Array(3);
      pixel[maxChannel] = 255;
      for (let chroma = 1; chroma < 256; chroma++) {
        pixel[minChannel] = 255 - chroma;
        for (let d = 0; d <= chroma; d++) {
          pixel[midChannel] = 255 - d;
          hue[(maxChannel * 2 + minSlot) * 65536 + chroma * 256 + d] = hueByteOf(pixel[0]!, pixel[1]!, pixel[2]!);
        }
      }
    }
  }
  const saturation = new Uint8Array(65536);
  for (let max = 1; max < 256; max++) for (let chroma = 1; chroma <= max; chroma++) saturation[max * 256 + chroma] = Math.trunc(f(chroma / max) * 255.0);
  // hsv2rgb (Convert.c): of p = v (1 - s), q = v (1 - s f) and t = v (1 - s (1 - f)), a sector uses p and one of
  // q (odd sectors) or t (even ones), the "middle" value. Per (v, s): p; per (s, hue): the middle one's factor, in
  // the float32 / double mix Convert.c computes it in (so that round(v x factor) is its byte).
  const sector = new Uint8Array(256);
  const remainder = new Float64Array(256);
  for (let h = 0; h < 256; h++) {
    const i = Math.floor((h * 6.0) / 255.0);
    sector[h] = i % 6;
    remainder[h] = f((h * 6.0) / 255.0 - i);
  }
  const valueLow = new Uint8Array(65536);
  const middleFactor = new Float64Array(65536);
  for (let s = 0; s < 256; s++) {
    const fs = f(s / 255.0);
    for (let v = 0; v < 256; v++) valueLow[v * 256 + s] = Math.round(v * (1.0 - fs));
    for (let h = 0; h < 256; h++) {
      const frac = remainder[h]!;
      middleFactor[s * 256 + h] = sector[h]! % 2 === 1 ? 1.0 - f(fs * frac) : 1.0 - fs * (1.0 - frac);
    }
  }
  // rgb2hsv's case by the comparisons r >= g (bit 0), r >= b (bit 1), g >= b (bit 2): the hue table's block for its
  // max channel (first among equals) and min channel.
  const hueBase = new Int32Array(8);
  for (let cmp = 0; cmp < 8; cmp++) {
    const rg = (cmp & 1) !== 0, rb = (cmp & 2) !== 0, gb = (cmp & 4) !== 0;
    let maxChannel: number, minChannel: number;
    if (rg && rb) { maxChannel = 0; minChannel = gb ? 2 : 1; }
    else if (gb) { maxChannel = 1; minChannel = rb ? 2 : 0; }
    else { maxChannel = 2; minChannel = rg ? 1 : 0; }
    const others = [0, 1, 2].filter((c) => c !== maxChannel);
    hueBase[cmp] = (maxChannel * 2 + others.indexOf(minChannel)) * 65536;
  }
  return (hsvTables = { hue, saturation, sector, valueLow, middleFactor, hueBase });
}

/** The hue byte step torchvision adds: `np.uint8(shift * 255)`, truncated, wrapping around. */
export const hueStepOf = (shift: number) => ((Math.trunc(shift * 255) % 256) + 256) % 256;

/**
 * torchvision `adjust_hue` on a PIL image, in place: `convert('HSV')`, the uint8 hue plus `uint8(shift * 255)`
 * (truncated, wrapping around), back to RGB; Convert.c's float32 arithmetic, the rgb2hsv half through tables.
 * Nothing changes on 1 channel. `input` maps each byte first (a pointwise adjustment not yet applied).
 */
export function adjustHueBytes(image: ByteImage, shift: number, input: Uint8Array = IDENTITY_TABLE): void {
  if (image.channels !== 3) return;
  // No early return for a zero step: PIL's round trip through uint8 HSV alone changes colours by a level or two.
  const hueStep = hueStepOf(shift);
  const tables = hsv();
  const { hue: hueTable, saturation: satTable, valueLow, middleFactor, hueBase } = tables;
  const plane = image.height * image.width;
  const data = image.data;
  // Branch-free per pixel (hues and max channels change unpredictably on photos): the rgb2hsv case from the signs of
  // the channel differences, each output value's channel from per-hue plane offsets. Gray pixels (chroma 0) and
  // s = 0 come out as (v, v, v) through the same arithmetic (p and the middle value are then v).
  // hsv2rgb's channels per hue: which gets v, which p, which the middle value (sector 0: v t p, 1: q v p,
  // 2: p v t, 3: p q v, 4: t p v, 5: v p q), as plane offsets.
  hueOutputOffsets(plane, hsvOutV, hsvOutLow, hsvOutMiddle);
  for (let p = 0; p < plane; p++) {
    const r = input[data[p]!]!, g = input[data[plane + p]!]!, b = input[data[2 * plane + p]!]!;
    const cmp = ((g - r - 1) >>> 31) | (((b - r - 1) >>> 31) << 1) | (((b - g - 1) >>> 31) << 2);
    const max = Math.max(r, g, b), min = Math.min(r, g, b);
    const chroma = max - min;
    const hueIn = hueTable[hueBase[cmp]! + chroma * 256 + 2 * max + min - r - g - b]!; // max minus the middle channel
    const sat = satTable[max * 256 + chroma]!;
    const hue = (hueIn + hueStep) & 255;
    const low = valueLow[max * 256 + sat]!;
    const middle = Math.round(max * middleFactor[sat * 256 + hue]!);
    data[p + hsvOutV[hue]!] = max;
    data[p + hsvOutLow[hue]!] = low;
    data[p + hsvOutMiddle[hue]!] = middle;
  }
}

/** Per hue byte, the plane offsets (channel x `plane`) of the channels that get v, p and the middle value. */
function hueOutputOffsets(plane: number, outV: Int32Array, outLow: Int32Array, outMiddle: Int32Array): void {
  const sectors = hsv().sector;
  for (let h = 0; h < 256; h++) {
    const [v, low, middle] = SECTOR_SLOTS[sectors[h]!]!;
    outV[h] = v * plane;
    outLow[h] = low * plane;
    outMiddle[h] = middle * plane;
  }
}

/** Per shifted hue's sector: the channels of v, p and the middle value (q or t). */
const SECTOR_SLOTS: readonly (readonly [number, number, number])[] = [[0, 2, 1], [1, 2, 0], [1, 0, 2], [2, 0, 1], [2, 1, 0], [0, 1, 2]];
const hsvOutV = new Int32Array(256), hsvOutLow = new Int32Array(256), hsvOutMiddle = new Int32Array(256);

/** ColorJitter's factors and order (0 brightness, 1 contrast, 2 saturation, 3 hue), as torchvision draws them. */
export interface JitterParams {
  readonly order: ArrayLike<number>;
  readonly brightness: number;
  readonly contrast: number;
  readonly saturation: number;
  readonly hue: number;
}

/**
 * ColorJitter (when `jitter` is given: {@link adjustBrightnessBytes}, {@link adjustContrastBytes},
 * {@link adjustSaturationBytes}, {@link adjustHueBytes} in `jitter.order`) then RandomGrayscale (when
 * `grayscale`: {@link toGrayscaleBytes}), in place. The per-pixel steps run one pass each (measured faster here
 * than one fused pass, whether the fused loop dispatched per pixel or was generated per order); the pointwise ones
 * ride along as tables (see {@link colorJitterDeferred}).
 */
export function colorJitterBytes(image: ByteImage, jitter: JitterParams | null, grayscale: boolean): void {
  const pending = colorJitterDeferred(image, jitter, grayscale);
  if (pending !== null) applyTableBytes(image.data, pending);
}

/**
 * {@link colorJitterBytes} except for a last pointwise table, returned (null: none) for the caller to apply to
 * every byte or fold into what comes next. Brightness and contrast are per-byte tables: instead of a pass each,
 * they compose into one pending table, which the next per-pixel step (contrast's mean, saturation, hue,
 * grayscale) reads its input through.
 */
export function colorJitterDeferred(image: ByteImage, jitter: JitterParams | null, grayscale: boolean, ops: PixelColorOps = JS_PIXEL_COLOR_OPS): Uint8Array | null {
  let pending: Uint8Array | null = null;
  const rgb = image.channels === 3; // saturation, hue and grayscale change nothing on other channel counts
  if (jitter !== null) {
    for (let k = 0; k < jitter.order.length; k++) {
      const op = jitter.order[k];
      if (op === 0) pending = composeTables(blendTable(0, jitter.brightness), pending);
      else if (op === 1) pending = composeTables(blendTable(ops.meanLuma(image, pending ?? IDENTITY_TABLE), jitter.contrast), pending);
      else if (!rgb) continue;
      else if (op === 2) { ops.saturation(image, jitter.saturation, pending ?? IDENTITY_TABLE); pending = null; }
      else { ops.hue(image, jitter.hue, pending ?? IDENTITY_TABLE); pending = null; }
    }
  }
  if (grayscale && rgb) { ops.grayscale(image, pending ?? IDENTITY_TABLE); pending = null; }
  return pending;
}

/** The per-pixel colour steps {@link colorJitterDeferred} runs, each reading its input through a byte table: these
 * JS ones, or the WebAssembly ones (runtime/data/wasm-kernels.ts) on images in that module's memory. */
export interface PixelColorOps {
  meanLuma(image: ByteImage, input: Uint8Array): number;
  saturation(image: ByteImage, factor: number, input: Uint8Array): void;
  hue(image: ByteImage, shift: number, input: Uint8Array): void;
  grayscale(image: ByteImage, input: Uint8Array): void;
}

export const JS_PIXEL_COLOR_OPS: PixelColorOps = {
  meanLuma: meanLumaByte,
  saturation: adjustSaturationBytes,
  hue: adjustHueBytes,
  grayscale: toGrayscaleBytes,
};

/** v -> outer[inner[v]] (inner null: outer itself). */
function composeTables(outer: Uint8Array, inner: Uint8Array | null): Uint8Array {
  if (inner === null) return outer;
  const table = new Uint8Array(256);
  for (let v = 0; v < 256; v++) table[v] = outer[inner[v]!]!;
  return table;
}

/** torchvision `rgb_to_grayscale(num_output_channels=3)` on a PIL image: PIL's luma in all three channels, in
 * place; nothing changes on 1 channel. `input` maps each byte first. */
export function toGrayscaleBytes(image: ByteImage, input: Uint8Array = IDENTITY_TABLE): void {
  if (image.channels !== 3) return;
  const plane = image.height * image.width;
  const data = image.data;
  for (let p = 0; p < plane; p++) {
    const l = lumaByte(input[data[p]!]!, input[data[plane + p]!]!, input[data[2 * plane + p]!]!);
    data[p] = l;
    data[plane + p] = l;
    data[2 * plane + p] = l;
  }
}

/** `ImageOps.solarize(image, threshold)`: values at or above `threshold` (0-255) become 255 - v, in place. */
export function solarizeBytes(image: ByteImage, threshold: number): void {
  const data = image.data;
  for (let i = 0; i < data.length; i++) if (data[i]! >= threshold) data[i] = 255 - data[i]!;
}
