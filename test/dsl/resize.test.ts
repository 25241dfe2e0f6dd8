/**
 * dsl/ops/resize.ts and the symbolic image-size dims of shape.ts: ResizeCubic against a plain-TS bicubic written
 * from torch's `F.interpolate(mode='bicubic', align_corners=False, scale_factor=...)` (upsample_bicubic2d), PatchConv
 * against a direct loop, both on one ONNX model run at two image sizes; and the shape rules' checks.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import * as D from '../../dsl/index.ts';
import { createSession, ort } from '../../runtime/backend.ts';

// ---- references ------------------------------------------------------------------------------------

type Quad = readonly [number, number, number, number];

/** torch's cubic convolution kernel with coefficient A, at distance |x| from the sample. */
function cubicKernel(x: number, a: number): number {
  const t = Math.abs(x);
  if (t <= 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a;
  return 0;
}

/**
 * torch's upsample_bicubic2d, align_corners=False, scales given (not recomputed): output size floor(in * scale) with
 * the scale as float32 (the ONNX scales input), source src = (dst + 0.5) / scale - 0.5 without clamping, taps
 * floor(src) - 1 .. floor(src) + 2 with indices clamped to the border.
 */
function bicubicRef(x: Float32Array, [n, c, h, w]: Quad, sh: number, sw: number, a = -0.75): { y: number[]; shape: number[] } {
  const oh = Math.floor(h * Math.fround(sh)), ow = Math.floor(w * Math.fround(sw));
  const taps = (o: number, scale: number, size: number) => {
    const src = (o + 0.5) / scale - 0.5, base = Math.floor(src);
    return [-1, 0, 1, 2].map((k) => ({ index: Math.min(Math.max(base + k, 0), size - 1), weight: cubicKernel(src - (base + k), a) }));
  };
  const y: number[] = [];
  for (let p = 0; p < n * c; p++) for (let i = 0; i < oh; i++) for (let j = 0; j < ow; j++) {
    let s = 0;
    for (const r of taps(i, Math.fround(sh), h)) for (const q of taps(j, Math.fround(sw), w)) s += r.weight * q.weight * x[(p * h + r.index) * w + q.index]!;
    y.push(s);
  }
  return { y, shape: [n, c, oh, ow] };
}

/** Conv with kernel = stride = patch, bias, as a direct loop. */
function patchConvRef(x: Float32Array, [n, c, h, w]: Quad, wt: Float32Array, [d, , p, q]: Quad, b: Float32Array): number[] {
  const y: number[] = [];
  for (let ni = 0; ni < n; ni++) for (let o = 0; o < d; o++) for (let r = 0; r < h / p; r++) for (let col = 0; col < w / q; col++) {
    let s = b[o]!;
    for (let ci = 0; ci < c; ci++) for (let i = 0; i < p; i++) for (let j = 0; j < q; j++) {
      s += x[((ni * c + ci) * h + r * p + i) * w + col * q + j]! * wt[((o * c + ci) * p + i) * q + j]!;
    }
    y.push(s);
  }
  return y;
}

const random = (count: number, seed: number) => {
  const prng = D.Prng.seeded(seed);
  return Float32Array.from({ length: count }, () => prng.normal());
};

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  assert.is(actual.length, expected.length, `${what}: length`);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / Math.max(1, Math.abs(expected[i]!)));
  assert.ok(worst <= tol, `${what}: error ${worst} > ${tol}`);
}

async function session(g: D.Graph): Promise<ort.InferenceSession> {
  const bytes = D.emitOnnx(g, { params: 'inputs' });
  if (E.isLeft(bytes)) throw new Error(bytes.left.map(D.formatError).join('\n'));
  return createSession(bytes.right, { threads: 1 });
}

const errorsOf = (g: D.Graph) => g.errors.map(D.formatError).join('\n');

// ---- ResizeCubic -----------------------------------------------------------------------------------

