/**
 * exports/evaluation/curve.ts: training with evaluations at chosen steps. On a tiny config it scores the points asked for (step
 * 0 is the random-init teacher), continues a run it stopped, and its chunked training ends with the uninterrupted
 * run's checkpoint bit for bit.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type CurveFile, type CurvePoint, curveSteps, describeYardstick, formatCurveTable, scoreRawPixels, trainCurve } from '../../../exports/evaluation/curve.ts';
import type { Dataset } from '../../../runtime/data/dataset.ts';
import { FASHION_MNIST_MEAN, FASHION_MNIST_STD, loadFashionMnist } from '../../../runtime/data/fashion-mnist.ts';
import { loadCheckpoint } from '../../../runtime/dino/checkpoint.ts';
import { type TrainConfig, applyOverrides } from '../../../runtime/dino/config.ts';
import { getPreset } from '../../../runtime/dino/presets.ts';
import { train } from '../../../runtime/dino/train.ts';
import { tempDir } from '../helpers.ts';

const tiny: TrainConfig = applyOverrides(getPreset('fmnist-tiny6'), [
  'backbone.embedDim=32', 'backbone.depth=2', 'backbone.numHeads=2', 'head.outDim=64', 'head.hiddenDim=64', 'head.bottleneckDim=16',
  'batch=16', 'augment.localCrops=2', 'steps=12', 'freezeLastLayerSteps=2', 'lr=0.02', 'warmupFraction=0.2',
]);
const quiet = { progress: 'none', log: () => {}, threads: 1 } as const;
const yardstick = { limitTrain: 200, limitTest: 100, probe: { epochs: 3, batch: 50 } };
let data: Dataset;
const dir = tempDir('curve');
test.before(async () => { data = await loadFashionMnist({ limitPerClass: 40 }); });
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('curveSteps: 0, 25, 50, 75, 100% as whole steps, no repeats', () => {
  assert.equal(curveSteps(1119), [0, 280, 560, 839, 1119]);
  assert.equal(curveSteps(40), [0, 10, 20, 30, 40]);
  assert.equal(curveSteps(2), [0, 1, 2]);
  assert.equal(curveSteps(10, [1, 0, 0.5]), [0, 5, 10]);
});

test('trainCurve scores the asked steps, continues a stopped run, and ends with the uninterrupted checkpoint bit for bit', async () => {
  const chunked = path.join(dir, 'chunked'), whole = path.join(dir, 'whole');
  const seen: CurvePoint[] = [];
  const first = await trainCurve({ config: tiny, out: chunked, dataset: data, at: [5, 0], yardstick, onPoint: (p) => seen.push(p), trainOptions: quiet });
  assert.equal(first.points.map((p) => p.step), [0, 5]);
  assert.equal(seen, first.points, 'onPoint sees every point as it is scored');
  // Continue the run: points at or before its step are skipped; the last point gets its own yardstick.
  const second = await trainCurve({
    config: tiny, out: chunked, dataset: data, at: [0, 5, 8, 12], resume: true, trainOptions: quiet,
    yardstick: (step) => (step === 12 ? { ...yardstick, limitTrain: 300 } : yardstick),
  });
  assert.equal(second.points.map((p) => p.step), [8, 12]);
  assert.is(second.result!.steps, 12);
  const points = [...first.points, ...second.points];

  const [init, ...trained] = points;
  assert.equal([init!.loss, init!.teacher_entropy, init!.teacher_kl, init!.train_seconds], [null, null, null, 0], 'step 0 is the random-init teacher');
  for (const p of trained) assert.ok(Number.isFinite(p.loss!) && Number.isFinite(p.teacher_entropy!) && Number.isFinite(p.teacher_kl!), JSON.stringify(p));
  // train_seconds is the run's own step times up to the point: the sum of metrics.jsonl's step_ms.
  const rows = fs.readFileSync(path.join(chunked, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; step_ms: number });
  for (const p of trained) {
    const want = rows.filter((r) => r.step <= p.step).reduce((s, r) => s + r.step_ms, 0) / 1000;
    assert.ok(Math.abs(p.train_seconds - want) <= 5e-4, `step ${p.step}: ${p.train_seconds} vs ${want}`);
  }
  assert.ok(points.every((p, i) => i === 0 || p.train_seconds > points[i - 1]!.train_seconds));
  assert.equal(points.map((p) => p.n_train), [200, 200, 200, 300]);
  assert.ok(points.every((p) => p.n_test === 100 && p.eval_seconds > 0));
  // Ten classes: chance is 10%; a random-init ViT's features are far above it already.
  for (const p of points) assert.ok(p.knn_top1 > 30 && p.knn_top1 <= 100 && p.linear_top1! > 20 && p.linear_top1! <= 100, JSON.stringify(p));

  await train({ config: tiny, out: whole, dataset: data, ...quiet });
  const a = loadCheckpoint(path.join(chunked, 'checkpoint.safetensors')), b = loadCheckpoint(path.join(whole, 'checkpoint.safetensors'));
  assert.is(a.meta.step, 12);
  assert.equal([...a.tensors.keys()].sort(), [...b.tensors.keys()].sort());
  for (const [name, t] of a.tensors) {
    const x = t.data as Float32Array, y = b.tensors.get(name)!.data as Float32Array;
    assert.ok(Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(y.buffer, y.byteOffset, y.byteLength)), `${name} differs from the uninterrupted run`);
  }
  assert.ok(fs.existsSync(path.join(chunked, 'teacher.onnx')), 'the last point leaves its teacher exported');
});

test('trainCurve refuses steps outside the run', async () => {
  let err: unknown;
  try { await trainCurve({ config: tiny, out: path.join(dir, 'bad'), dataset: data, at: [0, 13], yardstick, trainOptions: quiet }); } catch (e) { err = e; }
  assert.match(String(err), /curve steps must be integers from 0 to 12 .*got 13/);
  assert.not.ok(fs.existsSync(path.join(dir, 'bad')), 'refused before training');
});

test('scoreRawPixels on the same yardstick; without a probe the linear score is null', async () => {
  const raw = await scoreRawPixels(data, { ...yardstick, probe: false }, { mean: [FASHION_MNIST_MEAN], std: [FASHION_MNIST_STD] });
  assert.is(raw.linear_top1, null);
  assert.equal([raw.n_train, raw.n_test], [200, 100]);
  assert.ok(raw.knn_top1 > 50, `raw-pixel k-NN ${raw.knn_top1}`);
  assert.equal(describeYardstick(yardstick, data), { n_train: 200, n_test: 100, k: 20, temperature: 0.07, probe: { epochs: 3, lr: 0.3, batch: 50 } });
});

test('formatCurveTable: one row per point, minutes, random init marked, raw pixels, a missing probe as a dash', () => {
  const point = (step: number, seconds: number, knn: number, linear: number | null): CurvePoint => ({
    step, train_seconds: seconds, knn_top1: knn, linear_top1: linear, n_train: 10000, n_test: 5000, loss: null, teacher_entropy: null, teacher_kl: null, eval_seconds: 1,
  });
  const curve: CurveFile = {
    yardstick: { n_train: 10000, n_test: 5000, k: 20, temperature: 0.07, probe: { epochs: 30, lr: 0.3 } },
    points: [point(0, 0, 66.5, 70.25), point(280, 112.4, 67.125, null), point(1119, 450, 70, 74.5)],
    raw_pixels: { knn_top1: 84.1, linear_top1: 81.2, n_train: 10000, n_test: 5000 },
  };
  assert.is(formatCurveTable(curve), [
    'during training, on 10000 evenly spaced train images (k-NN bank, probe training set) / 5000 test images:',
    '    step  minutes     k-NN   linear',
    '       0      0.0   66.50%   70.25%  random-init teacher',
    '     280      1.9   67.13%        –',
    '    1119      7.5   70.00%   74.50%',
    '  raw pixels        84.10%   81.20%',
  ].join('\n'));
});

test.run();
