/**
 * The 8-bit DataAugmentationDINO pipeline against torchvision 0.14 + Pillow 9.4 (Debian's python3-torchvision), on
 * the fixtures made by tools/make_augment_fixtures.py: fixed crop boxes and parameters, so every op is compared
 * byte for byte with what DINO's transforms produce on a PIL image. Each test of a view's steps runs on both kernel
 * implementations (runtime/data/view-kernels.ts): the JS byte operations and the WebAssembly SIMD ones.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import {
  adjustBrightnessBytes, adjustContrastBytes, adjustHueBytes, adjustSaturationBytes, blendTable, colorJitterBytes,
  colorJitterDeferred, resizeBytes, solarizeBytes, toGrayscaleBytes, type ByteImage,
} from '../../../runtime/data/image-ops.ts';
import { augmentConfig, evalTransform, renderView } from '../../../runtime/data/multicrop.ts';
import { JS_VIEW_KERNELS, type ViewKernels } from '../../../runtime/data/view-kernels.ts';
import { wasmViewKernels } from '../../../runtime/data/wasm-kernels.ts';

interface Source { channels: number; height: number; width: number; data: string }
interface Fixture {
  generator: string;
  mean: number[]; std: number[];
  sources: Record<string, Source>;
  crops: Array<{ source: string; box: [number, number, number, number]; size: number; output: string }>;
  opsBase: { image: Source };
  ops: Array<{ op: string; factor: number; output: string }>;
  views: Array<{ box: [number, number, number, number]; size: number; flip: boolean; jitter: [number[], number, number, number, number] | null; gray: boolean; blur: number | null; solarize: boolean; output: string }>;
  evals: Array<{ source: string; resize: number; crop: number; output: string }>;
}
const fixture = JSON.parse(readFileSync(new URL('./fixtures/torchvision-augment.json', import.meta.url), 'utf8')) as Fixture;
const bytes = (b64: string) => new Uint8Array(Buffer.from(b64, 'base64'));
const floats = (b64: string) => { const b = Buffer.from(b64, 'base64'); return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length)); };
const image = (s: Source): ByteImage => ({ channels: s.channels, height: s.height, width: s.width, data: bytes(s.data) });

/** Largest absolute difference and how many values differ. */
function diff(ours: ArrayLike<number>, theirs: ArrayLike<number>): { max: number; differing: number } {
  assert.is(ours.length, theirs.length);
  let max = 0, differing = 0;
  for (let i = 0; i < ours.length; i++) {
    const d = Math.abs(ours[i]! - theirs[i]!);
    if (d > 0) differing++;
    if (d > max) max = d;
  }
  return { max, differing };
}

test(`fixtures come from ${fixture.generator}`, () => {
  assert.is(fixture.generator, 'tools/make_augment_fixtures.py');
});

const wasm = wasmViewKernels();
test('the WebAssembly kernels run on this Node (WebAssembly SIMD, runtime/data/wasm/augment.wasm)', () => {
  assert.ok(wasm !== null, 'wasmViewKernels() returned null');
  assert.is(wasm!.name, 'wasm');
});
const KERNELS: ViewKernels[] = [JS_VIEW_KERNELS, ...(wasm !== null ? [wasm] : [])];

/** `image` placed where `kernels` read it, as an image to change in place. */
const loaded = (kernels: ViewKernels, img: ByteImage & { interleaved?: boolean }) => kernels.load(img, Math.max(img.height, img.width, 224));

/** The same pixels in a decoder's interleaved order (H, W, C). */
function interleavedOf(s: Source): ByteImage & { interleaved: true } {
  const planar = bytes(s.data), plane = s.height * s.width, data = new Uint8Array(planar.length);
  for (let c = 0; c < s.channels; c++) for (let p = 0; p < plane; p++) data[p * s.channels + c] = planar[c * plane + p]!;
  return { channels: s.channels, height: s.height, width: s.width, data, interleaved: true };
}