test('resizeCubic with constant scales equals torch bicubic (up, down, non-square, DINO +0.1 scales, A = -0.5)', async () => {
  const cases: [Quad, number, number, number][] = [
    [[1, 3, 4, 4], 7.1 / 4, 7.1 / 4, -0.75], // DINO-style upscale of a 4x4 table to 7x7
    [[2, 2, 7, 7], 3.1 / 7, 5.1 / 7, -0.75], // downscale (local crops), no antialias
    [[1, 2, 5, 6], 1.5, 0.7, -0.75],
    [[1, 1, 6, 5], 2, 2, -0.5], // the coefficient reaches the ONNX attribute
  ];
  for (const [shape, sh, sw, a] of cases) {
    const g = new D.Graph('resize');
    const x = g.input('x', 'float32', shape);
    const y = D.resizeCubic(x, [sh, sw], { cubicCoeffA: a });
    g.output('y', y);
    const ref = bicubicRef(random(shape.reduce((p, v) => p * v, 1), 1), shape, sh, sw, a);
    assert.equal([...y.shape], ref.shape, `shape rule for ${shape} x [${sh}, ${sw}]`);
    const s = await session(g);
    const out = await s.run({ x: new ort.Tensor('float32', random(shape.reduce((p, v) => p * v, 1), 1), shape) });
    assert.equal([...out['y']!.dims], ref.shape);
    assertClose(out['y']!.data as Float32Array, ref.y, 2e-6, `resize ${shape} by [${sh}, ${sw}], A ${a}`);
    await s.release();
  }
});

test('resizeCubic with scales computed in the graph: one model, output size named by the caller, any input size', async () => {
  const g = new D.Graph('resize');
  const x = g.input('x', 'float32', [1, 2, 'h', 'w']);
  const scales = g.input('scales', 'float32', [2]);
  const y = D.resizeCubic(x, scales, { size: ['oh', 'ow'] });
  assert.equal([...y.shape], [1, 2, 'oh', 'ow']);
  g.output('y', y);
  const s = await session(g);
  for (const [h, w, sh, sw] of [[4, 4, 7.1 / 4, 7.1 / 4], [7, 5, 3.1 / 7, 1]] as const) {
    const data = random(2 * h * w, h + w);
    const out = await s.run({ x: new ort.Tensor('float32', data, [1, 2, h, w]), scales: new ort.Tensor('float32', Float32Array.of(sh, sw), [2]) });
    const ref = bicubicRef(data, [1, 2, h, w], sh, sw);
    assert.equal([...out['y']!.dims], ref.shape);
    assertClose(out['y']!.data as Float32Array, ref.y, 2e-6, `runtime scales ${h}x${w}`);
  }
  await s.release();
});

test('ResizeCubic shape rule: size from constant scales is checked; runtime scales need a size; wrong inputs are named', () => {
  const g = new D.Graph('resize');
  const x = g.input('x', 'float32', [1, 2, 4, 4]);
  assert.equal([...D.resizeCubic(x, [2.1 / 4, 1]).shape], [1, 2, 2, 4]);
  assert.equal([...D.resizeCubic(x, [2.1 / 4, 1], { size: [2, 4] }).shape], [1, 2, 2, 4]);
  assert.is(g.errors.length, 0, errorsOf(g));
  D.resizeCubic(x, [2.1 / 4, 1], { size: [3, 4] });
  assert.match(errorsOf(g), 'size [3,4] differs from what the scales give, [2,4]');
  D.resizeCubic(x, g.input('s', 'float32', [2]));
  assert.match(errorsOf(g), 'name the output size');
  D.resizeCubic(g.input('x64', 'float64', [1, 1, 4, 4]), [2, 2]);
  assert.match(errorsOf(g), 'expects float32');
  D.resizeCubic(g.input('x3', 'float32', [2, 4, 4]), [2, 2]);
  assert.match(errorsOf(g), 'input must be [N, C, H, W]');
  g.apply(D.ResizeCubic, [x, g.constant([], 'float32', [0]), g.constant([1, 1], 'float32', [2])], { mode: 'cubic', cubic_coeff_a: -0.75, coordinate_transformation_mode: 'half_pixel', exclude_outside: 0, antialias: 0 });
  assert.match(errorsOf(g), 'scales must be float32 [4]');
  g.apply(D.ResizeCubic, [x, g.constant([], 'float32', [0]), g.constant([2, 1, 1, 1], 'float32', [4])], { mode: 'cubic', cubic_coeff_a: -0.75, coordinate_transformation_mode: 'half_pixel', exclude_outside: 0, antialias: 0 });
  assert.match(errorsOf(g), 'scales of N and C must be 1');
});

// ---- PatchConv -------------------------------------------------------------------------------------

