/**
 * Mixed precision (`precision: 'fp16'`, `'bf16'`): autocast MatMuls (dsl/autocast.ts) and dynamic loss scaling
 * (dsl/train/loss-scale.ts) in DINO's step, on the tiny ViT of the PyTorch parity fixture (dino-step.test.ts):
 * the fp16 step follows the fp32 step, an overflow skips the whole update and halves the scale, finite steps grow
 * it, and the default graph has no float16 in it; the bf16-emulated step follows the fp32 step without a scaler, and
 * the bf16 graph has the structure of PyTorch's bfloat16 autocast. ONNX Runtime's CPU provider runs float16 MatMul,
 * so the fp16 tests run in CI; it has no bfloat16 MatMul, so the `bf16` graph is checked for structure only here
 * and runs on a GPU; speed is a GPU question (bench/gpu-check.sh).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import { GROWTH_TRACKER, Graph, LOSS_SCALE, Prng, Scope, autocastMatmul, bfloat16Bits, bfloat16Value, decodeOnnx, emitOnnx, formatError } from '../../dsl/index.ts';
import { type DinoStepConfig, AMP_METRICS, CENTER, DINO_METRICS, STUDENT, TEACHER, buildDinoStep, dinoMetricNames } from '../../models/dino-step.ts';
import { readSafetensors } from '../../runtime/io/safetensors.ts';
import { StepRunner, stackSteps } from '../../runtime/step-runner.ts';
import { TrainState } from '../../runtime/state.ts';
import { createSession, ort } from '../../runtime/backend.ts';

const fixture = readSafetensors(new URL('../fixtures/ref/dino_step_ref.safetensors', import.meta.url).pathname);
const c = JSON.parse(fixture.metadata!['config']!);
const schedule = JSON.parse(fixture.metadata!['schedule']!) as { lr: number; weight_decay: number; teacher_momentum: number; teacher_temp: number; last_layer_frozen: boolean }[];
const tensor = (name: string) => fixture.tensors.get(name)!.data as Float32Array;

const CONFIG: DinoStepConfig = {
  backbone: {
    kind: 'vit', imgSize: c.img_size, patchSize: c.patch_size, inChans: c.in_chans, embedDim: c.embed_dim,
    depth: c.depth, numHeads: c.num_heads, mlpRatio: c.mlp_ratio, qkvBias: true, layerNormEps: c.layer_norm_eps, dropPathRate: 0,
  },
  head: { outDim: c.out_dim, hiddenDim: c.head_hidden_dim, bottleneckDim: c.head_bottleneck_dim, nlayers: c.head_nlayers, useBn: false, normLastLayer: true },
  batch: c.batch, globalSize: c.global_size, localSize: c.local_size, localCrops: c.local_crops,
  studentTemp: c.student_temp, centerMomentum: c.center_momentum, clipGrad: c.clip_grad,
};

async function compile(cfg: DinoStepConfig): Promise<StepRunner> {
  const built = buildDinoStep(cfg);
  if (E.isLeft(built)) throw new Error(built.left.map(formatError).join('\n'));
  return StepRunner.compile(built.right.graph, { threads: 1 });
}

/** The fixture's initial student and teacher; the rest (moments, center, scaler) from the specs' inits. */
function initialState(runner: StepRunner): TrainState {
  const init = new Map<string, Float32Array>();
  for (const spec of runner.signature.state) {
    if (spec.name.startsWith(STUDENT)) init.set(spec.name, tensor(`init.student.${spec.name.slice(STUDENT.length)}`));
    if (spec.name.startsWith(TEACHER)) init.set(spec.name, tensor(`init.teacher.${spec.name.slice(TEACHER.length)}`));
  }
  return TrainState.init(runner.signature.state, Prng.seeded(0), init);
}

/** Step s (1-based) of the fixture: its crops and scheduled scalars, scaled crops optional (to force an overflow). */
function step(runner: StepRunner, state: TrainState, s: number, cropScale = 1): Promise<Record<string, number>> {
  const b = CONFIG.batch, sch = schedule[s - 1]!;
  const crops = (name: string) => Float32Array.from(tensor(name), (v) => v * cropScale);
  return runner.run(
    state,
    {
      globals: new ort.Tensor('float32', crops(`step${s}.crops.global`), [2 * b, 3, 16, 16]),
      locals: new ort.Tensor('float32', crops(`step${s}.crops.local`), [2 * b, 3, 8, 8]),
    },
    { lr: sch.lr, wd: sch.weight_decay, momentum: sch.teacher_momentum, teacher_temp: sch.teacher_temp, 'gate.last_layer': sch.last_layer_frozen ? 0 : 1 },
  );
}