for (const kernels of KERNELS) {
  test(`${kernels.name}: crop + bicubic resize equals PIL byte for byte (shrink, enlarge, mixed, whole image)`, () => {
    for (const c of fixture.crops) {
      const [top, left, height, width] = c.box;
      const out = kernels.resize(loaded(kernels, image(fixture.sources[c.source]!)), { top, left, height, width }, c.size, c.size, { flip: false });
      const d = diff(out.data, bytes(c.output));
      assert.ok(d.max === 0, `${c.source} box ${c.box} -> ${c.size}: max ${d.max}, ${d.differing} values differ`);
    }
  });

  test(`${kernels.name}: crop + bicubic resize of an interleaved source equals PIL byte for byte, mirrored too`, () => {
    for (const c of fixture.crops) {
      const [top, left, height, width] = c.box;
      const box = { top, left, height, width };
      const source = fixture.sources[c.source]!;
      const out = kernels.resize(loaded(kernels, interleavedOf(source)), box, c.size, c.size, { flip: false }).data.slice();
      const d = diff(out, bytes(c.output));
      assert.ok(d.max === 0, `interleaved ${c.source} box ${c.box} -> ${c.size}: max ${d.max}, ${d.differing} values differ`);
      const mirrored = kernels.resize(loaded(kernels, interleavedOf(source)), box, c.size, c.size, { flip: true }).data.slice();
      const planarMirrored = kernels.resize(loaded(kernels, image(source)), box, c.size, c.size, { flip: true }).data.slice();
      assert.equal(mirrored, planarMirrored);
      assert.equal(mirrored, resizeBytes(image(source), box, c.size, c.size, { flip: true }).data);
    }
    // More than 4 channels (resized one channel at a time): interleaved and channel-first agree.
    const large = fixture.sources['large']!, plane = large.height * large.width, rgb = bytes(large.data);
    const five = { channels: 5, height: large.height, width: large.width, data: new Uint8Array(5 * plane) };
    five.data.set(rgb);
    for (let p = 0; p < plane; p++) { five.data[3 * plane + p] = 255 - rgb[p]!; five.data[4 * plane + p] = (rgb[plane + p]! * 7) & 255; }
    const fiveInterleaved = interleavedOf({ ...five, data: Buffer.from(five.data).toString('base64') });
    const box = { top: 5, left: 9, height: 61, width: 83 };
    const fromInterleaved = kernels.resize(loaded(kernels, fiveInterleaved), box, 24, 24, { flip: true }).data.slice();
    assert.equal(fromInterleaved, kernels.resize(loaded(kernels, five), box, 24, 24, { flip: true }).data.slice());
    assert.equal(fromInterleaved, resizeBytes(five, box, 24, 24, { flip: true }).data);
  });

  test(`${kernels.name}: colour jitter, grayscale, blur and solarize equal torchvision on PIL byte for byte`, () => {
    const identity = Uint8Array.from({ length: 256 }, (_, v) => v);
    for (const o of fixture.ops) {
      const img = loaded(kernels, image(fixture.opsBase.image));
      if (o.op === 'brightness') kernels.applyTable(img, blendTable(0, o.factor));
      else if (o.op === 'contrast') kernels.applyTable(img, blendTable(kernels.color.meanLuma(img, identity), o.factor));
      else if (o.op === 'saturation') kernels.color.saturation(img, o.factor, identity);
      else if (o.op === 'hue') kernels.color.hue(img, o.factor, identity);
      else if (o.op === 'grayscale') kernels.color.grayscale(img, identity);
      else if (o.op === 'blur') kernels.blur(img, o.factor);
      else if (o.op === 'solarize') solarizeBytes(img, o.factor);
      else assert.unreachable(`unknown op ${o.op}`);
      const d = diff(img.data, bytes(o.output));
      assert.ok(d.max === 0, `${o.op} ${o.factor}: max ${d.max}, ${d.differing} values differ`);
    }
  });

  test(`${kernels.name}: colour jitter in all 24 orders (pointwise steps deferred as tables) equals the steps one at a time, RGB and 1 channel`, () => {
    const rgb = image(fixture.opsBase.image);
    const plane = rgb.height * rgb.width;
    const gray: ByteImage = { channels: 1, height: rgb.height, width: rgb.width, data: rgb.data.slice(plane, 2 * plane) };
    const permutations = (xs: number[]): number[][] => xs.length <= 1 ? [xs] : xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((rest) => [x, ...rest]));
    for (const base of [rgb, gray]) {
      for (const order of permutations([0, 1, 2, 3])) {
        for (const grayscale of [false, true]) {
          const jitter = { order, brightness: 1.31, contrast: 0.72, saturation: 1.24, hue: -0.07 };
          const together = loaded(kernels, { ...base, data: base.data.slice() });
          const pending = colorJitterDeferred(together, jitter, grayscale, kernels.color);
          if (pending !== null) kernels.applyTable(together, pending);
          const stepwise = { ...base, data: base.data.slice() };
          for (const op of order) {
            if (op === 0) adjustBrightnessBytes(stepwise, jitter.brightness);
            else if (op === 1) adjustContrastBytes(stepwise, jitter.contrast);
            else if (op === 2) adjustSaturationBytes(stepwise, jitter.saturation);
            else adjustHueBytes(stepwise, jitter.hue);
          }
          if (grayscale) toGrayscaleBytes(stepwise);
          assert.ok(diff(together.data, stepwise.data).max === 0, `${base.channels} channel(s), order ${order}, grayscale ${grayscale}`);
          if (kernels === JS_VIEW_KERNELS) {
            const viaWrapper = { ...base, data: base.data.slice() };
            colorJitterBytes(viaWrapper, jitter, grayscale);
            assert.equal(viaWrapper.data, stepwise.data);
          }
        }
      }
    }
  });

  test(`${kernels.name}: whole views (crop, flip, jitter in a given order, grayscale, blur, solarize, normalise) equal torchvision's tensors`, () => {
    const config = augmentConfig({ mean: fixture.mean, std: fixture.std });
    for (const v of fixture.views) {
      const [top, left, height, width] = v.box;
      const jitter = v.jitter === null ? null : { order: v.jitter[0], brightness: v.jitter[1], contrast: v.jitter[2], saturation: v.jitter[3], hue: v.jitter[4] };
      const out = new Float32Array(3 * v.size * v.size);
      const params = { box: { top, left, height, width }, size: v.size, flip: v.flip, jitter, grayscale: v.gray, blurSigma: v.blur, solarize: v.solarize };
      renderView(loaded(kernels, image(fixture.sources['large']!)), params, config, out, 0, kernels);
      // ToTensor and Normalize in float32 as torch computes them: the same floats, not merely close ones.
      const d = diff(out, floats(v.output));
      assert.ok(d.max === 0, `view ${JSON.stringify(v.box)} -> ${v.size}: max ${d.max}, ${d.differing} values differ`);
      const fromInterleaved = new Float32Array(out.length);
      renderView(loaded(kernels, interleavedOf(fixture.sources['large']!)), params, config, fromInterleaved, 0, kernels);
      assert.ok(diff(fromInterleaved, out).max === 0, `view ${JSON.stringify(v.box)} from an interleaved source differs`);
    }
  });
}

