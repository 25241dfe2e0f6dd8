/**
 * Forward values of the convolution, pooling, indexing and normalisation ops, run through ONNX Runtime
 * and compared with direct JS loops; plus a symbolic-batch network whose gradients must equal those of
 * the same network built with a static batch.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import * as D from '../../dsl/index.ts';
import { createSession, hostTensor, type HostArray } from '../../runtime/backend.ts';

type Feed = { name: string; dtype: D.DType; shape: readonly number[]; data: ArrayLike<number> };

function hostArray(dtype: D.DType, data: ArrayLike<number>): HostArray {
  if (dtype === 'float32') return Float32Array.from(data);
  if (dtype === 'float64') return Float64Array.from(data);
  if (dtype === 'int64') return BigInt64Array.from(Array.from(data, (v) => BigInt(v)));
  throw new Error(`no host array for ${dtype}`);
}

/** Builds a graph over the feeds, emits it and runs it; returns every output as plain numbers. */
async function runGraph(feeds: Feed[], build: (xs: D.Tensor[]) => Record<string, D.Tensor>, inputShapes?: D.Shape[]): Promise<Record<string, number[]>> {
  const g = new D.Graph('forward');
  const xs = feeds.map((f, i) => g.input(f.name, f.dtype, inputShapes?.[i] ?? f.shape));
  for (const [name, t] of Object.entries(build(xs))) g.output(name, t);
  const bytes = D.emitOnnx(g, { params: 'inputs' });
  if (E.isLeft(bytes)) throw new Error(bytes.left.map(D.formatError).join('\n'));
  const session = await createSession(bytes.right, { threads: 1 });
  const out = await session.run(Object.fromEntries(feeds.map((f) => [f.name, hostTensor(f.dtype, hostArray(f.dtype, f.data), f.shape)])));
  await session.release();
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, Array.from(v.data as Float32Array, Number)]));
}

const randn = (n: number, seed: number) => {
  const p = D.Prng.seeded(seed);
  return Array.from({ length: n }, () => p.normal());
};

function assertClose(actual: number[], expected: number[], tol: number, what: string) {
  assert.is(actual.length, expected.length, `${what}: length`);
  let worst = 0, at = -1;
  actual.forEach((a, i) => {
    const e = Math.abs(a - expected[i]!) / Math.max(1, Math.abs(expected[i]!));
    if (!(e <= worst)) [worst, at] = [e, i];
  });
  assert.ok(worst <= tol, `${what}: element ${at} is ${actual[at]}, expected ${expected[at]} (rel err ${worst})`);
}

// ---- JS references ---------------------------------------------------------------------------------

/** Direct NCHW convolution, as the ONNX spec defines it. */
type Quad = readonly [number, number, number, number];
type Two = readonly [number, number];

function convRef(x: number[], [n, c, h, w]: Quad, wt: number[], [o, cg, kh, kw]: Quad, b: number[] | null, [sh, sw]: Two, [pt, pl, pb, pr]: Quad, [dh, dw]: Two, group: number): { y: number[]; shape: number[] } {
  const ho = Math.floor((h + pt + pb - (kh - 1) * dh - 1) / sh) + 1;
  const wo = Math.floor((w + pl + pr - (kw - 1) * dw - 1) / sw) + 1;
  const og = o / group;
  const y: number[] = [];
  for (let ni = 0; ni < n; ni++) for (let oi = 0; oi < o; oi++) for (let yi = 0; yi < ho; yi++) for (let xi = 0; xi < wo; xi++) {
    let s = b ? b[oi]! : 0;
    const grp = Math.floor(oi / og);
    for (let ci = 0; ci < cg; ci++) for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) {
      const r = yi * sh - pt + i * dh, q = xi * sw - pl + j * dw;
      if (r < 0 || r >= h || q < 0 || q >= w) continue;
      s += x[((ni * c + grp * cg + ci) * h + r) * w + q]! * wt[((oi * cg + ci) * kh + i) * kw + j]!;
    }
    y.push(s);
  }
  return { y, shape: [n, o, ho, wo] };
}

