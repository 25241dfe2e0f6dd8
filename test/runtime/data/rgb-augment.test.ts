/**
 * DataAugmentationDINO on RGB images, pixel by pixel against hand-computed values: PIL's grayscale weights, a
 * hue shift of a known colour, solarization's 128 threshold, a blurred impulse, ImageNet normalisation; and the
 * multi-crop pipeline with the RGB presets' config.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Prng } from '../../../dsl/prng.ts';
import { adjustHue, boxBlurRadius, gaussianBlur, solarize, toGrayscale, type ChwImage } from '../../../runtime/data/image-ops.ts';
import { augmentConfig, DINO_AUGMENT, multiCrop } from '../../../runtime/data/multicrop.ts';

const rgb = (pixels: [number, number, number][]): ChwImage => {
  const n = pixels.length;
  const data = new Float32Array(3 * n);
  pixels.forEach(([r, g, b], p) => { data[p] = r; data[n + p] = g; data[2 * n + p] = b; });
  return { channels: 3, height: 1, width: n, data };
};
const pixel = (img: ChwImage, p: number) => { const n = img.height * img.width; return [img.data[p]!, img.data[n + p]!, img.data[2 * n + p]!]; };
const close = (a: number[], b: number[], tol = 1e-6) => a.every((x, i) => Math.abs(x - b[i]!) <= tol) || assert.unreachable(`${a} != ${b}`);

test('grayscale is PIL\'s L = 0.299 R + 0.587 G + 0.114 B in all three channels', () => {
  const img = rgb([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.25, 1]]);
  toGrayscale(img);
  close(pixel(img, 0), [0.299, 0.299, 0.299]);
  close(pixel(img, 1), [0.587, 0.587, 0.587]);
  close(pixel(img, 2), [0.114, 0.114, 0.114]);
  const l = 0.299 * 0.5 + 0.587 * 0.25 + 0.114;
  close(pixel(img, 3), [l, l, l]);
});

test('hue: orange (1, 0.5, 0) shifted by +1/12 turn is yellow; by -1/12 is red; saturation and value kept', () => {
  const a = rgb([[1, 0.5, 0]]);
  adjustHue(a, 1 / 12); // hue 30 deg -> 60 deg
  close(pixel(a, 0), [1, 1, 0], 1e-6);
  const b = rgb([[1, 0.5, 0]]);
  adjustHue(b, -1 / 12); // 30 deg -> 0 deg
  close(pixel(b, 0), [1, 0, 0], 1e-6);
  const c = rgb([[0.8, 0.4, 0.2]]); // hue 20 deg, value 0.8, chroma 0.6; +0.5 turn -> 200 deg
  adjustHue(c, 0.5);
  close(pixel(c, 0), [0.2, 0.6, 0.8], 1e-6);
});

test('solarize inverts at and above 128/255 only (PIL threshold 128)', () => {
  const img = rgb([[127 / 255, 128 / 255, 1]]);
  solarize(img, DINO_AUGMENT.solarizeThreshold);
  close(pixel(img, 0), [127 / 255, 1 - 128 / 255, 0], 1e-7);
});

test('blur of an impulse: mass kept, symmetric, peaked, and reaching exactly 3 (floor(r) + 1) pixels (beyond: float64 rounding residue only)', () => {
  for (const sigma of [0.5, 1.0, 2.0]) {
    const w = 41, c = 20;
    const data = new Float32Array(w * w);
    data[c * w + c] = 1;
    const img: ChwImage = { channels: 1, height: w, width: w, data };
    gaussianBlur(img, sigma);
    const reach = 3 * (Math.floor(boxBlurRadius(sigma)) + 1);
    let sum = 0;
    for (const v of data) sum += v;
    assert.ok(Math.abs(sum - 1) < 1e-5, `sigma ${sigma}: mass ${sum}`);
    assert.ok(data[c * w + c + reach]! > 1e-6 && Math.abs(data[c * w + c + reach + 1]!) < 1e-12, `sigma ${sigma}: reach ${reach}`);
    assert.ok(Math.abs(data[c * w + c - 2]! - data[c * w + c + 2]!) < 1e-7 && Math.abs(data[(c - 1) * w + c]! - data[c * w + c + 1]!) < 1e-7);
    // variance of the row marginal is sigma^2 (three boxes of variance sigma^2 / 3)
    let v = 0;
    for (let y = 0; y < w; y++) for (let x = 0; x < w; x++) v += data[y * w + x]! * (x - c) ** 2;
    assert.ok(Math.abs(v - sigma * sigma) < 1e-3, `sigma ${sigma}: variance ${v}`);
  }
});

test('RGB multi-crop: a flat colour stays flat, normalised per channel with ImageNet mean/std; grayscale p=1 gives equal luma', () => {
  const [r, g, b] = [0.8, 0.3, 0.1];
  const size = 40;
  const pixels = new Float32Array(3 * size * size);
  pixels.fill(r, 0, size * size); pixels.fill(g, size * size, 2 * size * size); pixels.fill(b, 2 * size * size);
  const batch = { count: 1, channels: 3, height: size, width: size, pixels };
  // No colour jitter, no solarize: crops, flips and blurs leave a flat image flat.
  const plain = augmentConfig({ globalSize: 16, localSize: 8, localCrops: 2, colorJitterP: 0, grayscaleP: 0, solarizeP: 0 });
  const out = multiCrop(batch, plain, Prng.seeded(3));
  const expect = [(r - 0.485) / 0.229, (g - 0.456) / 0.224, (b - 0.406) / 0.225];
  for (let c = 0; c < 3; c++) for (let i = 0; i < 256; i++) assert.ok(Math.abs(out.globals[c * 256 + i]! - expect[c]!) < 1e-5);
  const gray = augmentConfig({ ...plain, grayscaleP: 1 });
  const grayOut = multiCrop(batch, gray, Prng.seeded(3));
  const l = 0.299 * r + 0.587 * g + 0.114 * b;
  const want = [(l - 0.485) / 0.229, (l - 0.456) / 0.224, (l - 0.406) / 0.225];
  for (let c = 0; c < 3; c++) assert.ok(Math.abs(grayOut.locals[c * 64 + 5]! - want[c]!) < 1e-5, `channel ${c}`);
  // solarize p=1: only the second global view is solarized (0.8 -> 0.2; the others are below 128/255)
  const sol = multiCrop(batch, augmentConfig({ ...plain, solarizeP: 1 }), Prng.seeded(3));
  assert.ok(Math.abs(sol.globals[0]! - expect[0]!) < 1e-5, 'view 1 untouched');
  assert.ok(Math.abs(sol.globals[3 * 256]! - (0.2 - 0.485) / 0.229) < 1e-5, 'view 2 solarized');
});

test.run();