const snapshot = (state: TrainState) => new Map(state.names().map((n) => [n, Float32Array.from(state.values(n))]));
const scalar = (state: TrainState, name: string) => state.values(name)[0]!;

/** `v` without the key part of a qkv bias, whose gradient is rounding noise (see dino-step.test.ts). */
function withoutKeyBias(name: string, v: Float32Array): Float32Array {
  if (!name.endsWith('attn.qkv.bias')) return v;
  const d = v.length / 3;
  return Float32Array.from([...v.subarray(0, d), ...v.subarray(2 * d)]);
}

/** max |a - b| / max |b| */
function relativeError(a: Float32Array, b: Float32Array): number {
  let diff = 0, scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / Math.max(scale, 1e-30);
}

const sameBits = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/**
 * The tiny model's loss averages over 3 images x 6 view pairs (DINO's: 64 x 10 and more), so its cotangents are
 * large, and at GradScaler's 65536 a float16 product of its backward pass overflows (the first step would be skipped,
 * as PyTorch would, and the scale halved). These tests start lower, where its steps are finite.
 */
const SAFE_SCALE = 1024;

/*
 * Tolerances. float16 keeps 11 significant bits: each rounding (a MatMul's operands, its product, the cotangent at
 * its output) is off by at most u = 2^-11 = 4.9e-4 relative, and a value passes through several: the loss through
 * the forward products (5e-3 = 10u allowed, 1.2e-3 seen), the center through the teacher's (5e-3 allowed, 5e-4 seen),
 * a gradient through the forward and backward products above it. Gradients are read from Adam's first moment
 * m = Σ (1-β1) β1^k g (of clipped gradients: no amplification) relative to each tensor's largest entry: 1e-2 = 20u
 * allowed; seen at most 3e-3, and 5.5e-3 for the last layer's weight_v, whose weight-norm gradient
 * (g - <g, v̂> v̂) / |v| cancels and loses a few bits more. The parameters themselves are not compared entry by entry:
 * Adam's first steps move each entry by about lr·sign(g), so an entry whose gradient is within rounding of zero moves
 * the other way in the other precision (the same reason dino-step.test.ts leaves out the key bias). They are held to
 * Adam's bound instead: no entry may differ by more than 2 Σ lr, two full steps the other way.
 *
 * `fp16-emulated` carries every float16 rounding on a CPU; `fp16` is the graph a GPU runs, whose float16 MatMuls the
 * CPU provider runs in float32, dropping some of the roundings (dsl/autocast.ts): it must pass the same bounds.
 */
for (const precision of ['fp16-emulated', 'fp16'] as const) {
  test(`an ${precision} step follows the fp32 step for 3 steps (loss, gradients, center, Adam bound)`, async () => {
  const r32 = await compile(CONFIG), r16 = await compile({ ...CONFIG, precision, lossScaling: { initScale: SAFE_SCALE } });
  const s32 = initialState(r32), s16 = initialState(r16);
  let lrSum = 0;
  for (let s = 1; s <= 3; s++) {
    const m32 = await step(r32, s32, s), m16 = await step(r16, s16, s);
    lrSum += schedule[s - 1]!.lr;
    assert.ok(Math.abs(m16.loss! - m32.loss!) <= 5e-3 * Math.abs(m32.loss!), `step ${s}: loss ${m16.loss} (fp16) vs ${m32.loss} (fp32)`);
    assert.is(m16.skipped, 0, `step ${s} was skipped`);
    assert.is(m16.loss_scale, SAFE_SCALE);
    assert.is(m32.skipped, undefined, 'the fp32 step has no scaler metrics');
    for (const name of s32.names().filter((n) => n.startsWith('optim.m.'))) {
      const e = relativeError(withoutKeyBias(name, s16.values(name)), withoutKeyBias(name, s32.values(name)));
      assert.ok(e <= 1e-2, `step ${s}: ${name} differs by ${e.toExponential(2)} relative to its max`);
    }
    const ec = relativeError(s16.values(CENTER), s32.values(CENTER));
    assert.ok(ec <= 5e-3, `step ${s}: center differs by ${ec.toExponential(2)}`);
  }
  for (const name of s32.names().filter((n) => n.startsWith(STUDENT) || n.startsWith(TEACHER))) {
    const a = s16.values(name), b = s32.values(name);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    assert.ok(worst <= 2 * lrSum, `${name}: an entry differs by ${worst}, more than two Adam steps (${2 * lrSum})`);
  }
  assert.is(scalar(s16, LOSS_SCALE), SAFE_SCALE);
  assert.is(scalar(s16, GROWTH_TRACKER), 3);
  await r32.release();
  await r16.release();
  });
}