/** Max or average pooling; `countIncludePad` as ONNX's count_include_pad. */
function poolRef(kind: 'max' | 'avg', x: number[], [n, c, h, w]: Quad, [kh, kw]: Two, [sh, sw]: Two, [pt, pl, pb, pr]: Quad, countIncludePad = false): number[] {
  const ho = Math.floor((h + pt + pb - kh) / sh) + 1, wo = Math.floor((w + pl + pr - kw) / sw) + 1;
  const y: number[] = [];
  for (let p = 0; p < n * c; p++) for (let yi = 0; yi < ho; yi++) for (let xi = 0; xi < wo; xi++) {
    let best = -Infinity, sum = 0, count = 0;
    for (let i = 0; i < kh; i++) for (let j = 0; j < kw; j++) {
      const r = yi * sh - pt + i, q = xi * sw - pl + j;
      if (r < 0 || r >= h || q < 0 || q >= w) continue;
      const v = x[(p * h + r) * w + q]!;
      best = Math.max(best, v);
      sum += v;
      count++;
    }
    y.push(kind === 'max' ? best : sum / (countIncludePad ? kh * kw : count));
  }
  return y;
}

// ---- tests -------------------------------------------------------------------------------------------

test('logSoftmaxComposite equals LogSoftmax in value and gradient (float64; large logits, both axes)', async () => {
  const x = randn(4 * 7, 3).map((v, i) => 30 * v + (i % 7 === 0 ? 200 : 0)); // sharp rows: the max shift matters
  const w = randn(4 * 7, 4);
  const feeds: Feed[] = [{ name: 'x', dtype: 'float64', shape: [4, 7], data: x }, { name: 'w', dtype: 'float64', shape: [4, 7], data: w }];
  const out = await runGraph(feeds, ([xt, wt]) => {
    const result: Record<string, D.Tensor> = {};
    for (const axis of [-1, 0]) {
      const op = D.logSoftmax(xt!, axis), composite = D.logSoftmaxComposite(xt!, axis);
      // A loss that weights every output differently, so the gradient checks each entry.
      const grads = [op, composite].map((y) => {
        const g = D.gradients(D.sumAll(D.mul(y, wt!)), [xt!]);
        if (E.isLeft(g)) throw new Error(g.left.map(D.formatError).join('\n'));
        return g.right[0]!;
      });
      Object.assign(result, { [`op${axis}`]: op, [`composite${axis}`]: composite, [`dop${axis}`]: grads[0]!, [`dcomposite${axis}`]: grads[1]! });
    }
    return result;
  });
  for (const axis of [-1, 0]) {
    assertClose(out[`composite${axis}`]!, out[`op${axis}`]!, 1e-12, `value, axis ${axis}`);
    assertClose(out[`dcomposite${axis}`]!, out[`dop${axis}`]!, 1e-12, `gradient, axis ${axis}`);
  }
});

test('conv2d matches a direct loop (groups, stride, asymmetric pads, dilation, bias)', async () => {
  const xs = [2, 4, 7, 6] as const, ws = [6, 2, 3, 2] as const;
  const x = randn(2 * 4 * 7 * 6, 1), w = randn(6 * 2 * 3 * 2, 2), b = randn(6, 3);
  const opts = { strides: [2, 1] as const, pads: [1, 0, 2, 1] as const, dilations: [1, 2] as const, group: 2 };
  const out = await runGraph(
    [{ name: 'x', dtype: 'float32', shape: xs, data: x }, { name: 'w', dtype: 'float32', shape: ws, data: w }, { name: 'b', dtype: 'float32', shape: [6], data: b }],
    ([xt, wt, bt]) => ({ y: D.conv2d(xt!, wt!, bt!, opts) }),
  );
  const ref = convRef(x, xs, w, ws, b, opts.strides, opts.pads, opts.dilations, opts.group);
  assert.equal(ref.shape, [2, 6, 4, 5]);
  assertClose(out['y']!, ref.y, 1e-5, 'conv2d');
});

