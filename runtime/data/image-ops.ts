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
