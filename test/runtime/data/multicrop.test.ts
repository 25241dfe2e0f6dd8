import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Prng } from '../../../dsl/prng.ts';
import { augmentConfig, DINO_AUGMENT, multiCrop, multiCropImages, sampleCropBox, type ImageBatch } from '../../../runtime/data/multicrop.ts';
import { resizeBicubic } from '../../../runtime/data/image-ops.ts';

/** B smooth random images (so that crops differ from each other), values in [0, 1]. */
function randomImages(count: number, channels: number, height: number, width: number, seed: number): ImageBatch {
  const prng = Prng.seeded(seed);
  const pixels = new Float32Array(count * channels * height * width);
  for (let i = 0; i < count * channels; i++) {
    const fx = prng.range(0.1, 0.6), fy = prng.range(0.1, 0.6), phase = prng.range(0, 6);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) pixels[(i * height + y) * width + x] = 0.5 + 0.5 * Math.sin(fx * x + fy * y + phase);
    }
  }
  return { count, channels, height, width, pixels };
}

const fmnistLike = augmentConfig({ globalSize: 28, localSize: 12, localCrops: 6, mean: [0.286], std: [0.353] });

test('shapes: globals [2B, C, G, G], locals [nLocal B, C, L, L], for 1 and 3 channels', () => {
  const gray = multiCrop(randomImages(5, 1, 28, 28, 1), fmnistLike, Prng.seeded(1));
  assert.is(gray.globals.length, 2 * 5 * 1 * 28 * 28);
  assert.is(gray.locals.length, 6 * 5 * 1 * 12 * 12);
  assert.equal([gray.batchSize, gray.channels, gray.globalSize, gray.localSize, gray.localCrops], [5, 1, 28, 12, 6]);
  const color = multiCrop(randomImages(3, 3, 40, 30, 2), augmentConfig({ globalSize: 32, localSize: 16, localCrops: 4 }), Prng.seeded(1));
  assert.is(color.globals.length, 2 * 3 * 3 * 32 * 32);
  assert.is(color.locals.length, 4 * 3 * 3 * 16 * 16);
  for (const v of [...color.globals, ...color.locals]) {
    // normalised values of [0, 1] inputs with ImageNet mean/std
    if (!(v >= (0 - 0.485) / 0.229 - 1e-5 && v <= (1 - 0.406) / 0.225 + 1e-5)) assert.unreachable(`value ${v}`);
  }
});

test('layout is view-major: crop (view v, image b) sits at index v * B + b', () => {
  // Constant images with every random op disabled: each crop is its image's constant, normalised.
  const B = 4;
  const pixels = new Float32Array(B * 28 * 28);
  for (let b = 0; b < B; b++) pixels.fill(0.1 + 0.2 * b, b * 784, (b + 1) * 784);
  const still = augmentConfig({ ...fmnistLike, flipP: 0, colorJitterP: 0, grayscaleP: 0, blurP: [0, 0, 0], solarizeP: 0 });
  const crops = multiCrop({ count: B, channels: 1, height: 28, width: 28, pixels }, still, Prng.seeded(3));
  const expected = (b: number) => (0.1 + 0.2 * b - 0.286) / 0.353;
  for (let v = 0; v < 2; v++) {
    for (let b = 0; b < B; b++) {
      const crop = crops.globals.subarray((v * B + b) * 784, (v * B + b + 1) * 784);
      assert.ok(crop.every((x) => Math.abs(x - expected(b)) < 1e-5), `global ${v} image ${b}`);
    }
  }
  for (let v = 0; v < 6; v++) {
    for (let b = 0; b < B; b++) {
      const crop = crops.locals.subarray((v * B + b) * 144, (v * B + b + 1) * 144);
      assert.ok(crop.every((x) => Math.abs(x - expected(b)) < 1e-5), `local ${v} image ${b}`);
    }
  }
});

test('same seed gives identical crops, another seed different ones', () => {
  const images = randomImages(6, 3, 24, 24, 4);
  const config = augmentConfig({ globalSize: 24, localSize: 10, localCrops: 3 });
  const a = multiCrop(images, config, Prng.seeded(11));
  const b = multiCrop(images, config, Prng.seeded(11));
  const c = multiCrop(images, config, Prng.seeded(12));
  assert.equal(a.globals, b.globals);
  assert.equal(a.locals, b.locals);
  assert.not.equal(a.globals, c.globals);
  assert.not.equal(a.locals, c.locals);
  // and the two global views of one image differ from each other
  const size = 3 * 24 * 24;
  assert.not.equal(a.globals.subarray(0, size), a.globals.subarray(6 * size, 7 * size));
});