test('convTranspose2d is the adjoint of conv2d: <conv(x), y> = <x, convT(y)>', async () => {
  const x = randn(2 * 3 * 7 * 6, 4), w = randn(4 * 3 * 3 * 2, 5), y = randn(2 * 4 * 3 * 3, 6);
  const conv = { strides: [2, 2] as const, pads: [1, 0, 0, 1] as const };
  const out = await runGraph(
    [
      { name: 'x', dtype: 'float32', shape: [2, 3, 7, 6], data: x },
      { name: 'w', dtype: 'float32', shape: [4, 3, 3, 2], data: w },
      { name: 'y', dtype: 'float32', shape: [2, 4, 3, 3], data: y },
    ],
    ([xt, wt, yt]) => ({
      lhs: D.sumAll(D.mul(D.conv2d(xt!, wt!, null, conv), yt!)),
      rhs: D.sumAll(D.mul(xt!, D.convTranspose2d(yt!, wt!, null, { ...conv, outputPadding: [1, 1] }))),
    }),
  );
  assert.ok(Math.abs(out['lhs']![0]! - out['rhs']![0]!) < 1e-4 * Math.abs(out['lhs']![0]!), `${out['lhs']} vs ${out['rhs']}`);
});

test('maxPool2d, averagePool2d and globalAveragePool match direct loops', async () => {
  const shape = [2, 3, 7, 6] as const;
  const x = randn(2 * 3 * 7 * 6, 7).map(Math.fround); // float32 values: max pooling is then exact
  const pool = { kernel: [3, 2] as const, strides: [2, 2] as const, pads: [1, 1, 1, 0] as const };
  const out = await runGraph([{ name: 'x', dtype: 'float32', shape, data: x }], ([xt]) => ({
    max: D.maxPool2d(xt!, pool),
    stem: D.maxPool2d(xt!, { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }),
    avg: D.averagePool2d(xt!, pool),
    avgIncl: D.averagePool2d(xt!, { ...pool, countIncludePad: true }),
    gap: D.globalAveragePool(xt!),
  }));
  assertClose(out['max']!, poolRef('max', x, shape, [3, 2], [2, 2], [1, 1, 1, 0]), 0, 'maxPool2d');
  assertClose(out['stem']!, poolRef('max', x, shape, [3, 3], [2, 2], [1, 1, 1, 1]), 0, 'maxPool2d 3x3/2');
  assertClose(out['avg']!, poolRef('avg', x, shape, [3, 2], [2, 2], [1, 1, 1, 0]), 1e-6, 'averagePool2d');
  assertClose(out['avgIncl']!, poolRef('avg', x, shape, [3, 2], [2, 2], [1, 1, 1, 0], true), 1e-6, 'averagePool2d count_include_pad');
  assertClose(out['gap']!, poolRef('avg', x, shape, [7, 6], [1, 1], [0, 0, 0, 0]), 1e-6, 'globalAveragePool');
});

test('gather picks along an axis, with 2-D and negative indices', async () => {
  const x = Array.from({ length: 3 * 5 * 2 }, (_, i) => i);
  const out = await runGraph(
    [{ name: 'x', dtype: 'float32', shape: [3, 5, 2], data: x }, { name: 'i', dtype: 'int64', shape: [2, 2], data: [0, 4, -1, 2] }],
    ([xt, it]) => ({ y: D.gather(xt!, it!, 1) }),
  );
  const expected: number[] = [];
  for (let a = 0; a < 3; a++) for (const k of [0, 4, 4, 2]) for (let c = 0; c < 2; c++) expected.push(x[(a * 5 + k) * 2 + c]!);
  assert.equal(out['y'], expected);
});