test('patchConv equals a direct loop; symbolic H, W give the grid H/p x W/q, one model for two sizes', async () => {
  const g = new D.Graph('patches');
  const x = g.input('x', 'float32', ['N', 3, 'H', 'W']);
  const w = g.input('w', 'float32', [5, 3, 4, 2]);
  const b = g.input('b', 'float32', [5]);
  const y = D.patchConv(x, w, b);
  assert.equal([...y.shape], ['N', 5, 'H/4', 'W/2']);
  g.output('y', y);
  const s = await session(g);
  const wt = random(5 * 3 * 4 * 2, 2), bias = random(5, 3);
  for (const [n, h, wd] of [[2, 8, 6], [1, 12, 10]] as const) {
    const data = random(n * 3 * h * wd, h);
    const out = await s.run({ x: new ort.Tensor('float32', data, [n, 3, h, wd]), w: new ort.Tensor('float32', wt, [5, 3, 4, 2]), b: new ort.Tensor('float32', bias, [5]) });
    assert.equal([...out['y']!.dims], [n, 5, h / 4, wd / 2]);
    assertClose(out['y']!.data as Float32Array, patchConvRef(data, [n, 3, h, wd], wt, [5, 3, 4, 2], bias), 1e-5, `patchConv ${h}x${wd}`);
  }
  await s.release();
});

test('PatchConv shape rule: static sizes must be multiples of the patch; channels and bias are checked', () => {
  const g = new D.Graph('patches');
  const w = g.input('w', 'float32', [5, 3, 4, 4]);
  assert.equal([...D.patchConv(g.input('a', 'float32', [2, 3, 8, 12]), w, null).shape], [2, 5, 2, 3]);
  assert.equal([...D.patchConv(g.input('b8', 'float32', [2, 3, '8*h', 'W']), w, null).shape], [2, 5, '2*h', 'W/4']);
  assert.is(g.errors.length, 0, errorsOf(g));
  D.patchConv(g.input('c', 'float32', [2, 3, 10, 12]), w, null);
  assert.match(errorsOf(g), 'image size 10 x 12 is not a multiple of the patch 4 x 4');
  D.patchConv(g.input('d', 'float32', [2, 1, 8, 8]), w, null);
  assert.match(errorsOf(g), 'image channels 1 differ');
  D.patchConv(g.input('e', 'float32', [2, 3, 8, 8]), w, g.input('bias', 'float32', [4]));
  assert.match(errorsOf(g), 'bias [4] must be [5]');
});

// ---- symbolic dims ---------------------------------------------------------------------------------

test('quotientDim and sliceSymbolicDim; Slice on an axis Concat made symbolic', () => {
  assert.is(D.quotientDim(28, 4), 7);
  assert.is(D.quotientDim(30, 4), undefined);
  assert.is(D.quotientDim('H', 16), 'H/16');
  assert.is(D.quotientDim('8*h', 4), '2*h');
  assert.is(D.quotientDim('a*b', 4), undefined, 'a product that 4 does not divide has no name');
  assert.is(D.sliceSymbolicDim('1+P', 0, 1), 1);
  assert.is(D.sliceSymbolicDim('1+P', 1, D.TO_END), 'P');
  assert.is(D.sliceSymbolicDim('2+P', 1, D.TO_END), '1+P');
  assert.is(D.sliceSymbolicDim('1+P', 0, 2), undefined, 'past the static part: depends on P');
  assert.is(D.sliceSymbolicDim('P', 0, 1), undefined);
  const g = new D.Graph('tokens');
  const cls = g.input('cls', 'float32', ['N', 1, 8]);
  const patches = g.input('patches', 'float32', ['N', 'H/4*W/4', 8]);
  const tokens = D.concat([cls, patches], 1);
  assert.equal([...tokens.shape], ['N', '1+H/4*W/4', 8]);
  assert.equal([...D.slice(tokens, [1], [D.TO_END], [1]).shape], ['N', 'H/4*W/4', 8]);
  assert.equal([...D.slice(tokens, [0], [1], [1]).shape], ['N', 1, 8]);
  assert.is(g.errors.length, 0, errorsOf(g));
  D.slice(tokens, [0], [2], [1]);
  assert.match(errorsOf(g), 'cannot slice [0:2] of symbolic axis 1 (1+H/4*W/4)');
});

test.run();
