import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { loadFashionMnist, FASHION_MNIST_MEAN, FASHION_MNIST_STD } from '../../../runtime/data/fashion-mnist.ts';
import { augmentConfig } from '../../../runtime/data/multicrop.ts';
import { MultiCropLoader, type LoaderBatch, type LoaderOptions } from '../../../runtime/data/loader.ts';
import { take, assertSameBatches } from './loader-helpers.ts';

// 100 images per class: 1,000 train images, 31 batches of 32 per epoch (the last 8 images dropped).
const dataset = await loadFashionMnist({ limitPerClass: 100 });
const augment = augmentConfig({ globalSize: 28, localSize: 12, localCrops: 2, mean: [FASHION_MNIST_MEAN], std: [FASHION_MNIST_STD] });
const base: LoaderOptions = { dataset, batchSize: 32, seed: 1234, augment };

const inThread = await take({ ...base, workers: 0 }, 34); // crosses the epoch boundary at batch 31

test('batches: shapes, epoch covers distinct images, drops the incomplete last batch, reshuffles each epoch', () => {
  const first = inThread[0]!;
  assert.equal([first.batchSize, first.channels, first.globalSize, first.localSize, first.localCrops], [32, 1, 28, 12, 2]);
  assert.is(first.globals.length, 2 * 32 * 28 * 28);
  assert.is(first.locals.length, 2 * 32 * 12 * 12);
  const epoch0 = inThread.filter((b) => b.epoch === 0);
  assert.is(epoch0.length, 31);
  const seen = new Set(epoch0.flatMap((b) => Array.from(b.indices)));
  assert.is(seen.size, 31 * 32, 'no image twice in an epoch');
  assert.ok([...seen].every((i) => i < 1000));
  const firstOfEpoch1 = inThread[31]!;
  assert.equal([firstOfEpoch1.epoch, firstOfEpoch1.batch, firstOfEpoch1.step], [1, 0, 31]);
  assert.not.equal(firstOfEpoch1.indices, first.indices, 'epoch 1 has its own permutation');
  first.indices.forEach((index, k) => assert.is(first.labels[k], dataset.train.labels[index]));
  // Shuffled: the first batch holds several classes, not 32 images of class 0.
  assert.ok(new Set(first.labels).size >= 5);
});

test('same (seed, batch index) gives the same batch with 0, 1 or 2 workers and any prefetch', async () => {
  assertSameBatches(await take({ ...base, workers: 1, prefetch: 1 }, 34), inThread, '1 worker');
  assertSameBatches(await take({ ...base, workers: 2, prefetch: 2 }, 34), inThread, '2 workers');
  assertSameBatches(await take({ ...base, workers: 2, prefetch: 0 }, 5), inThread.slice(0, 5), '2 workers, no prefetch');
});

test('another seed gives other batches', async () => {
  const other = await take({ ...base, seed: 1235, workers: 0 }, 1);
  assert.not.equal(other[0]!.indices, inThread[0]!.indices);
  assert.not.equal(other[0]!.globals, inThread[0]!.globals);
});

test('resumption from a saved position reproduces the remaining batches exactly', async () => {
  const loader = new MultiCropLoader({ ...base, workers: 2 });
  for (let i = 0; i < 29; i++) await loader.next();
  const saved = JSON.parse(JSON.stringify(loader.position())) as { epoch: number; batch: number };
  assert.equal(saved, { epoch: 0, batch: 29 });
  const continued: LoaderBatch[] = [];
  for (let i = 0; i < 5; i++) continued.push(await loader.next());
  assert.equal(loader.position(), { epoch: 1, batch: 3 });
  await loader.close();
  assertSameBatches(continued, inThread.slice(29, 34), 'continued');
  assertSameBatches(await take({ ...base, workers: 1, start: saved }, 5), inThread.slice(29, 34), 'resumed');
  assertSameBatches(await take({ ...base, workers: 0, start: { epoch: 1, batch: 1 } }, 2), inThread.slice(32, 34), 'resumed in epoch 1');
});

test('close() right after a busy main thread (results still queued) finishes, and nothing keeps the process alive', async () => {
  // Regression: results processed after close() used to unref the workers while terminate() was awaited,
  // and the process ended early with exit code 13 (unsettled top-level await).
  for (const workers of [1, 2]) {
    const loader = new MultiCropLoader({ ...base, workers });
    await loader.next();
    const end = performance.now() + 300;
    while (performance.now() < end) { /* a synchronous "training step" while prefetched batches finish */ }
    await loader.close();
  }
});

test('bad options and a closed loader are reported', async () => {
  assert.throws(() => new MultiCropLoader({ ...base, batchSize: 1001 }), /fewer than one batch/);
  assert.throws(() => new MultiCropLoader({ ...base, start: { epoch: 0, batch: 31 } }), /batches 0\.\.30/);
  const loader = new MultiCropLoader({ ...base, workers: 1 });
  await loader.next();
  await loader.close();
  const message = await loader.next().then(() => 'no error', (e: Error) => e.message);
  assert.match(message, 'closed');
});

test.run();