test('batchNormTraining: batch statistics over N, H, W (biased for y, unbiased reported), as PyTorch', async () => {
  const [n, c, h, w] = [3, 2, 2, 3], eps = 1e-5;
  const x = randn(n * c * h * w, 8).map((v, i) => v * (1 + (i % 5)) + 2);
  const scale = [1.5, -0.5], bias = [0.25, 1];
  const out = await runGraph(
    [
      { name: 'x', dtype: 'float64', shape: [n, c, h, w], data: x },
      { name: 's', dtype: 'float64', shape: [c], data: scale },
      { name: 'b', dtype: 'float64', shape: [c], data: bias },
    ],
    ([xt, st, bt]) => {
      const r = D.batchNormTraining(xt!, st!, bt!, eps);
      return { y: r.y, mean: r.mean, varBiased: r.varBiased, varUnbiased: r.varUnbiased };
    },
  );
  const m = n * h * w;
  const at = (ni: number, ci: number, k: number) => x[(ni * c + ci) * h * w + k]!;
  const mean: number[] = [], vb: number[] = [], vu: number[] = [];
  for (let ci = 0; ci < c; ci++) {
    let s = 0;
    for (let ni = 0; ni < n; ni++) for (let k = 0; k < h * w; k++) s += at(ni, ci, k);
    const mu = s / m;
    let ss = 0;
    for (let ni = 0; ni < n; ni++) for (let k = 0; k < h * w; k++) ss += (at(ni, ci, k) - mu) ** 2;
    mean.push(mu), vb.push(ss / m), vu.push(ss / (m - 1));
  }
  const y = x.map((v, i) => {
    const ci = Math.floor(i / (h * w)) % c;
    return ((v - mean[ci]!) / Math.sqrt(vb[ci]! + eps)) * scale[ci]! + bias[ci]!;
  });
  assertClose(out['mean']!, mean, 1e-12, 'mean');
  assertClose(out['varBiased']!, vb, 1e-12, 'varBiased');
  assertClose(out['varUnbiased']!, vu, 1e-12, 'varUnbiased');
  assertClose(out['y']!, y, 1e-12, 'y');
});

test('batchNormInference and gemm match hand computations', async () => {
  const x = [1, 2, 3, 4, 5, 6, 7, 8]; // [2, 2, 2, 1]
  const out = await runGraph(
    [
      { name: 'x', dtype: 'float64', shape: [2, 2, 2, 1], data: x },
      { name: 'a', dtype: 'float64', shape: [2, 3], data: [1, 2, 3, 4, 5, 6] },
      { name: 'b', dtype: 'float64', shape: [2, 3], data: [1, 0, -1, 2, 1, 0] },
    ],
    ([xt, a, b]) => {
      const g = xt!.graph;
      const vec = (v: number[]) => g.constant(v, 'float64', [2]);
      return {
        bn: D.batchNormInference(xt!, vec([2, 1]), vec([0, 10]), vec([1, 3]), vec([3, 0]), 1),
        // a @ b^T * 2 + [1, -1]
        gemm: D.gemm(a!, b!, vec([1, -1]), { transB: true, alpha: 2 }),
      };
    },
  );
  // channel 0: (x - 1) / 2 * 2 + 0 = x - 1; channel 1: (x - 3) / 1 * 1 + 10 = x + 7
  assertClose(out['bn']!, [0, 1, 10, 11, 4, 5, 14, 15], 1e-6, 'batchNormInference');
  // a b^T = [[-2, 4], [-2, 13]]
  assertClose(out['gemm']!, [-3, 7, -3, 25], 1e-12, 'gemm');
});

