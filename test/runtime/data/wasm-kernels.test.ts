/**
 * The WebAssembly kernels against the JS byte operations (the reference, itself checked against Pillow by
 * augment-fidelity.test.ts) on what the fixtures do not reach: random sources of every shape (tiny to larger than a
 * view, 1 and 3 channels, channel-first and interleaved), views narrower than the SIMD blocks (8 and 16 pixels), blur
 * radii 0, 1 and >= 2, every jitter order, solarize; the hue on every RGB colour; then whole multi-crop batches, and
 * memory growing for a large source. Equality is exact: the same bytes, the same floats.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Prng } from '../../../dsl/prng.ts';
import { augmentConfig, drawViewParams, multiCropImages, renderView, type SourceImage, type ViewKind } from '../../../runtime/data/multicrop.ts';
import { JS_VIEW_KERNELS } from '../../../runtime/data/view-kernels.ts';
import { wasmViewKernels } from '../../../runtime/data/wasm-kernels.ts';

const wasm = wasmViewKernels();
if (wasm === null) throw new Error('the WebAssembly kernels do not run on this Node (runtime/data/wasm/augment.wasm, WebAssembly SIMD)');

/** A source of smooth fields plus noise (so every step changes something), channel-first or interleaved. */
function randomSource(prng: Prng, channels: 1 | 3, height: number, width: number, interleaved: boolean): SourceImage {
  const data = new Uint8Array(channels * height * width);
  const fx = prng.range(0.05, 0.5), fy = prng.range(0.05, 0.5);
  for (let c = 0; c < channels; c++) {
    const base = prng.range(30, 220);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const v = base + 60 * Math.sin(fx * x + c) * Math.cos(fy * y) + prng.range(-40, 40);
        const at = interleaved ? (y * width + x) * channels + c : c * height * width + y * width + x;
        data[at] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  }
  return { channels, height, width, data, ...(interleaved ? { interleaved: true } : {}) };
}

const firstDifference = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  if (a.length !== b.length) return `lengths ${a.length} and ${b.length}`;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return `at ${i}: ${a[i]} vs ${b[i]}`;
  return null;
};

test('random views of random sources: WebAssembly and JS kernels give the same floats (sizes 1-64, blur radii 0-3, gray and RGB)', () => {
  const prng = Prng.seeded(2026);
  for (let trial = 0; trial < 160; trial++) {
    const channels = trial % 4 === 3 ? 1 : 3;
    const height = 1 + prng.int(trial % 10 === 0 ? 6 : 90), width = 1 + prng.int(trial % 10 === 1 ? 6 : 90);
    const interleaved = channels === 3 && prng.uniform() < 0.5;
    const source = randomSource(prng, channels, height, width, interleaved);
    const size = 1 + prng.int(64);
    const kind: ViewKind = (['global1', 'global2', 'local'] as const)[trial % 3]!;
    // Wide blur sigmas (up to 6) reach whole radius 2 and 3, past DINO's range, which the WebAssembly side hands to JS.
    const config = augmentConfig({
      globalSize: size, localSize: size, blurSigma: [0.1, trial % 5 === 0 ? 6 : 2], blurP: [1, 0.5, 0.7], solarizeP: 0.5, grayscaleP: 0.3,
      mean: channels === 1 ? [0.5] : [0.485, 0.456, 0.406], std: channels === 1 ? [0.25] : [0.229, 0.224, 0.225],
    });
    const view = drawViewParams(height, width, kind, config, prng);
    const ours = new Float32Array(channels * size * size), reference = new Float32Array(ours.length);
    renderView(wasm.load(source, size), view, config, ours, 0, wasm);
    renderView(source, view, config, reference, 0, JS_VIEW_KERNELS);
    const problem = firstDifference(ours, reference);
    assert.ok(problem === null, `trial ${trial}: ${channels}x${height}x${width}${interleaved ? ' interleaved' : ''} -> ${size}, ${JSON.stringify(view)}: ${problem}`);
  }
});

