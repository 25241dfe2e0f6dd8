/** exports/evaluation/linear.ts: the linear probe, trained by compiled step graphs, learns a linearly separable problem and runs on real features. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Prng } from '../../../dsl/index.ts';
import type { FeatureSet } from '../../../exports/evaluation/extract-features.ts';
import { linearProbe, trainLinearProbe } from '../../../exports/evaluation/linear.ts';
import { makeRun, tempDir } from '../helpers.ts';

/** Classes separated along random directions, with noise; an offset and per-dim scales the standardisation must absorb. */
function separable(n: number, dim: number, classes: number, seed: number, directions: Float32Array): FeatureSet {
  const p = Prng.seeded(seed);
  const labels = Int32Array.from({ length: n }, () => p.int(classes));
  const data = new Float32Array(n * dim);
  for (let i = 0; i < n; i++) for (let j = 0; j < dim; j++) {
    data[i * dim + j] = (directions[labels[i]! * dim + j]! * 2 + p.normal() * 0.7) * (1 + j) + 5;
  }
  return { count: n, dim, data, labels };
}

test('SGD and AdamW probes learn 5 separable classes (test top-1 > 90%, loss falls)', async () => {
  const dim = 16, classes = 5;
  const p = Prng.seeded(1);
  const directions = Float32Array.from({ length: classes * dim }, () => p.normal());
  const train = separable(2000, dim, classes, 2, directions), test = separable(500, dim, classes, 3, directions);
  for (const optimizer of ['sgd', 'adamw'] as const) {
    const r = await trainLinearProbe(train, test, { optimizer, epochs: 8, batch: 100, lr: optimizer === 'sgd' ? 0.5 : 0.01 });
    assert.ok(r.top1 > 90, `${optimizer}: test top-1 ${r.top1}`);
    assert.ok(r.epochLosses[r.epochLosses.length - 1]! < 0.5 * r.epochLosses[0]!, `${optimizer}: losses ${r.epochLosses.map((l) => l.toFixed(3))}`);
    assert.is(r.steps, 8 * 20);
    assert.is(r.n_test, 500);
  }
});

test('linearProbe on a Fashion-MNIST subset through the exported run teacher', async () => {
  const dir = tempDir('linear');
  const run = makeRun(path.join(dir, 'run'));
  const r = await linearProbe({ run: run.dir, limitTrain: 1000, limitTest: 200, epochs: 10, batch: 100 });
  assert.is(r.n_train, 1000);
  assert.is(r.n_test, 200);
  // random-init ViT features are informative: well above the 10% of chance
  assert.ok(r.top1 > 40, r.summary);
  assert.equal(Object.keys(JSON.parse(r.json)), ['top1', 'train_top1', 'n_train', 'n_test', 'epochs']);
  console.log(`    ${r.summary}`);
  fs.rmSync(dir, { recursive: true, force: true });
});

test.run();