test('symbolic batch: one compiled graph per op chain serves batches 2 and 3, equal to static-batch graphs', async () => {
  const [c, hw] = [3, 8];
  const xData = randn(3 * c * hw * hw, 9);
  const seedData = randn(3 * 5, 14);
  const params = { w: randn(4 * c * 3 * 3, 10), s: randn(4, 11), b: randn(4, 12), fc: randn(3 * 5, 13) };
  const f32 = (data: number[], shape: number[]) => hostTensor('float32', Float32Array.from(data), shape);
  const build = (batch: D.Dim) => {
    const g = new D.Graph('net');
    const x = g.input('x', 'float32', [batch, c, hw, hw]);
    const w = g.input('w', 'float32', [4, c, 3, 3]);
    const s = g.input('s', 'float32', [4]);
    const b = g.input('b', 'float32', [4]);
    const fc = g.input('fc', 'float32', [3, 5]);
    const seed = g.input('seed', 'float32', [batch, 5]);
    // backward through conv, BN (inference), max/avg/global pooling, gather and gemm, seeded with a
    // cotangent: no reduction over the batch axis on the way (see the note on ReduceSum's rule in the report)
    const h1 = D.conv2d(x, w, null, { strides: [2, 2], pads: [1, 1, 1, 1] });
    const h2 = D.maxPool2d(D.relu(D.batchNormInference(h1, s, b, b, D.add(D.mul(s, s), 0.5))), { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] });
    const h3 = D.averagePool2d(h2, { kernel: [2, 2], strides: [1, 1], pads: [0, 0, 1, 1] });
    const pooled = D.reshape(D.globalAveragePool(h3), [batch, 4]);
    const logits = D.gemm(D.gather(pooled, g.constant([3, 0, 3], 'int64', [3]), 1), fc, null);
    const grads = D.gradients(logits, [x, w, s, b, fc], seed);
    if (E.isLeft(grads)) throw new Error(grads.left.map(D.formatError).join('\n'));
    g.output('logits', logits);
    grads.right.forEach((t, i) => g.output(`g${i}`, t!));
    // batch statistics with a symbolic batch: the count is taken at run time
    const bn = D.batchNormTraining(h1, s, b);
    for (const [k, t] of Object.entries(bn)) g.output(`bn_${k}`, t);
    return g;
  };
  const run = async (g: D.Graph, n: number) => {
    const bytes = D.emitOnnx(g, { params: 'inputs' });
    if (E.isLeft(bytes)) throw new Error(bytes.left.map(D.formatError).join('\n'));
    const session = await createSession(bytes.right, { threads: 1 });
    const out = await session.run({
      x: f32(xData.slice(0, n * c * hw * hw), [n, c, hw, hw]), seed: f32(seedData.slice(0, n * 5), [n, 5]),
      w: f32(params.w, [4, c, 3, 3]), s: f32(params.s, [4]), b: f32(params.b, [4]), fc: f32(params.fc, [3, 5]),
    });
    await session.release();
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, Array.from(v.data as Float32Array)]));
  };
  const symbolic = build('batch');
  for (const n of [2, 3]) {
    const [dyn, fixed] = [await run(symbolic, n), await run(build(n), n)];
    assert.equal(Object.keys(dyn).sort(), Object.keys(fixed).sort());
    for (const k of Object.keys(fixed)) assertClose(dyn[k]!, fixed[k]!, 1e-5, `batch ${n}: ${k}`);
  }
});

test('shape mistakes are reported once, naming the shapes; downstream ops stay quiet', () => {
  const g = new D.Graph('bad');
  const x = g.input('x', 'float32', [2, 3, 8, 8]);
  const w = g.input('w', 'float32', [4, 2, 3, 3]); // 2 input channels for a 3-channel x
  const y = D.maxPool2d(D.conv2d(x, w, null), { kernel: [2, 2], strides: [2, 2] });
  const bn = D.batchNormTraining(y, g.input('s', 'float32', [4]), g.input('b', 'float32', [4]));
  g.output('y', D.gather(bn.y, g.constant([0], 'int64', [1]), 1));
  const errs = g.errors.map(D.formatError);
  assert.is(errs.length, 1, errs.join('\n'));
  assert.match(errs[0]!, /Conv: input channels 3 must equal weight dim 1 \(2\)/);
  assert.match(errs[0]!, /\[2, 3, 8, 8\]/);
  assert.match(errs[0]!, /\[4, 2, 3, 3\]/);

  const g2 = new D.Graph('bad-bn');
  const x2 = g2.input('x', 'float32', [2, 3, 4, 4]);
  D.batchNormTraining(x2, g2.input('s', 'float32', [4]), g2.input('b', 'float32', [3]));
  assert.equal(g2.errors.map(D.formatError), ['BatchNormalization: scale [4] must be [3] (the channels of x [2, 3, 4, 4]) (inputs float32[2, 3, 4, 4], float32[4], float32[3], float32[4], float32[4])']);

  const g3 = new D.Graph('bad-pool');
  D.maxPool2d(g3.input('x', 'float32', [1, 1, 4, 4]), { kernel: [2, 2], pads: [2, 0, 0, 0] });
  D.gemm(g3.input('a', 'float32', [2, 3]), g3.input('b', 'float32', [2, 3]), null);
  assert.is(g3.errors.length, 2);
  assert.match(D.formatError(g3.errors[1]!), /Gemm: inner dims differ/);
});

test.run();