test("'none' mode: every crop is the whole image resized, only normalised", () => {
  const images = randomImages(3, 1, 28, 28, 5);
  const none = augmentConfig({ ...fmnistLike, augment: 'none' });
  const crops = multiCrop(images, none, Prng.seeded(1));
  for (let b = 0; b < 3; b++) {
    const source = { channels: 1, height: 28, width: 28, data: images.pixels.subarray(b * 784, (b + 1) * 784) };
    const small = resizeBicubic(source, { top: 0, left: 0, height: 28, width: 28 }, 12, 12).data;
    for (let v = 0; v < 2; v++) {
      const crop = crops.globals.subarray((v * 3 + b) * 784, (v * 3 + b + 1) * 784);
      // global size = image size: exactly the normalised image
      crop.forEach((x, i) => { if (Math.abs(x - (source.data[i]! - 0.286) / 0.353) > 1e-5) assert.unreachable(`global ${v} pixel ${i}`); });
    }
    for (let v = 0; v < 6; v++) {
      const crop = crops.locals.subarray((v * 3 + b) * 144, (v * 3 + b + 1) * 144);
      crop.forEach((x, i) => { if (Math.abs(x - (small[i]! - 0.286) / 0.353) > 1e-5) assert.unreachable(`local ${v} pixel ${i}`); });
    }
  }
  // and it draws nothing from the generator
  const prng = Prng.seeded(9);
  const before = prng.state();
  multiCrop(images, none, prng);
  assert.equal(prng.state(), before);
});

/** E[area fraction] of torchvision's sampling on a square image, by integration (rounding ignored). */
function expectedScale(scale: [number, number], ratio: [number, number]): number {
  const n = 1000;
  let accepted = 0, sum = 0;
  for (let i = 0; i < n; i++) {
    const s = scale[0] + ((i + 0.5) / n) * (scale[1] - scale[0]);
    for (let j = 0; j < n; j++) {
      const r = Math.exp(Math.log(ratio[0]) + ((j + 0.5) / n) * (Math.log(ratio[1]) - Math.log(ratio[0])));
      if (Math.sqrt(s * r) <= 1 && Math.sqrt(s / r) <= 1) { accepted++; sum += s; }
    }
  }
  const pAccept = accepted / (n * n);
  const pFallback = (1 - pAccept) ** 10; // ten failed tries: the whole (square) image
  return (1 - pFallback) * (sum / accepted) + pFallback * 1;
}

test('RandomResizedCrop: area fractions, aspect ratios and positions follow torchvision sampling', () => {
  const prng = Prng.seeded(21);
  const side = 224;
  for (const [scale, label] of [[DINO_AUGMENT.globalScale, 'global'], [DINO_AUGMENT.localScale, 'local']] as const) {
    let sum = 0, logRatioSum = 0, minFraction = 1, maxFraction = 0, leftSum = 0;
    const n = 20000;
    for (let k = 0; k < n; k++) {
      const box = sampleCropBox(side, side, scale, DINO_AUGMENT.aspectRatio, prng);
      assert.ok(box.top >= 0 && box.left >= 0 && box.top + box.height <= side && box.left + box.width <= side);
      const fraction = (box.height * box.width) / (side * side);
      sum += fraction;
      minFraction = Math.min(minFraction, fraction);
      maxFraction = Math.max(maxFraction, fraction);
      const logRatio = Math.log(box.width / box.height);
      logRatioSum += logRatio;
      assert.ok(Math.abs(logRatio) <= Math.log(4 / 3) + 0.02 || box.width === side, `${label} ratio ${box.width}/${box.height}`);
      leftSum += (box.left + box.width / 2) / side;
    }
    const mean = sum / n;
    const expected = expectedScale([scale[0], scale[1]], [3 / 4, 4 / 3]);
    assert.ok(Math.abs(mean - expected) < 0.006, `${label}: mean area fraction ${mean.toFixed(4)}, expected ${expected.toFixed(4)}`);
    assert.ok(minFraction >= scale[0] - 0.01 && minFraction < scale[0] + 0.02, `${label}: min fraction ${minFraction}`);
    assert.ok(maxFraction <= scale[1] + 0.01 && maxFraction > scale[1] - 0.03, `${label}: max fraction ${maxFraction}`);
    assert.ok(Math.abs(logRatioSum / n) < 0.01, `${label}: mean log aspect ${logRatioSum / n}`);
    assert.ok(Math.abs(leftSum / n - 0.5) < 0.01, `${label}: mean horizontal centre ${leftSum / n}`);
  }
  // Crops too wide or too tall for the image are re-drawn, so large scales are under-represented: 0.640, not 0.7.
  assert.ok(Math.abs(expectedScale([0.4, 1], [3 / 4, 4 / 3]) - 0.640) < 0.001);
});

