/**
 * float16 in the DSL: the bit conversions (dsl/float16.ts) against ONNX Runtime's own Cast, float16 constants,
 * inputs and outputs through a session, and gradients through a float16 MatMul. bfloat16: the bit conversions, by
 * hand on the edge cases and against ONNX Runtime's CPU Cast (the rounding `bf16-emulated` relies on), and constants.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import { Graph, bfloat16Bits, bfloat16Value, cast, decodeOnnx, emitOnnx, float16Bits, float16Value, formatError, fromFloat16, gradients, matmul, mul, sumAll, toFloat16 } from '../../dsl/index.ts';
import { TENSOR_TYPE } from '../../dsl/onnx/enums.ts';
import { createSession, float16, floatValues, ort } from '../../runtime/backend.ts';

function bytesOf(g: Graph): Uint8Array {
  const r = emitOnnx(g, { params: 'inputs' });
  if (E.isLeft(r)) throw new Error(r.left.map(formatError).join('\n'));
  return r.right;
}

test('every float16 bit pattern survives value -> bits', () => {
  for (let h = 0; h < 0x10000; h++) {
    const v = float16Value(h);
    if (Number.isNaN(v)) assert.ok((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0);
    else assert.is(float16Bits(v), h, `0x${h.toString(16)}`);
  }
  assert.equal([float16Value(0x3c00), float16Value(0x7bff), float16Value(0x0001), float16Value(0xfc00)], [1, 65504, 2 ** -24, -Infinity]);
});

test('float16Bits rounds as ONNX Runtime\'s Cast (nearest, ties to even, overflow to Inf, subnormals)', async () => {
  const values = [0, -0, 1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -11 + 2 ** -20, 65504, 65519, 65520, 1e6, -1e6, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 2 ** -26,
    6.1e-5, 1e-8, Infinity, -Infinity, NaN, Math.PI, -Math.E];
  for (let i = 0; i < 200; i++) values.push((Math.sin(i * 12.9898) * 43758.5453 % 1) * 10 ** ((i % 14) - 8));
  const g = new Graph();
  g.output('y', cast(g.input('x', 'float32', [values.length]), 'float16'));
  const session = await createSession(bytesOf(g), { threads: 1 });
  const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from(values), [values.length]) });
  assert.is(out['y']!.type, 'float16');
  const theirs = out['y']!.data as Uint16Array;
  values.forEach((v, i) => assert.is(float16Bits(v), theirs[i], `${v}`));
  await session.release();
});

test('float16 constants, inputs and outputs through a session', async () => {
  const g = new Graph();
  const x = g.input('x', 'float16', [3]);
  g.output('y', mul(x, 0.1)); // a float16 scalar constant, emitted as bits
  const bytes = bytesOf(g);
  const model = decodeOnnx(bytes);
  assert.is(model.graph.input[0].type.tensor_type.elem_type, TENSOR_TYPE.float16);
  const constant = model.graph.initializer[0];
  assert.is(constant.data_type, 10);
  assert.equal(constant.raw_data, [...new Uint8Array(Uint16Array.of(float16Bits(0.1)).buffer)]);
  const session = await createSession(bytes, { threads: 1 });
  const out = await session.run({ x: float16([1, -2, 300], [3]) });
  const expected = fromFloat16(toFloat16([1, -2, 300].map((v) => float16Value(float16Bits(v)) * float16Value(float16Bits(0.1)))));
  assert.equal(Array.from(floatValues(out['y']!)), Array.from(expected));
  await session.release();
});

test('gradients flow through Cast into a float16 MatMul and back as float32', async () => {
  const g = new Graph();
  const a = g.input('a', 'float32', [2, 3]), b = g.input('b', 'float32', [3, 2]);
  const y = cast(matmul(cast(a, 'float16'), cast(b, 'float16')), 'float32');
  const loss = sumAll(mul(y, y));
  const grads = gradients(loss, [a, b]);
  if (E.isLeft(grads)) throw new Error(grads.left.map(formatError).join('\n'));
  const [ga, gb] = grads.right as [ReturnType<typeof cast>, ReturnType<typeof cast>];
  assert.is(ga.dtype, 'float32');
  assert.is(gb.dtype, 'float32');
  g.output('ga', ga);
  g.output('gb', gb);
  const session = await createSession(bytesOf(g), { threads: 1 });
  const av = [0.5, -1, 2, 0.25, 1.5, -0.75], bv = [1, 0.5, -1, 2, 0.125, -0.5]; // exact in float16
  const out = await session.run({ a: new ort.Tensor('float32', Float32Array.from(av), [2, 3]), b: new ort.Tensor('float32', Float32Array.from(bv), [3, 2]) });
  // dL/da = 2 y b^T with y = a b (every value here is exact in float16)
  const yv = [0, 1].flatMap((i) => [0, 1].map((j) => [0, 1, 2].reduce((s, k) => s + av[i * 3 + k]! * bv[k * 2 + j]!, 0)));
  const gaRef = [0, 1].flatMap((i) => [0, 1, 2].map((k) => [0, 1].reduce((s, j) => s + 2 * yv[i * 2 + j]! * bv[k * 2 + j]!, 0)));
  assert.equal(Array.from(out['ga']!.data as Float32Array), gaRef);
  await session.release();
});

const bf16 = (v: number) => bfloat16Value(bfloat16Bits(v));

/**
 * bfloat16 edge values and where round-to-nearest-even takes them (the ulp at 1 is 2^-7; the largest finite bfloat16
 * is (2 - 2^-7) 2^127; its smallest subnormal is 2^-133, float32's 2^-149). Also the inputs of the Cast test below.
 */