test('eval transform equals Resize(short side, bicubic) + CenterCrop + ToTensor + Normalize, on both kernels and layouts', () => {
  for (const kernels of KERNELS) {
    for (const e of fixture.evals) {
      for (const src of [image(fixture.sources[e.source]!), interleavedOf(fixture.sources[e.source]!)]) {
        const out = new Float32Array(2 + 3 * e.crop * e.crop).fill(7);
        evalTransform(src, { resize: e.resize, crop: e.crop, mean: fixture.mean, std: fixture.std }, out, 1, kernels);
        assert.is(out[0], 7);
        assert.is(out[out.length - 1], 7);
        const d = diff(out.subarray(1, out.length - 1), floats(e.output));
        assert.ok(d.max === 0, `${kernels.name}: ${e.source} resize ${e.resize} crop ${e.crop}: max ${d.max}, ${d.differing} values differ`);
      }
    }
  }
  const src = image(fixture.sources['small']!);
  assert.throws(() => evalTransform(src, { resize: 20, crop: 24, mean: fixture.mean, std: fixture.std }, new Float32Array(3 * 24 * 24)), /crop <= resize/);
  assert.throws(() => evalTransform(src, { resize: 24, crop: 24, mean: fixture.mean, std: fixture.std }, new Float32Array(10)), /do not fit/);
});

test.run();