test('an overflow skips the whole update bit for bit and halves the scale; finite steps grow it', async () => {
  const runner = await compile({ ...CONFIG, precision: 'fp16-emulated', lossScaling: { initScale: SAFE_SCALE, growthInterval: 2 } });
  const state = initialState(runner);
  const scaler = new Set([LOSS_SCALE, GROWTH_TRACKER]);

  let m = await step(runner, state, 1);
  assert.equal([m.skipped, m.loss_scale, scalar(state, LOSS_SCALE), scalar(state, GROWTH_TRACKER)], [0, SAFE_SCALE, SAFE_SCALE, 1]);
  m = await step(runner, state, 2); // the second finite step in a row: the scale doubles
  assert.equal([m.skipped, m.loss_scale, scalar(state, LOSS_SCALE), scalar(state, GROWTH_TRACKER)], [0, SAFE_SCALE, 2 * SAFE_SCALE, 0]);

  m = await step(runner, state, 3);
  assert.equal([m.skipped, m.loss_scale, scalar(state, LOSS_SCALE), scalar(state, GROWTH_TRACKER)], [0, 2 * SAFE_SCALE, 2 * SAFE_SCALE, 1]);

  // A scale of 2^100 makes the float16 cotangents Inf: nothing may change but the scaler.
  state.set(LOSS_SCALE, new ort.Tensor('float32', Float32Array.of(2 ** 100), []));
  assert.is(scalar(state, GROWTH_TRACKER), 1);
  const before = snapshot(state);
  m = await step(runner, state, 3);
  assert.is(m.skipped, 1);
  assert.is(m.loss_scale, 2 ** 100);
  assert.ok(Number.isFinite(m.loss), `the loss itself is finite (${m.loss}): only the scaled gradients overflow`);
  assert.is(scalar(state, LOSS_SCALE), 2 ** 99);
  assert.is(scalar(state, GROWTH_TRACKER), 0);
  for (const [name, v] of before) if (!scaler.has(name)) assert.ok(sameBits(state.values(name), v), `${name} changed on a skipped step`);

  // An overflow in the forward pass (huge crops: float16 activations past 65504) poisons the loss and the teacher's
  // logits; the center and the teacher are still kept.
  const before2 = snapshot(state);
  m = await step(runner, state, 3, 1e6);
  assert.ok(!Number.isFinite(m.loss), `the forward pass overflowed (loss ${m.loss})`);
  assert.is(m.skipped, 1);
  assert.is(scalar(state, LOSS_SCALE), 2 ** 98);
  for (const [name, v] of before2) if (!scaler.has(name)) assert.ok(sameBits(state.values(name), v), `${name} changed on a skipped step`);

  // And training goes on from the kept state.
  state.set(LOSS_SCALE, new ort.Tensor('float32', Float32Array.of(SAFE_SCALE), []));
  m = await step(runner, state, 3);
  assert.is(m.skipped, 0);
  assert.ok(!sameBits(state.values(`${STUDENT}head.mlp.0.weight`), before2.get(`${STUDENT}head.mlp.0.weight`)!), 'a finite step updates the student');
  await runner.release();
});

/** Element type of every value of an emitted model, by name. */
function valueTypes(model: any): Map<string, number> {
  const types = new Map<string, number>();
  for (const v of [...model.graph.input, ...model.graph.output, ...model.graph.value_info]) types.set(v.name, v.type.tensor_type.elem_type);
  for (const init of model.graph.initializer) types.set(init.name, init.data_type);
  return types;
}