test('RandomResizedCrop fallback: the centred crop with the aspect ratio clamped into range', () => {
  // A 10 x 100 image: no try can fit a crop of ratio <= 4/3 with 40%+ of the area, so the fallback is used.
  const box = sampleCropBox(10, 100, [0.9, 1], [3 / 4, 4 / 3], Prng.seeded(1));
  assert.equal(box, { top: 0, left: Math.floor((100 - 13) / 2), height: 10, width: 13 });
  const tall = sampleCropBox(100, 10, [0.9, 1], [3 / 4, 4 / 3], Prng.seeded(1));
  assert.equal(tall, { top: Math.floor((100 - 13) / 2), left: 0, height: 13, width: 10 });
});

test('per-view blur probability and second-view-only solarization', () => {
  // Whole-image crops (scale 1, ratio 1, no flip/jitter/gray) so only blur and solarize can change a view.
  const fixed = { globalScale: [1, 1], localScale: [1, 1], aspectRatio: [1, 1], flipP: 0, colorJitterP: 0, grayscaleP: 0 } as const;
  const images = randomImages(2, 1, 28, 28, 6);
  const none = multiCrop(images, augmentConfig({ ...fmnistLike, augment: 'none' }), Prng.seeded(1));
  const blurFirst = multiCrop(images, augmentConfig({ ...fmnistLike, ...fixed, blurP: [1, 0, 0], solarizeP: 0 }), Prng.seeded(1));
  const g = 784;
  const variance = (a: Float32Array) => { const m = a.reduce((s, x) => s + x, 0) / a.length; return a.reduce((s, x) => s + (x - m) ** 2, 0) / a.length; };
  for (let b = 0; b < 2; b++) {
    const blurred = blurFirst.globals.subarray(b * g, (b + 1) * g);
    assert.ok(variance(blurred) < variance(none.globals.subarray(b * g, (b + 1) * g)), 'first global is blurred');
    assert.equal(blurFirst.globals.subarray((2 + b) * g, (3 + b) * g), none.globals.subarray((2 + b) * g, (3 + b) * g), 'second global is not');
  }
  assert.equal(blurFirst.locals, none.locals, 'locals are not blurred');

  const solar = multiCrop(images, augmentConfig({ ...fmnistLike, ...fixed, blurP: [0, 0, 0], solarizeP: 1 }), Prng.seeded(1));
  assert.equal(solar.globals.subarray(0, 2 * g), none.globals.subarray(0, 2 * g), 'first global never solarized');
  assert.equal(solar.locals, none.locals, 'locals never solarized');
  const raw = (x: number) => x * 0.353 + 0.286;
  const second = solar.globals.subarray(2 * g, 4 * g);
  const plain = none.globals.subarray(2 * g, 4 * g);
  second.forEach((x, i) => {
    const v = raw(plain[i]!);
    const want = v >= 128 / 255 ? 1 - v : v;
    if (Math.abs(raw(x) - want) > 1e-5) assert.unreachable(`pixel ${i}: ${raw(x)} vs ${want}`);
  });
});