test('hue: every RGB colour, shifted by several steps (and read through a pending table), equals the JS version', () => {
  // All 2^24 colours as one 4096 x 4096 image, three planes.
  const side = 4096, plane = side * side;
  const colours = new Uint8Array(3 * plane);
  for (let c = 0; c < plane; c++) { colours[c] = c >> 16; colours[plane + c] = (c >> 8) & 255; colours[2 * plane + c] = c & 255; }
  const identity = Uint8Array.from({ length: 256 }, (_, v) => v);
  const darker = Uint8Array.from({ length: 256 }, (_, v) => Math.trunc(v * 0.8));
  for (const [shift, input] of [[0.1, identity], [-0.5, identity], [0.37, darker]] as const) {
    const reference = { channels: 3, height: side, width: side, data: colours.slice() };
    JS_VIEW_KERNELS.color.hue(reference, shift, input);
    const ours = wasm.load({ channels: 3, height: side, width: side, data: colours }, 1);
    wasm.color.hue(ours, shift, input);
    const problem = firstDifference(ours.data, reference.data);
    assert.ok(problem === null, `shift ${shift}${input === darker ? ', pending table' : ''}: ${problem}`);
  }
});

test('multiCropImages: a batch of sources of different sizes gives the same crops on both kernels; DINO_AUGMENT_KERNELS chooses', () => {
  const prng = Prng.seeded(7);
  const sources = [randomSource(prng, 3, 375, 500, true), randomSource(prng, 3, 64, 48, false), randomSource(prng, 3, 300, 200, true)];
  const config = augmentConfig({ globalSize: 64, localSize: 24, localCrops: 4 });
  const a = multiCropImages(sources, config, Prng.seeded(11), wasm);
  const b = multiCropImages(sources, config, Prng.seeded(11), JS_VIEW_KERNELS);
  assert.is(firstDifference(a.globals, b.globals), null);
  assert.is(firstDifference(a.locals, b.locals), null);
  const none = augmentConfig({ augment: 'none', globalSize: 40, localSize: 12, localCrops: 2 });
  assert.is(firstDifference(multiCropImages(sources, none, Prng.seeded(1), wasm).locals, multiCropImages(sources, none, Prng.seeded(1), JS_VIEW_KERNELS).locals), null, "'none' mode");
  const saved = process.env['DINO_AUGMENT_KERNELS'];
  try {
    process.env['DINO_AUGMENT_KERNELS'] = 'js';
    assert.is(firstDifference(multiCropImages(sources, config, Prng.seeded(11)).globals, a.globals), null);
    process.env['DINO_AUGMENT_KERNELS'] = 'fast';
    assert.throws(() => multiCropImages(sources, config, Prng.seeded(11)), /DINO_AUGMENT_KERNELS must be js or wasm, got "fast"/);
  } finally {
    if (saved === undefined) delete process.env['DINO_AUGMENT_KERNELS'];
    else process.env['DINO_AUGMENT_KERNELS'] = saved;
  }
});

test('a large source grows the module memory, and the views after it are still right', () => {
  const prng = Prng.seeded(3);
  const large = randomSource(prng, 3, 1500, 2000, true); // 9 MB: past what earlier images reserved
  const config = augmentConfig({ globalSize: 96, localSize: 32, localCrops: 2 });
  const a = multiCropImages([large], config, Prng.seeded(5), wasm);
  const b = multiCropImages([large], config, Prng.seeded(5), JS_VIEW_KERNELS);
  assert.is(firstDifference(a.globals, b.globals), null);
  assert.is(firstDifference(a.locals, b.locals), null);
  const small = randomSource(prng, 3, 40, 30, false);
  assert.is(firstDifference(multiCropImages([small], config, Prng.seeded(6), wasm).locals, multiCropImages([small], config, Prng.seeded(6), JS_VIEW_KERNELS).locals), null);
});

test.run();
