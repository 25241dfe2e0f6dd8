/**
 * The ViT's optional convolutional stem (`ViTConfig.convStem`): the stem against a direct JavaScript 3x3 convolution +
 * GELU, a DINO step that trains it, the inference export for any image size with it (onnxruntime-node and -web), the
 * symbolic-size rule of Conv it relies on, and the `--set backbone.convStem=[...]` override. Its gradient check is
 * in gradients.test.ts, beside the other whole-model checks.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import { Graph, Prng, Scope, conv2d, emitOnnx, formatError } from '../../dsl/index.ts';
import { initialValues } from '../../dsl/init.ts';
import { paramSpecs } from '../../models/network.ts';
import { convStem, type ViTConfig } from '../../models/vit.ts';
import { applyOverrides, stepConfig } from '../../runtime/dino/config.ts';
import { getPreset } from '../../runtime/dino/presets.ts';
import { buildTeacherGraph, backboneSpecs } from '../../exports/export/teacher.ts';
import { TrainState } from '../../runtime/state.ts';
import { createWebSession, ortWeb } from '../../runtime/web.ts';
import { TINY_STEP, compileStep, randomStepBatch } from './tiny-step.ts';
import { type Feed, relativeError, runGraph } from './run.ts';

const vit: ViTConfig = {
  kind: 'vit', imgSize: 8, patchSize: 4, inChans: 1, embedDim: 8, depth: 2, numHeads: 2,
  mlpRatio: 4, qkvBias: true, layerNormEps: 1e-6, dropPathRate: 0, convStem: [3, 2],
};
const prng = Prng.seeded(7);
const randomFeed = (shape: number[]): Feed => ({ data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => prng.normal()), shape });

/** erf to ~1e-7 (Abramowitz & Stegun 7.1.26 is 1.5e-7; this is its float64 evaluation). */
function erf(x: number): number {
  const t = 1 / (1 + 0.3275911 * Math.abs(x));
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-x * x);
  return x >= 0 ? y : -y;
}
const gelu = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));

/** One 3x3 convolution, stride 1, zero padding 1, then GELU: [N, C, H, W] -> [N, O, H, W]. */
function convGeluReference(x: Float32Array, [n, c, h, w]: number[], weight: Float32Array, bias: Float32Array, o: number): Float32Array {
  const out = new Float32Array(n! * o * h! * w!);
  for (let b = 0; b < n!; b++) for (let k = 0; k < o; k++) for (let i = 0; i < h!; i++) for (let j = 0; j < w!; j++) {
    let sum = bias[k]!;
    for (let ch = 0; ch < c!; ch++) for (let di = -1; di <= 1; di++) for (let dj = -1; dj <= 1; dj++) {
      const ii = i + di, jj = j + dj;
      if (ii < 0 || jj < 0 || ii >= h! || jj >= w!) continue;
      sum += x[((b * c! + ch) * h! + ii) * w! + jj]! * weight[((k * c! + ch) * 3 + di + 1) * 3 + dj + 1]!;
    }
    out[((b * o + k) * h! + i) * w! + j] = gelu(sum);
  }
  return out;
}

test('convStem: two 3x3 conv + GELU layers equal a direct JavaScript convolution; parameters in PyTorch Conv2d layout', async () => {
  const g = new Graph('stem');
  const shape = [2, 1, 6, 5];
  g.output('y', convStem(new Scope(g).child('stem'), g.input('x', 'float32', shape), vit));
  const specs = paramSpecs(g);
  const values = initialValues(specs, Prng.seeded(3));
  assert.equal(specs.map((p) => `${p.name} ${p.shape.join('x')}`), ['stem.0.weight 3x1x3x3', 'stem.0.bias 3', 'stem.1.weight 2x3x3x3', 'stem.1.bias 2']);
  const x = randomFeed(shape);
  const y = (await runGraph(g, values, { x })).get('y')!;
  assert.equal([...y.dims], [2, 2, 6, 5]);
  const v = (name: string) => values.get(name) as Float32Array;
  const hidden = convGeluReference(x.data as Float32Array, shape, v('stem.0.weight'), v('stem.0.bias'), 3);
  const expected = convGeluReference(hidden, [2, 3, 6, 5], v('stem.1.weight'), v('stem.1.bias'), 2);
  assert.ok(relativeError(y.data, expected) < 1e-5, `relative error ${relativeError(y.data, expected)}`);
});

test('convStem: an entry that is not a positive integer is refused, naming it and its position', () => {
  for (const bad of [0, 1.5, -4]) {
    const g = new Graph('bad-stem');
    assert.throws(() => convStem(new Scope(g).child('stem'), g.input('x', 'float32', [1, 1, 6, 6]), { ...vit, convStem: [4, bad] }),
      new RegExp(`convStem entries must be positive integers \\(channels\\), got ${bad} at 1`));
  }
});