const BF16_EDGES: readonly (readonly [number, number])[] = [
  [1 + 2 ** -8, 1], // a tie: to the even neighbour below
  [1 + 3 * 2 ** -8, 1 + 2 ** -6], // a tie: to the even neighbour above
  [1 + 2 ** -8 + 2 ** -20, 1 + 2 ** -7], // just above the tie
  [-(1 + 2 ** -8 + 2 ** -20), -(1 + 2 ** -7)],
  [1 + 2 ** -9, 1],
  [(2 - 2 ** -7) * 2 ** 127, (2 - 2 ** -7) * 2 ** 127], // the largest finite bfloat16
  [(2 - 2 ** -8) * 2 ** 127, Infinity], // the tie above it, odd below: carries into the exponent, to Inf
  [(2 - 2 ** -8 - 2 ** -20) * 2 ** 127, (2 - 2 ** -7) * 2 ** 127],
  [3.4028234663852886e38, Infinity], // float32's largest
  [-3.4028234663852886e38, -Infinity],
  [2 ** -126 * (1 + 2 ** -8), 2 ** -126], // the smallest normal, a tie
  [2 ** -133, 2 ** -133], // the smallest bfloat16 subnormal
  [1.5 * 2 ** -133, 2 ** -132], // a subnormal tie, odd below: up
  [2 ** -134, 0], // a subnormal tie, even (zero) below
  [3 * 2 ** -134, 2 ** -132],
  [2 ** -149, 0], // float32's smallest subnormal
  [-(2 ** -149), -0],
  [1e6 + 1, 999424], // 8 significant bits: the ulp at 2^19 is 2^12
  [Infinity, Infinity], [-Infinity, -Infinity], [0, 0], [-0, -0],
];

test('bfloat16 bits: every pattern survives value -> bits; round to nearest even on the edge cases', () => {
  for (let h = 0; h < 0x10000; h++) {
    const v = bfloat16Value(h);
    if (Number.isNaN(v)) assert.ok(Number.isNaN(bf16(v)), `0x${h.toString(16)}`);
    else assert.is(bfloat16Bits(v), h, `0x${h.toString(16)}`);
  }
  for (const [x, want] of BF16_EDGES) assert.ok(Object.is(bf16(x), want), `${x} -> ${bf16(x)}, want ${want}`);
  assert.ok(Number.isNaN(bf16(NaN)));
});

test('bfloat16Bits rounds as ONNX Runtime\'s CPU Cast float32 -> bfloat16 -> float32, kept through graph optimisation', async () => {
  const values = [...BF16_EDGES.map(([x]) => x), NaN, Math.PI, -Math.E];
  for (let i = 0; i < 400; i++) values.push((Math.sin(i * 12.9898) * 43758.5453 % 1) * 10 ** ((i % 80) - 40));
  const g = new Graph();
  g.output('y', cast(cast(g.input('x', 'float32', [values.length]), 'bfloat16'), 'float32'));
  // onnxruntime-node cannot return a bfloat16 tensor, so the pair is compared; the session runs at the default
  // optimisation level ('all'), where dropping the pair would show as unrounded values.
  const session = await createSession(bytesOf(g), { threads: 1 });
  const out = (await session.run({ x: new ort.Tensor('float32', Float32Array.from(values), [values.length]) }))['y']!.data as Float32Array;
  let changed = 0;
  values.forEach((v, i) => {
    const want = bf16(v);
    assert.ok(Object.is(out[i], want) || (Number.isNaN(want) && Number.isNaN(out[i]!)), `${v}: ORT ${out[i]}, reference ${want}`);
    if (!Object.is(Math.fround(v), want) && !Number.isNaN(v)) changed++;
  });
  assert.ok(changed > values.length / 2, `only ${changed} values were changed by the rounding`);
  await session.release();
});

test('bfloat16 constants are written as their rounded bits', () => {
  const g = new Graph();
  g.output('y', cast(mul(cast(g.input('x', 'float32', [3]), 'bfloat16'), 1 + 3 * 2 ** -8), 'float32'));
  const model = decodeOnnx(bytesOf(g));
  const constant = model.graph.initializer[0];
  assert.is(constant.data_type, TENSOR_TYPE.bfloat16);
  assert.is(TENSOR_TYPE.bfloat16, 16);
  assert.equal(constant.raw_data, [...new Uint8Array(Uint16Array.of(bfloat16Bits(1 + 2 ** -6)).buffer)]);
});

test.run();