function emitted(cfg: DinoStepConfig): Uint8Array {
  const built = buildDinoStep(cfg);
  if (E.isLeft(built)) throw new Error(built.left.map(formatError).join('\n'));
  const bytes = emitOnnx(built.right.graph, { params: 'inputs' });
  if (E.isLeft(bytes)) throw new Error(bytes.left.map(formatError).join('\n'));
  return bytes.right;
}

const FLOAT = 1, FLOAT16 = 10, BFLOAT16 = 16;

test('fp16 graph: MatMuls take float16, softmax/LayerNorm/GELU/the loss take float32, state stays float32', () => {
  for (const recompute of ['none', 'mlp'] as const) {
    const model = decodeOnnx(emitted({ ...CONFIG, precision: 'fp16', recompute }));
    const types = valueTypes(model);
    const inputType = (node: any, i = 0) => types.get(node.input[i]);
    const matmuls = model.graph.node.filter((n: any) => n.op_type === 'MatMul');
    const half = matmuls.filter((n: any) => inputType(n, 0) === FLOAT16 && inputType(n, 1) === FLOAT16);
    // float32 MatMuls: only the position-embedding resize for the local crops (a constant matrix, as DINO's bicubic
    // interpolation runs outside autocast) and its gradient.
    const full = matmuls.filter((n: any) => !half.includes(n));
    assert.ok(half.length > 0 && full.length <= 2, `${half.length} float16 MatMuls, ${full.length} float32: ${full.map((n: any) => n.name).join(', ')}`);
    for (const n of full) assert.ok(n.input.every((x: string) => types.get(x) === FLOAT), `${n.name} mixes dtypes`);
    for (const n of model.graph.node.filter((x: any) => ['Softmax', 'LogSoftmax', 'LayerNormalization', 'Gelu', 'ReduceSum', 'ReduceMean', 'Sqrt', 'Exp', 'Log'].includes(x.op_type))) {
      assert.is(inputType(n), FLOAT, `${n.op_type} ${n.name} runs in float32`);
    }
    for (const v of [...model.graph.input, ...model.graph.output]) assert.is(v.type.tensor_type.elem_type, FLOAT, `${v.name} is float32`);
  }
});

test('fp32 (the default) is the graph without autocast: no float16, the same bytes as an explicit fp32', () => {
  const plain = emitted(CONFIG);
  assert.ok(Buffer.from(plain).equals(Buffer.from(emitted({ ...CONFIG, precision: 'fp32', lossScaling: { growthInterval: 2 } }))));
  const types = valueTypes(decodeOnnx(plain));
  assert.not.ok([...types.values()].includes(FLOAT16), 'a float16 value in the fp32 graph');
  assert.not.ok([...types.keys()].some((n) => n.includes('loss_scal')), 'loss scaling in the fp32 graph');
});

test('K fp16 steps in one run (ONNX Loop) equal K single runs bit for bit, scaler state included', async () => {
  const runner = await compile({ ...CONFIG, precision: 'fp16-emulated', lossScaling: { initScale: SAFE_SCALE, growthInterval: 1 } });
  const one = initialState(runner), loop = initialState(runner);
  const b = CONFIG.batch;
  const feeds = (s: number) => ({
    globals: new ort.Tensor('float32', tensor(`step${s}.crops.global`), [2 * b, 3, 16, 16]),
    locals: new ort.Tensor('float32', tensor(`step${s}.crops.local`), [2 * b, 3, 8, 8]),
  });
  const scalars = (s: number) => {
    const sch = schedule[s - 1]!;
    return { lr: sch.lr, wd: sch.weight_decay, momentum: sch.teacher_momentum, teacher_temp: sch.teacher_temp, 'gate.last_layer': sch.last_layer_frozen ? 0 : 1 };
  };
  const singles = [await runner.run(one, feeds(1), scalars(1)), await runner.run(one, feeds(2), scalars(2))];
  const looped = await runner.runSteps(loop, stackSteps([feeds(1), feeds(2)]), [scalars(1), scalars(2)]);
  assert.equal(looped, singles);
  assert.is(scalar(loop, LOSS_SCALE), 4 * SAFE_SCALE); // growthInterval 1: doubled after each finite step
  for (const name of one.names()) assert.ok(sameBits(loop.values(name), one.values(name)), name);
  await runner.release();
});

