/**
 * Data-parallel slices of the loader's batches: rank r of N yields images [r · B/N, (r + 1) · B/N) of each global
 * batch of B with the crops they have in the whole batch, so the ranks' batches, put back together view by view,
 * are exactly the batch one process draws (indices, labels, every crop's bytes), in memory and from a folder.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { loadFashionMnist, FASHION_MNIST_MEAN, FASHION_MNIST_STD } from '../../../runtime/data/fashion-mnist.ts';
import { indexImageFolder } from '../../../runtime/data/folder-index.ts';
import { augmentConfig } from '../../../runtime/data/multicrop.ts';
import { MultiCropLoader, type LoaderOptions } from '../../../runtime/data/loader.ts';
import { take } from './loader-helpers.ts';

/** The ranks' view-major crops [views · b, ...] put back into the whole batch's layout [views · B, ...]. */
function joinViews(parts: readonly Float32Array[], views: number): Float32Array {
  const per = parts[0]!.length / views;
  const out = new Float32Array(per * views * parts.length);
  let at = 0;
  for (let v = 0; v < views; v++) for (const p of parts) { out.set(p.subarray(v * per, (v + 1) * per), at); at += per; }
  return out;
}

async function checkSlices(base: LoaderOptions, ranks: number, batches: number, label: string): Promise<void> {
  const whole = await take(base, batches);
  const slices = await Promise.all(Array.from({ length: ranks }, (_, rank) => take({ ...base, slice: { rank, ranks } }, batches)));
  whole.forEach((w, i) => {
    const parts = slices.map((s) => s[i]!);
    for (const p of parts) {
      assert.equal([p.epoch, p.batch, p.step], [w.epoch, w.batch, w.step], `${label}: position of batch ${i}`);
      assert.is(p.batchSize, w.batchSize / ranks, `${label}: rank batch size`);
    }
    assert.equal(Uint32Array.from(parts.flatMap((p) => [...p.indices])), w.indices, `${label}: indices of batch ${i}`);
    assert.equal(Int32Array.from(parts.flatMap((p) => [...p.labels])), w.labels, `${label}: labels of batch ${i}`);
    assert.ok(Buffer.from(joinViews(parts.map((p) => p.globals), 2).buffer).equals(Buffer.from(w.globals.buffer)), `${label}: globals of batch ${i}`);
    assert.ok(Buffer.from(joinViews(parts.map((p) => p.locals), w.localCrops).buffer).equals(Buffer.from(w.locals.buffer)), `${label}: locals of batch ${i}`);
  });
}

test('in memory: 2 and 4 ranks, with workers and without, across an epoch boundary', async () => {
  const dataset = await loadFashionMnist({ limitPerClass: 5 }); // 50 images: 6 batches of 8 per epoch
  const augment = augmentConfig({ globalSize: 28, localSize: 12, localCrops: 2, mean: [FASHION_MNIST_MEAN], std: [FASHION_MNIST_STD] });
  const base: LoaderOptions = { dataset, batchSize: 8, seed: 99, augment, workers: 0 };
  await checkSlices(base, 2, 8, 'memory, 2 ranks');
  await checkSlices({ ...base, workers: 2 }, 4, 3, 'memory, 4 ranks, 2 workers');
  // A resumed rank yields its slice of the batch at its position.
  const resumed = await take({ ...base, slice: { rank: 1, ranks: 2 }, start: { epoch: 1, batch: 1 } }, 1);
  const straight = await take({ ...base, slice: { rank: 1, ranks: 2 } }, 8);
  assert.equal(resumed[0]!.globals, straight[7]!.globals);
});

test('a folder decoded per image: 2 ranks with one worker each', async () => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'loader-slice-'));
  try {
    for (let i = 0; i < 12; i++) {
      const width = 20 + ((i * 7) % 19), height = 18 + ((i * 5) % 13);
      const pixels = Buffer.alloc(width * height * 3);
      for (let k = 0; k < pixels.length; k++) pixels[k] = (k * 31 + i * 17) & 255;
      const file = path.join(root, `class${i % 3}`, `img${String(i).padStart(2, '0')}.png`);
      await fs.mkdir(path.dirname(file), { recursive: true });
      await sharp(pixels, { raw: { width, height, channels: 3 } }).png().toFile(file);
    }
    const index = await indexImageFolder(root);
    await checkSlices({ dataset: index, batchSize: 4, seed: 7, augment: augmentConfig({ globalSize: 16, localSize: 8, localCrops: 2 }), workers: 1 }, 2, 4, 'folder');
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});

test('a batch that does not split into equal slices, and a rank that does not exist, are refused', async () => {
  const dataset = await loadFashionMnist({ limitPerClass: 2 });
  const augment = augmentConfig({ globalSize: 28, localSize: 12, localCrops: 0, mean: [FASHION_MNIST_MEAN], std: [FASHION_MNIST_STD] });
  assert.throws(() => new MultiCropLoader({ dataset, batchSize: 6, seed: 1, augment, workers: 0, slice: { rank: 0, ranks: 4 } }), /does not split into 4 equal rank slices/);
  assert.throws(() => new MultiCropLoader({ dataset, batchSize: 6, seed: 1, augment, workers: 0, slice: { rank: 2, ranks: 2 } }), /rank 2 of 2 ranks does not exist/);
});

test.run();