test('DINO defaults: blur/solarize/jitter happen at their rates over many crops', () => {
  // Count views that differ from an un-augmented crop of the same box, on 3 channels where every op is visible.
  const images = randomImages(200, 3, 16, 16, 7);
  const config = augmentConfig({ globalSize: 16, localSize: 8, localCrops: 2, globalScale: [1, 1], localScale: [1, 1], aspectRatio: [1, 1], flipP: 0 });
  const crops = multiCrop(images, config, Prng.seeded(8));
  const plain = multiCrop(images, augmentConfig({ ...config, augment: 'none' }), Prng.seeded(8));
  const size = 3 * 16 * 16;
  let changedSecond = 0;
  for (let b = 0; b < 200; b++) {
    const a = crops.globals.subarray((200 + b) * size, (201 + b) * size);
    const p = plain.globals.subarray((200 + b) * size, (201 + b) * size);
    if (a.some((x, i) => Math.abs(x - p[i]!) > 1e-4)) changedSecond++;
  }
  // Second global: unchanged only when no jitter (0.2), no gray (0.8), no blur (0.9), no solarize (0.8): 11.5%.
  const unchanged = 200 - changedSecond;
  assert.ok(unchanged >= 8 && unchanged <= 40, `unchanged second views ${unchanged} of 200 (expected ~23)`);
});

test('config validation lists every problem', () => {
  try {
    augmentConfig({ globalSize: 0, localScale: [0.5, 0.1], flipP: 2, hue: 0.7, mean: [0.5], std: [0.5, 0.5] });
    assert.unreachable('should throw');
  } catch (error) {
    const message = (error as Error).message;
    for (const word of ['globalSize', 'localScale', 'flipP', 'hue', 'mean and std']) assert.match(message, word);
  }
  assert.throws(() => multiCrop(randomImages(1, 1, 8, 8, 1), augmentConfig({ globalSize: 8, localSize: 4 }), Prng.seeded(1)), /3 values for 1-channel/);
});

test('multiCropImages crops 8-bit sources of different sizes, each from its own extent, with multiCrop\'s draws', () => {
  const config = augmentConfig({ globalSize: 16, localSize: 8, localCrops: 2, mean: [0.5], std: [0.25] });
  const sizes = [[20, 30], [33, 17]] as const;
  const sources = sizes.map(([h, w], i) => ({ channels: 1, height: h, width: w, data: Uint8Array.from({ length: h * w }, (_, k) => Math.round(127.5 + 120 * Math.sin(k * 0.37 + i))) }));
  const mixed = multiCropImages(sources, config, Prng.seeded(5));
  assert.is(mixed.globals.length, 2 * 2 * 16 * 16);
  assert.is(mixed.locals.length, 2 * 2 * 8 * 8);
  // Each image alone through the float path, with the generator state it gets inside the batch: the same boxes and
  // parameters, so the views agree up to the uint8 rounding between steps (PIL truncates after each colour op: a
  // bias of up to a level per op; measured here max 2.5, mean 1.6 levels of 255).
  const prng = Prng.seeded(5);
  for (const [b, s] of sources.entries()) {
    const alone = multiCrop({ count: 1, channels: 1, height: s.height, width: s.width, pixels: Float32Array.from(s.data, (v) => v / 255) }, config, prng);
    for (let v = 0; v < 2; v++) {
      const ours = mixed.globals.subarray((v * 2 + b) * 256, (v * 2 + b + 1) * 256);
      const float = alone.globals.subarray(v * 256, (v + 1) * 256);
      let max = 0, sum = 0;
      for (let k = 0; k < 256; k++) { const d = Math.abs(ours[k]! - float[k]!) * 0.25 * 255; max = Math.max(max, d); sum += d; }
      assert.ok(max <= 4 && sum / 256 <= 2, `image ${b} view ${v}: max ${max.toFixed(2)}, mean ${(sum / 256).toFixed(2)} levels`);
    }
  }
  assert.equal(multiCropImages(sources, config, Prng.seeded(5)), mixed, 'same seed, same crops');
  assert.throws(() => multiCropImages([sources[0]!, { ...sources[1]!, channels: 3 }], config, Prng.seeded(1)), /image 1 of the batch has 3 channels/);
  assert.throws(() => multiCropImages([{ ...sources[0]!, height: 21 }], config, Prng.seeded(1)), /image 0 holds 600 bytes/);
});

test('multiCropImages in none mode: every view is the whole image resized, no randomness', () => {
  const config = augmentConfig({ augment: 'none', globalSize: 8, localSize: 4, localCrops: 1, mean: [0], std: [1] });
  const flat = { channels: 1, height: 10, width: 14, data: new Uint8Array(140).fill(51) };
  const out = multiCropImages([flat], config, Prng.seeded(1));
  for (const v of [...out.globals, ...out.locals]) assert.is(v, Math.fround(51 / 255));
});

test.run();