/** float32 `v` rounded to bfloat16, nearest even: the JS reference (dsl/float16.ts, checked bit by bit there). */
const bf16 = (v: number) => bfloat16Value(bfloat16Bits(v));

test('bf16-emulated MatMul rounds operands and product to bfloat16 (nearest even) as a JS reference does', async () => {
  // An outer product (inner dimension 1), so the float32 product is a single, exactly reproducible rounding: the
  // product of two bfloat16 values (8 significant bits each) is exact in float32 unless it leaves float32's range.
  const a = [1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, 1 + 2 ** -4, -(1 + 2 ** -5 + 2 ** -9), 1.5 * 2 ** -133, 2 ** -134, 2 ** -126 * (1 + 2 ** -8),
    (2 - 2 ** -7) * 2 ** 127, (2 - 2 ** -8) * 2 ** 127, 1e6 + 1, Math.PI];
  const b = [1, 1 + 2 ** -8 + 2 ** -20, 1 + 2 ** -4, -3, 2 ** -7, 2 ** 100];
  const g = new Graph();
  const s = new Scope(g, '', '', 'bf16-emulated');
  const y = autocastMatmul(s, g.input('a', 'float32', [a.length, 1]), g.input('b', 'float32', [1, b.length]));
  assert.is(y.dtype, 'float32');
  g.output('y', y);
  const bytes = emitOnnx(g, { params: 'inputs' });
  if (E.isLeft(bytes)) throw new Error(bytes.left.map(formatError).join('\n'));
  const casts = decodeOnnx(bytes.right).graph.node.filter((n: any) => n.op_type === 'Cast').map((n: any) => n.attribute[0].i);
  assert.equal(casts.sort(), [FLOAT, FLOAT, FLOAT, BFLOAT16, BFLOAT16, BFLOAT16], 'three float32 -> bfloat16 -> float32 pairs');
  const session = await createSession(bytes.right, { threads: 1 }); // default optimisation: the pairs must survive it
  const out = (await session.run({
    a: new ort.Tensor('float32', Float32Array.from(a), [a.length, 1]), b: new ort.Tensor('float32', Float32Array.from(b), [1, b.length]),
  }))['y']!.data as Float32Array;
  let unlikeFloat32 = 0;
  a.forEach((ai, i) => b.forEach((bj, j) => {
    const want = bf16(Math.fround(0 + Math.fround(bf16(ai) * bf16(bj)))); // accumulated from +0, as MatMul sums
    const got = out[i * b.length + j]!;
    assert.ok(Object.is(got, want), `${ai} x ${bj}: ${got}, reference ${want}`);
    if (!Object.is(got, Math.fround(Math.fround(ai) * Math.fround(bj)))) unlikeFloat32++;
  }));
  assert.ok(unlikeFloat32 > (a.length * b.length) / 2, `only ${unlikeFloat32} products differ from float32's`);
  // The cases named: ties to even, a tie in the product, a subnormal, overflow to Inf at bfloat16's largest.
  const at = (ai: number, bj: number) => out[a.indexOf(ai) * b.length + b.indexOf(bj)]!;
  assert.is(at(1 + 2 ** -8, 1), 1);
  assert.is(at(1 + 3 * 2 ** -8, 1), 1 + 2 ** -6);
  assert.is(at(1 + 2 ** -4, 1 + 2 ** -4), 1 + 2 ** -3); // 1 + 2^-3 + 2^-8: a tie, to even
  assert.is(at(1.5 * 2 ** -133, 1), 2 ** -132);
  assert.is(at(2 ** -134, 1), 0);
  assert.is(at((2 - 2 ** -8) * 2 ** 127, 1), Infinity);
  assert.is(at((2 - 2 ** -7) * 2 ** 127, 1 + 2 ** -8 + 2 ** -20), Infinity); // the product passes bfloat16's range
  await session.release();
});