test('DINO step with a conv stem: student and teacher carry the stem, the optimizer moves it, the teacher follows by EMA', async () => {
  const runner = await compileStep({ ...TINY_STEP, backbone: { ...(TINY_STEP.backbone as ViTConfig), convStem: [4] } });
  const names = runner.signature.state.map((p) => p.name);
  const stem = names.filter((n) => n.includes('patch_embed.stem.0.weight'));
  assert.ok(stem.length >= 2, `student and teacher stem weights among the state: ${stem.join(', ')}`);
  const state = TrainState.init(runner.signature.state, Prng.seeded(0));
  const before = new Map(stem.map((n) => [n, Float32Array.from(state.values(n))]));
  const metrics = await runner.run(state, randomStepBatch(Prng.seeded(1)), { lr: 1e-2, wd: 0, momentum: 0.5, teacher_temp: 0.04, 'gate.last_layer': 1 });
  assert.ok(Number.isFinite(metrics['loss']), `loss ${metrics['loss']}`);
  for (const n of stem) {
    const moved = state.values(n).some((v, i) => v !== before.get(n)![i]);
    assert.ok(moved, `${n} changed after one step (optimizer for the student, EMA at momentum 0.5 for the teacher)`);
  }
});

test('inference export with a conv stem: the any-size graph equals the fixed-size one at 8 px, runs at 12 x 8 in node and WASM', async () => {
  const specs = backboneSpecs(vit);
  assert.equal(specs.find((p) => p.name === 'patch_embed.proj.weight')!.shape, [8, 2, 4, 4], 'the patch embedding reads the stem channels');
  const values = initialValues(specs, Prng.seeded(5));
  const opts = { mean: [0.5], std: [0.25] };
  const x = randomFeed([2, 1, 8, 8]);
  const fixed = (await runGraph(buildTeacherGraph(vit, { ...opts, imageSize: [8, 8] }), values, { images: x })).get('features')!;
  const anySize = buildTeacherGraph(vit, { ...opts, imageSize: null });
  const same = (await runGraph(anySize, values, { images: x })).get('features')!;
  assert.ok(relativeError(same.data, fixed.data) < 1e-5, `relative error ${relativeError(same.data, fixed.data)}`);
  const tall = randomFeed([1, 1, 12, 8]);
  const other = await runGraph(anySize, values, { images: tall });
  assert.equal([...other.get('patch_tokens')!.dims], [1, 6, 8]);
  assert.ok(other.get('features')!.data.every(Number.isFinite));
  // The browser's runtime (onnxruntime-web, WASM) runs the same bytes at a size known only at run time.
  const bytes = emitOnnx(anySize, { params: { values } });
  if (E.isLeft(bytes)) throw new Error(bytes.left.map(formatError).join('\n'));
  const web = await createWebSession(bytes.right);
  const wasm = await web.run({ images: new ortWeb.Tensor('float32', tall.data as Float32Array, [...tall.shape]) });
  await web.release();
  const rel = relativeError(wasm['features']!.data as Float32Array, other.get('features')!.data);
  assert.ok(rel < 1e-4, `WASM vs node features: relative error ${rel}`);
});

test('Conv with symbolic H and W: allowed where the conv keeps the size (stride 1, "same" pads), refused otherwise', () => {
  const g = new Graph('conv');
  const x = g.input('x', 'float32', ['N', 1, 'H', 'W']);
  const w = g.constant(new Array(9).fill(0.1), 'float32', [1, 1, 3, 3]);
  assert.equal(conv2d(x, w, null, { pads: [1, 1, 1, 1] }).shape, ['N', 1, 'H', 'W']);
  g.output('strided', conv2d(x, w, null, { pads: [1, 1, 1, 1], strides: [2, 2] }));
  g.output('unpadded', conv2d(x, w, null));
  const v = g.validate();
  assert.ok(E.isLeft(v) && v.left.length === 2, 'a stride of 2 and a missing pad are both refused');
  if (E.isLeft(v)) for (const e of v.left) assert.match(e.message, /needs static H and W \(a symbolic one only where the conv keeps its size/);
});

test('--set backbone.convStem: added to fmnist-tiny6, reaches the step config, [] removes it, a non-array is refused', () => {
  const tiny6 = getPreset('fmnist-tiny6');
  assert.not.ok('convStem' in tiny6.backbone, 'DINO\'s defaults have no stem');
  const withStem = applyOverrides(tiny6, ['backbone.convStem=[16,8]']);
  assert.equal(withStem.backbone.convStem, [16, 8]);
  assert.equal((stepConfig(withStem).backbone as ViTConfig).convStem, [16, 8]);
  const removed = applyOverrides(withStem, ['backbone.convStem=[]']);
  assert.not.ok('convStem' in removed.backbone);
  assert.equal(removed, tiny6);
  assert.throws(() => applyOverrides(tiny6, ['backbone.convStem=16']), /"backbone\.convStem" must be array/);
});

test.run();
