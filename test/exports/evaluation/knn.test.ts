/**
 * exports/evaluation/knn.ts: weighted k-NN equals a hand computation and a brute-force restatement (both block-product
 * engines), and the whole evaluation (export, feature extraction, k-NN, knn.json) runs on a Fashion-MNIST subset.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Prng } from '../../../dsl/index.ts';
import { dotBlockTs, formatKnnTable, knnClassify, knnEvaluate } from '../../../exports/evaluation/knn.ts';
import { type FeatureSet, evenlySpaced } from '../../../exports/evaluation/extract-features.ts';
import { rawPixelKnn } from '../../../exports/evaluation/raw-pixels.ts';
import { FASHION_MNIST_MEAN, FASHION_MNIST_STD, loadFashionMnist } from '../../../runtime/data/fashion-mnist.ts';
import { makeRun, tempDir } from '../helpers.ts';

const deg = (a: number) => [Math.cos((a * Math.PI) / 180), Math.sin((a * Math.PI) / 180)];
/** Features on the unit circle given by angle (cosine similarity = cos of the angle between them), scaled to check the L2 normalisation. */
const circle = (angles: number[], labels: number[], scale = 3): FeatureSet => ({
  count: angles.length, dim: 2, labels: Int32Array.from(labels), data: Float32Array.from(angles.flatMap((a, i) => deg(a).map((v) => v * scale * (i + 1)))),
});

test('hand computation: 5 train points on the circle, 2 queries, k = 1, 3, 5', async () => {
  // train angles (class): 5 (0), 10 (0), 45 (1), 90 (1), 180 (2); the features are scaled differently to check
  // the L2 normalisation. Cosine similarity = cos of the angle between two points.
  const train = circle([5, 10, 45, 90, 180], [0, 0, 1, 1, 2]);
  // q0 at 30 deg, label 1. Neighbours: 45 (c1, cos 15 = 0.9659), 10 (c0, cos 20 = 0.9397), 5 (c0, cos 25 = 0.9063),
  //   90 (c1, cos 60 = 0.5), 180 (c2, cos 150 = -0.866). Votes exp(sim / 0.07):
  //   k=1: c1 = e^13.80 = 9.84e5 -> class 1, correct.
  //   k=3: c1 = 9.84e5; c0 = e^13.42 + e^12.95 = 6.77e5 + 4.20e5 = 1.10e6 -> class 0, wrong (class 1 second).
  //   k=5: c1 = 9.84e5 + e^7.14 (1.3e3) = 9.86e5 < c0 -> still wrong; c2 = e^-12.4 ~ 0.
  // q1 at 170 deg, label 2: nearest 180 (c2, cos 10 = 0.985, e^14.07 = 1.29e6); next 90 (cos 80 = 0.17, e^2.5):
  //   class 2 wins at every k.
  const test = circle([30, 170], [1, 2]);
  for (const engine of ['ts', 'ort'] as const) {
    const r = await knnClassify(train, test, { ks: [1, 3, 5], engine });
    assert.equal(r.top1, { '1': 100, '3': 50, '5': 50 }, `${engine} top-1`);
    assert.equal(r.top5, { '1': 100, '3': 100, '5': 100 }, `${engine} top-5 (3 classes)`);
    assert.is(r.n_train, 5);
    assert.is(r.n_test, 2);
  }
  // with T = 1 the votes are nearly equal weights: at k=3 q0 gets c1 = e^0.97 = 2.63 vs c0 = e^0.94 + e^0.91 = 5.03 -> wrong still;
  // at k=1 only the nearest counts, so the temperature cannot matter there.
  const flat = await knnClassify(train, test, { ks: [1, 3], temperature: 1 });
  assert.equal(flat.top1, { '1': 100, '3': 50 });
});

/** Brute force: full similarity rows, full sort, votes, class ranking with ties broken by index. */
function bruteForce(train: FeatureSet, test: FeatureSet, ks: number[], classes: number): { top1: number[]; top5: number[] } {
  const norm = (s: FeatureSet, i: number) => {
    const v = Array.from(s.data.subarray(i * s.dim, (i + 1) * s.dim));
    const n = Math.hypot(...v);
    return v.map((x) => x / n);
  };
  const tr = Array.from({ length: train.count }, (_, i) => norm(train, i));
  const top1 = ks.map(() => 0), top5 = ks.map(() => 0);
  for (let q = 0; q < test.count; q++) {
    const x = norm(test, q);
    const sims = tr.map((t, i) => [t.reduce((s, v, j) => s + v * x[j]!, 0), i] as [number, number]).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
    ks.forEach((k, ki) => {
      const votes = new Array(classes).fill(0);
      for (const [s, i] of sims.slice(0, k)) votes[train.labels[i]!] += Math.exp(s / 0.07);
      const order = votes.map((v, c) => [v, c]).sort((a, b) => b[0] - a[0] || a[1] - b[1]).map(([, c]) => c);
      const label = test.labels[q]!;
      if (order[0] === label) top1[ki]!++;
      if (order.slice(0, 5).includes(label)) top5[ki]!++;
    });
  }
  return { top1: top1.map((v) => (100 * v) / test.count), top5: top5.map((v) => (100 * v) / test.count) };
}