/*
 * Tolerances for bfloat16: 8 significant bits, so each rounding is off by at most u = 2^-8 = 3.9e-3 relative, 8 times
 * float16's, and the bounds are the fp16 test's multiples of u: the loss, the teacher's entropy (and its KL, on the
 * entropy's scale) and the center 10u = 3.9e-2, the gradient norm and the gradients (Adam's first moment, relative to each tensor's largest
 * entry) 20u = 7.8e-2; seen at most: the loss 0.9u, the KL 1.4u, the center 1.1u, the gradient norm 2.6u, a gradient
 * 5.7u. Unlike the fp16 test, each bf16 step starts from the fp32 step's state, so what is compared is
 * one step's roundings: Adam's first steps move an entry by about lr whatever its gradient's size, so a gradient
 * within rounding of zero moves the entry the other way, and at 8 bits enough entries do that for the models of a
 * free-running comparison to differ by more than rounding by step 2 (seen: the loss 11u apart at step 3, the last
 * layer's weight_v gradient, whose weight-norm projection cancels, 63u). The free-running 3 steps are held to
 * Adam's bound instead, as in the fp16 test: no entry moves more than 2 Σ lr from the fp32 run's.
 */
const U_BF16 = 2 ** -8;

test('a bf16-emulated step follows the fp32 step (loss, metrics, gradients, center), each of 3 steps from the same state, without a scaler', async () => {
  // lossScaling is given to show that bf16 ignores it, as fp32 does.
  const r32 = await compile(CONFIG), rbf = await compile({ ...CONFIG, precision: 'bf16-emulated', lossScaling: { initScale: SAFE_SCALE } });
  const s32 = initialState(r32), sbf = initialState(rbf), free = initialState(rbf);
  assert.equal(rbf.signature.metrics, [...DINO_METRICS], 'the metrics of an fp32 step');
  assert.not.ok(sbf.names().some((n) => n === LOSS_SCALE || n === GROWTH_TRACKER), 'no scaler state');
  assert.equal(sbf.names().sort(), s32.names().sort());
  let lrSum = 0;
  const within = (what: string, e: number, bound: number) => {
    assert.ok(e <= bound, `${what} differs by ${e.toExponential(2)} (${(e / U_BF16).toFixed(1)}u), more than ${(bound / U_BF16).toFixed(0)}u`);
  };
  for (let s = 1; s <= 3; s++) {
    for (const name of s32.names()) sbf.set(name, new ort.Tensor('float32', Float32Array.from(s32.values(name)), s32.get(name).dims));
    const m32 = await step(r32, s32, s), mbf = await step(rbf, sbf, s);
    await step(rbf, free, s);
    lrSum += schedule[s - 1]!.lr;
    assert.ok(mbf.loss !== m32.loss, `step ${s}: the loss carries no bfloat16 rounding`);
    for (const k of ['loss', 'teacher_entropy'] as const) within(`step ${s}: ${k}`, Math.abs(mbf[k]! - m32[k]!) / Math.abs(m32[k]!), 10 * U_BF16);
    // The KL to the batch mean is a difference of two entropy-sized terms (cross-entropy minus entropy), small here
    // (a near-uniform teacher at init): its error is on the entropy's scale, not its own.
    within(`step ${s}: teacher_kl`, Math.abs(mbf.teacher_kl! - m32.teacher_kl!) / m32.teacher_entropy!, 10 * U_BF16);
    within(`step ${s}: grad_norm`, Math.abs(mbf.grad_norm! - m32.grad_norm!) / m32.grad_norm!, 20 * U_BF16);
    assert.is(mbf.skipped, undefined);
    assert.is(mbf.loss_scale, undefined);
    for (const name of s32.names().filter((n) => n.startsWith('optim.m.'))) {
      within(`step ${s}: ${name}`, relativeError(withoutKeyBias(name, sbf.values(name)), withoutKeyBias(name, s32.values(name))), 20 * U_BF16);
    }
    within(`step ${s}: center`, relativeError(sbf.values(CENTER), s32.values(CENTER)), 10 * U_BF16);
  }
  for (const name of s32.names().filter((n) => n.startsWith(STUDENT) || n.startsWith(TEACHER))) {
    const a = free.values(name), b = s32.values(name);
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    assert.ok(worst <= 2 * lrSum, `${name}: an entry differs by ${worst}, more than two Adam steps (${2 * lrSum})`);
  }
  await r32.release();
  await rbf.release();
});

