/**
 * Mixed precision (`precision: 'fp16'`): autocast MatMuls (dsl/autocast.ts) and dynamic loss scaling
 * (dsl/train/loss-scale.ts) in DINO's step, on the tiny ViT of the PyTorch parity fixture (dino-step.test.ts):
 * the fp16 step follows the fp32 step, an overflow skips the whole update and halves the scale, finite steps grow
 * it, and the default graph has no float16 in it. ONNX Runtime's CPU provider runs float16 MatMul, so all of this
 * runs in CI; speed is a GPU question (bench/gpu-check.sh).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import { GROWTH_TRACKER, LOSS_SCALE, Prng, decodeOnnx, emitOnnx, formatError } from '../../dsl/index.ts';
import { type DinoStepConfig, CENTER, STUDENT, TEACHER, buildDinoStep } from '../../models/dino-step.ts';
import { readSafetensors } from '../../runtime/io/safetensors.ts';
import { StepRunner, stackSteps } from '../../runtime/step-runner.ts';
import { TrainState } from '../../runtime/state.ts';
import { ort } from '../../runtime/backend.ts';

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

const FLOAT = 1, FLOAT16 = 10;

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

test.run();