function clustered(n: number, dim: number, classes: number, seed: number): FeatureSet {
  const p = Prng.seeded(seed);
  const labels = Int32Array.from({ length: n }, () => p.int(classes));
  const data = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) data[i * dim + j] = p.normal() + (j % classes === labels[i] ? 0.8 : 0);
  return { count: n, dim, data, labels };
}

test('random clustered features (12 classes): both engines equal a brute-force restatement, top-5 below 100%', async () => {
  const train = clustered(700, 24, 12, 1), test = clustered(150, 24, 12, 2);
  const ks = [10, 20, 100, 200];
  const want = bruteForce(train, test, ks, 12);
  for (const engine of ['ts', 'ort'] as const) {
    // small blocks so that several test blocks and train chunks are merged
    const r = await knnClassify(train, test, { ks, engine, blockRows: 64, blockCols: 256 });
    ks.forEach((k, i) => {
      assert.ok(Math.abs(r.top1[String(k)]! - want.top1[i]!) < 1e-9, `${engine} top-1 k=${k}: ${r.top1[String(k)]} vs ${want.top1[i]}`);
      assert.ok(Math.abs(r.top5[String(k)]! - want.top5[i]!) < 1e-9, `${engine} top-5 k=${k}: ${r.top5[String(k)]} vs ${want.top5[i]}`);
    });
  }
  assert.ok(want.top5[0]! < 100 && want.top1[0]! > 100 / 12, `a non-trivial problem (top-1 ${want.top1[0]}, top-5 ${want.top5[0]})`);
});

test('dotBlockTs equals the naive product on odd sizes', () => {
  const p = Prng.seeded(9);
  const [n, m, d] = [5, 7, 13];
  const a = Float32Array.from({ length: n * d }, () => p.normal()), b = Float32Array.from({ length: m * d }, () => p.normal());
  const out = new Float32Array(n * m);
  dotBlockTs(a, n, b, m, d, out);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) {
    let s = 0;
    for (let k = 0; k < d; k++) s += a[i * d + k]! * b[j * d + k]!;
    assert.ok(Math.abs(out[i * m + j]! - s) < 1e-5);
  }
});

test('input checks: unlabelled train images, dimension mismatch', async () => {
  const t = circle([0, 90], [0, -1]);
  try {
    await knnClassify(t, circle([10], [0]));
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, 'label for every train image');
  }
  try {
    await knnClassify(circle([0], [0]), { count: 1, dim: 3, data: new Float32Array(3), labels: Int32Array.of(0) });
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, '2 dims');
  }
});

test('evenlySpaced keeps every class of a class-major split', () => {
  const idx = evenlySpaced(60000, 1000);
  assert.is(idx.length, 1000);
  const classes = new Set(Array.from(idx, (i) => Math.floor(i / 6000)));
  assert.is(classes.size, 10);
  assert.is(evenlySpaced(5).length, 5);
});

test('knnEvaluate on a Fashion-MNIST subset: exports the run teacher, extracts features, writes knn.json; raw-pixel baseline', async () => {
  const dir = tempDir('knn');
  const run = makeRun(path.join(dir, 'run'));
  const ev = await knnEvaluate({ run: run.dir, dataset: 'fmnist', limitTrain: 1500, limitTest: 300, batch: 250, keepFeatures: true });
  assert.ok(fs.existsSync(path.join(run.dir, 'teacher.onnx')));
  const saved = JSON.parse(fs.readFileSync(path.join(run.dir, 'knn.json'), 'utf8'));
  assert.equal(saved, ev.result);
  assert.equal(Object.keys(ev.result.top1), ['10', '20', '100', '200']);
  assert.is(ev.result.n_train, 1500);
  assert.is(ev.result.n_test, 300);
  // keepFeatures hands back what k-NN classified, for a probe to reuse
  assert.equal([ev.features!.train.count, ev.features!.test.count, ev.features!.train.dim], [1500, 300, run.config.backbone.embedDim]);
  assert.equal(await knnClassify(ev.features!.train, ev.features!.test), ev.result);
  // A random-init ViT's teacher is already far above chance on Fashion-MNIST (59% on the full set: docs/fmnist-quick.md).
  assert.ok(ev.result.top1['20']! > 35, `random-init k-NN top-1 ${ev.result.top1['20']}`);
  assert.ok(ev.result.top5['20']! >= ev.result.top1['20']!);
  assert.ok(JSON.parse(ev.json).top5['200'] >= 0);
  assert.match(ev.table, /fashion-mnist: 1500 train \/ 300 test/);
  const data = await loadFashionMnist();
  const raw = await rawPixelKnn(data, { mean: [FASHION_MNIST_MEAN], std: [FASHION_MNIST_STD] }, { limitTrain: 1500, limitTest: 300 });
  assert.ok(raw.top1['20']! > 65, `raw-pixel k-NN top-1 ${raw.top1['20']}`);
  console.log(`    features ${ev.imagesPerSecond.toFixed(0)} images/s; k-NN ${ev.seconds.knn.toFixed(2)} s\n${formatKnnTable(ev.result, '    random-init teacher').replace(/^/gm, '    ')}\n${formatKnnTable(raw, '    raw pixels').replace(/^/gm, '    ')}`);
  fs.rmSync(dir, { recursive: true, force: true });
});

test.run();
