import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import {
  adjustBrightness, adjustContrast, adjustHue, adjustSaturation, boxBlurRadius, flipHorizontal, gaussianBlur,
  resizeBicubic, solarize, toGrayscale, type ChwImage,
} from '../../../runtime/data/image-ops.ts';

// PIL outputs for the same inputs; made by fixtures/make-pil-fixtures.py (Pillow 9.4).
interface PilCase {
  channels: number; height: number; width: number; input: number[];
  resizes: Array<{ box: [number, number, number, number]; size: number; output: number[] }>;
  blurs: Array<{ sigma: number; output: number[] }>;
  solarized: number[];
  grayscale: number[] | null;
}
const reference = JSON.parse(readFileSync(new URL('./fixtures/pil-reference.json', import.meta.url), 'utf8')) as { cases: PilCase[] };

const fromBytes = (c: PilCase): ChwImage => ({ channels: c.channels, height: c.height, width: c.width, data: Float32Array.from(c.input, (v) => v / 255) });

/** Max and mean absolute difference in uint8 levels between our float output and PIL's bytes. */
function levels(ours: Float32Array, pil: number[]): { max: number; mean: number } {
  assert.is(ours.length, pil.length);
  let max = 0, sum = 0;
  for (let i = 0; i < pil.length; i++) {
    const d = Math.abs(ours[i]! * 255 - pil[i]!);
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / pil.length };
}

test('crop + bicubic resize matches PIL within uint8 rounding (up, down, mixed, whole image)', () => {
  for (const c of reference.cases) {
    for (const r of c.resizes) {
      const [top, left, height, width] = r.box;
      const out = resizeBicubic(fromBytes(c), { top, left, height, width }, r.size, r.size);
      const { max, mean } = levels(out.data, r.output);
      // PIL rounds to uint8 after each of its two passes: at most ~1 level apart.
      assert.ok(max <= 1.5 && mean <= 0.5, `${c.channels}ch box ${r.box} -> ${r.size}: max ${max.toFixed(2)}, mean ${mean.toFixed(3)}`);
    }
  }
});

test('resize to the same size is the identity; resizing a constant image keeps it constant', () => {
  const c = reference.cases[0]!;
  const src = fromBytes(c);
  const same = resizeBicubic(src, { top: 0, left: 0, height: c.height, width: c.width }, c.height, c.width);
  for (let i = 0; i < src.data.length; i++) assert.ok(Math.abs(same.data[i]! - src.data[i]!) < 1e-6);
  const flat: ChwImage = { channels: 1, height: 9, width: 13, data: new Float32Array(9 * 13).fill(0.3) };
  for (const out of [resizeBicubic(flat, { top: 1, left: 2, height: 5, width: 7 }, 20, 20), resizeBicubic(flat, { top: 0, left: 0, height: 9, width: 13 }, 3, 4)]) {
    for (const v of out.data) assert.ok(Math.abs(v - 0.3) < 1e-6);
  }
});

test('Gaussian blur matches PIL GaussianBlur(radius = sigma) within uint8 rounding', () => {
  for (const c of reference.cases) {
    for (const b of c.blurs) {
      const image = fromBytes(c);
      gaussianBlur(image, b.sigma);
      const { max, mean } = levels(image.data, b.output);
      // PIL rounds after each of its six box passes; a true Gaussian kernel would be up to ~10 levels off at sigma 2.
      assert.ok(max <= 3 && mean <= 0.8, `${c.channels}ch sigma ${b.sigma}: max ${max.toFixed(2)}, mean ${mean.toFixed(3)}`);
    }
  }
});

test('box blur radius gives three boxes of total variance sigma^2', () => {
  for (const sigma of [0.1, 0.7, 1.3, 2, 5]) {
    const r = boxBlurRadius(sigma);
    const l = Math.floor(r);
    const inner = 1 / (2 * r + 1);
    const outer = (1 - (2 * l + 1) * inner) / 2;
    let variance = 0;
    for (let k = -l; k <= l; k++) variance += inner * k * k;
    variance += 2 * outer * (l + 1) * (l + 1);
    assert.ok(Math.abs(3 * variance - sigma * sigma) < 1e-9, `sigma ${sigma}: ${3 * variance}`);
  }
});