test('bf16 graph: MatMuls take bfloat16 casts of float32, no loss scaling, state and softmax/LayerNorm/loss float32', async () => {
  for (const recompute of ['none', 'mlp'] as const) {
    const model = decodeOnnx(emitted({ ...CONFIG, precision: 'bf16', recompute }));
    const types = valueTypes(model);
    const producer = new Map<string, any>(model.graph.node.flatMap((n: any) => n.output.map((o: string) => [o, n])));
    const matmuls = model.graph.node.filter((n: any) => n.op_type === 'MatMul');
    const half = matmuls.filter((n: any) => n.input.every((x: string) => types.get(x) === BFLOAT16));
    // As for fp16: only the position-embedding resize for the local crops (and its gradient) stays float32.
    const full = matmuls.filter((n: any) => !half.includes(n));
    assert.ok(half.length > 0 && full.length <= 2, `${half.length} bfloat16 MatMuls, ${full.length} float32: ${full.map((n: any) => n.name).join(', ')}`);
    for (const n of full) assert.ok(n.input.every((x: string) => types.get(x) === FLOAT), `${n.name} mixes dtypes`);
    for (const n of half) {
      for (const x of n.input) {
        const p = producer.get(x);
        // A forward operand is a Cast of a float32 value; a backward one may be a reshape or transpose of one, or
        // a cotangent: the Cast of the float32 gradient arriving at the product (the Cast's VJP).
        if (p?.op_type === 'Cast') assert.is(types.get(p.input[0]), FLOAT, `${n.name}: ${x} casts float32`);
      }
    }
    const castsToHalf = model.graph.node.filter((n: any) => n.op_type === 'Cast' && n.attribute[0].i === BFLOAT16);
    assert.ok(castsToHalf.length >= half.length, `${castsToHalf.length} casts to bfloat16 for ${half.length} MatMuls`);
    assert.not.ok([...types.values()].includes(FLOAT16), 'a float16 value in the bf16 graph');
    assert.not.ok([...types.keys()].some((n) => n.includes('loss_scal')), 'loss scaling in the bf16 graph');
    assert.not.ok(model.graph.node.some((n: any) => n.name.includes('loss_scaling')), 'a loss-scaling node in the bf16 graph');
    for (const n of model.graph.node.filter((x: any) => ['Softmax', 'LogSoftmax', 'LayerNormalization', 'Gelu', 'ReduceSum', 'ReduceMean', 'Sqrt', 'Exp', 'Log'].includes(x.op_type))) {
      assert.is(types.get(n.input[0]), FLOAT, `${n.op_type} ${n.name} runs in float32`);
    }
    for (const v of [...model.graph.input, ...model.graph.output]) assert.is(v.type.tensor_type.elem_type, FLOAT, `${v.name} is float32`);
    const metrics = model.graph.output.map((v: any) => v.name).filter((n: string) => n.startsWith('metric.')).map((n: string) => n.slice('metric.'.length));
    assert.equal(metrics, [...DINO_METRICS]);
  }
  // Structural only on this machine: ONNX Runtime's CPU provider has no bfloat16 MatMul kernel (a GPU runs it;
  // `dino train` builds bf16-emulated for other providers, runtime/dino/train.ts stepPrecision).
  const refused = await compile({ ...CONFIG, precision: 'bf16' }).then((r) => r.release().then(() => undefined), (e: unknown) => e);
  assert.match(String(refused), /MatMul/, 'the CPU provider ran a bfloat16 MatMul: bf16 need no longer be emulated on CPU');
});

test('the metrics of each precision: the scaler\'s only where the loss is scaled (fp16)', () => {
  assert.equal(dinoMetricNames('fp32'), [...DINO_METRICS]);
  assert.equal(dinoMetricNames('bf16'), [...DINO_METRICS]);
  assert.equal(dinoMetricNames('bf16-emulated'), [...DINO_METRICS]);
  assert.equal(dinoMetricNames('fp16'), [...DINO_METRICS, ...AMP_METRICS]);
  assert.equal(dinoMetricNames('fp16-emulated'), [...DINO_METRICS, ...AMP_METRICS]);
  for (const precision of ['fp32', 'fp16', 'bf16'] as const) {
    const model = decodeOnnx(emitted({ ...CONFIG, precision }));
    const metrics = model.graph.output.map((v: any) => v.name).filter((n: string) => n.startsWith('metric.')).map((n: string) => n.slice('metric.'.length));
    assert.equal(metrics, [...dinoMetricNames(precision)], precision);
  }
});

test.run();
