import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { indexImageFolder } from '../../../runtime/data/folder-index.ts';
import { BadImageError, decodeImageFile } from '../../../runtime/data/decode.ts';
import { augmentConfig, multiCropImages } from '../../../runtime/data/multicrop.ts';
import { MultiCropLoader, type LoaderBatch, type LoaderOptions } from '../../../runtime/data/loader.ts';
import { derivePrng, STREAM } from '../../../runtime/data/seeds.ts';
import { take, assertSameBatches } from './loader-helpers.ts';

// 27 small images of different sizes in 3 classes: 6 batches of 4 per epoch (3 images dropped).
const root = await fs.mkdtemp(path.join(os.tmpdir(), 'folder-loader-'));
for (let i = 0; i < 27; i++) {
  const width = 20 + ((i * 7) % 19), height = 18 + ((i * 5) % 13);
  const pixels = Buffer.alloc(width * height * 3);
  for (let p = 0; p < pixels.length; p++) pixels[p] = (p * (i + 3) + i * 17) & 255;
  const file = path.join(root, `class${i % 3}`, `img${String(i).padStart(2, '0')}.${i % 2 ? 'png' : 'jpg'}`);
  await fs.mkdir(path.dirname(file), { recursive: true });
  const image = sharp(pixels, { raw: { width, height, channels: 3 } });
  await (i % 2 ? image.png() : image.jpeg({ quality: 90 })).toFile(file);
}
const index = await indexImageFolder(root);
const augment = augmentConfig({ globalSize: 16, localSize: 8, localCrops: 2 });
const base: LoaderOptions = { dataset: index, batchSize: 4, seed: 77, augment };

const inThread = await take({ ...base, workers: 0 }, 8); // crosses into epoch 1

test('a folder streams: each batch is multiCropImages of its files decoded at their own size; labels from the index', async () => {
  assert.equal([inThread[6]!.epoch, inThread[6]!.batch, inThread[6]!.step], [1, 0, 6]);
  const epoch0 = new Set(inThread.slice(0, 6).flatMap((b) => Array.from(b.indices)));
  assert.is(epoch0.size, 24, 'no file twice in an epoch');
  const batch = inThread[2]!;
  const images = await Promise.all(Array.from(batch.indices, (i) => decodeImageFile(index.train.file(i), 3)));
  assert.ok(new Set(images.map((im) => `${im.width}x${im.height}`)).size > 1, 'sources of different sizes');
  const expected = multiCropImages(images, augment, derivePrng(77, STREAM.augment, 2));
  assert.equal(batch.globals, expected.globals);
  assert.equal(batch.locals, expected.locals);
  assert.equal(Array.from(batch.labels), Array.from(batch.indices, (i) => index.train.label(i)));
});

test('crops are bit-identical with 1 and 3 workers (and on the calling thread); in-flight batches are bounded', async () => {
  assertSameBatches(await take({ ...base, workers: 1 }, 8), inThread, '1 worker');
  assertSameBatches(await take({ ...base, workers: 3 }, 8), inThread, '3 workers');
  const loader = new MultiCropLoader({ ...base, workers: 3, prefetch: 2 });
  try {
    for (let i = 0; i < 3; i++) {
      await loader.next();
      assert.is(loader.batchesAhead(), 4, 'workers + prefetch - 1 batches requested ahead: every worker busy, no more');
    }
  } finally {
    await loader.close();
  }
});

test('resumption from a saved position gives the same batches', async () => {
  assertSameBatches(await take({ ...base, workers: 3, start: { epoch: 0, batch: 5 } }, 3), inThread.slice(5, 8), 'resumed');
});

test('a file that passes the header check but does not decode: stops the batch naming it, or is replaced deterministically', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'folder-loader-bad-'));
  try {
    await fs.cp(root, dir, { recursive: true });
    const victim = path.join(dir, 'class1', 'img04.jpg');
    const bytes = await fs.readFile(victim);
    await fs.writeFile(victim, bytes.subarray(0, bytes.length >> 1)); // truncated: a JPEG header, no image
    const badIndex = await indexImageFolder(dir);
    const victimIndex = Array.from({ length: badIndex.count }, (_, i) => badIndex.file(i)).indexOf(victim);
    assert.ok(victimIndex >= 0, 'the header check lets it through');
    const strict = new MultiCropLoader({ ...base, dataset: badIndex, workers: 2 });
    const error = await (async () => { for (let i = 0; i < 6; i++) await strict.next(); })().then(() => undefined, (e: unknown) => e);
    await strict.close();
    assert.ok(error instanceof BadImageError && error.file === victim, `names the file: ${String(error)}`);

    const skipped: string[] = [];
    const options: LoaderOptions = { ...base, dataset: badIndex, skipBadImages: true, onSkip: (file) => skipped.push(file) };
    const threaded = await take({ ...options, workers: 3 }, 8);
    assert.equal(skipped, [victim], 'named once');
    const again = await take({ ...options, workers: 0 }, 8);
    assertSameBatches(again, threaded, 'skipping is deterministic');
    const all = threaded.flatMap((b) => Array.from(b.indices));
    assert.not.ok(all.includes(victimIndex), 'never trained on');
    assert.ok(all.includes((victimIndex + 1) % badIndex.count), 'replaced by the next file');
    // Batches without the bad file equal those of the intact folder.
    const clean = threaded.map((b, i) => [b, inThread[i]!] as const).filter(([, ok]) => !Array.from(ok.indices).includes(victimIndex));
    assert.ok(clean.length >= 6);
    for (const [b, ok] of clean) assert.equal(b.globals, ok.globals);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test.after(() => fs.rm(root, { recursive: true, force: true }));

test.run();