test('solarize and grayscale match PIL', () => {
  for (const c of reference.cases) {
    const image = fromBytes(c);
    solarize(image, 128 / 255);
    assert.ok(levels(image.data, c.solarized).max < 1e-3);
    if (c.grayscale !== null) {
      const gray = fromBytes(c);
      toGrayscale(gray);
      const plane = c.height * c.width;
      for (let ch = 0; ch < 3; ch++) {
        assert.ok(levels(gray.data.subarray(ch * plane, (ch + 1) * plane), c.grayscale).max <= 0.51, 'PIL rounds to uint8');
      }
    }
  }
});

const rgb = (pixels: Array<[number, number, number]>): ChwImage => {
  const n = pixels.length;
  const data = new Float32Array(3 * n);
  pixels.forEach(([r, g, b], p) => { data[p] = r; data[n + p] = g; data[2 * n + p] = b; });
  return { channels: 3, height: 1, width: n, data };
};
const pixel = (image: ChwImage, p: number) => {
  const n = image.height * image.width;
  return [image.data[p]!, image.data[n + p]!, image.data[2 * n + p]!];
};
const close = (a: number[], b: number[], tol = 1e-5) => a.every((v, i) => Math.abs(v - b[i]!) < tol);

test('hue rotation: red -> green -> blue by thirds; gray unchanged; a full turn is the identity', () => {
  const image = rgb([[1, 0, 0], [0.5, 0.5, 0.5], [0.2, 0.6, 0.4]]);
  adjustHue(image, 1 / 3);
  assert.ok(close(pixel(image, 0), [0, 1, 0]), `${pixel(image, 0)}`);
  assert.ok(close(pixel(image, 1), [0.5, 0.5, 0.5]));
  adjustHue(image, 1 / 3);
  assert.ok(close(pixel(image, 0), [0, 0, 1]), `${pixel(image, 0)}`);
  const other = rgb([[0.2, 0.6, 0.4]]);
  adjustHue(other, 0.5);
  adjustHue(other, -0.5);
  assert.ok(close(pixel(other, 0), [0.2, 0.6, 0.4]));
  adjustHue(other, 0.5); // the complement keeps max and min: (0.6, 0.2, 0.4)
  assert.ok(close(pixel(other, 0), [0.6, 0.2, 0.4]), `${pixel(other, 0)}`);
});

test('brightness, contrast and saturation follow torchvision blends', () => {
  const image = rgb([[0.2, 0.4, 0.6], [0.9, 0.1, 0.5]]);
  adjustBrightness(image, 1.5);
  assert.ok(close(pixel(image, 1), [1, 0.15, 0.75]), 'clipped at 1');
  const contrast = rgb([[0.2, 0.4, 0.6], [0.9, 0.1, 0.5]]);
  const gray = (p: number[]) => 0.299 * p[0]! + 0.587 * p[1]! + 0.114 * p[2]!;
  const mean = (gray([0.2, 0.4, 0.6]) + gray([0.9, 0.1, 0.5])) / 2;
  adjustContrast(contrast, 0);
  assert.ok(close(pixel(contrast, 0), [mean, mean, mean]) && close(pixel(contrast, 1), [mean, mean, mean]));
  const saturation = rgb([[0.2, 0.4, 0.6]]);
  adjustSaturation(saturation, 0);
  const g = gray([0.2, 0.4, 0.6]);
  assert.ok(close(pixel(saturation, 0), [g, g, g]));
  const one: ChwImage = { channels: 1, height: 1, width: 2, data: Float32Array.of(0.2, 0.6) };
  adjustSaturation(one, 0);
  adjustHue(one, 0.3);
  toGrayscale(one);
  assert.equal(Array.from(one.data), [Math.fround(0.2), Math.fround(0.6)], 'no-ops on 1 channel');
  adjustContrast(one, 0.5); // mean 0.4
  assert.ok(close(Array.from(one.data), [0.3, 0.5]));
});

test('flip mirrors each row and is an involution', () => {
  const image: ChwImage = { channels: 2, height: 2, width: 3, data: Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12) };
  flipHorizontal(image);
  assert.equal(Array.from(image.data), [3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10]);
  flipHorizontal(image);
  assert.equal(Array.from(image.data), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
});

test.run();
