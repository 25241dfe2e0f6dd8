import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { promises as fs, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import {
  FASHION_MNIST_MEAN, FASHION_MNIST_STD, fashionMnistCachePath, loadFashionMnist,
} from '../../../runtime/data/fashion-mnist.ts';
import { checkDataset, gatherImages, imageAt } from '../../../runtime/data/dataset.ts';

const full = await loadFashionMnist();
const clothesDir = path.join(path.dirname(createRequire(import.meta.url).resolve('fashion-mnist/package.json')), 'src', 'clothes');

function countPerClass(labels: Int32Array): number[] {
  const counts = new Array<number>(10).fill(0);
  for (const l of labels) counts[l] = counts[l]! + 1;
  return counts;
}

test('split: 60,000 train / 10,000 test, 6,000 / 1,000 per class, class-major order', () => {
  checkDataset(full);
  assert.is(full.train.count, 60000);
  assert.is(full.test.count, 10000);
  assert.equal(countPerClass(full.train.labels), new Array(10).fill(6000));
  assert.equal(countPerClass(full.test.labels), new Array(10).fill(1000));
  for (let i = 0; i < 60000; i++) if (full.train.labels[i] !== Math.floor(i / 6000)) assert.unreachable(`train label ${i}`);
  for (let i = 0; i < 10000; i++) if (full.test.labels[i] !== Math.floor(i / 1000)) assert.unreachable(`test label ${i}`);
  assert.equal([full.channels, full.height, full.width], [1, 28, 28]);
  assert.is(full.classes.length, 10);
});

test('the two empty rows of 0.json (indices 1000 and 7001) are dropped, everything else kept in file order', () => {
  const rows = (JSON.parse(readFileSync(path.join(clothesDir, '0.json'), 'utf8')) as { data: number[][] }).data;
  assert.is(rows.length, 7002);
  assert.is(rows[1000]!.length, 0);
  assert.is(rows[7001]!.length, 0);
  const asBytes = (row: number[]) => Uint8Array.from(row);
  assert.equal(imageAt(full, full.train, 999), asBytes(rows[999]!));
  assert.equal(imageAt(full, full.train, 1000), asBytes(rows[1001]!)); // the empty row 1000 is skipped
  assert.equal(imageAt(full, full.train, 5999), asBytes(rows[6000]!));
  assert.equal(imageAt(full, full.test, 0), asBytes(rows[6001]!));
  assert.equal(imageAt(full, full.test, 999), asBytes(rows[7000]!)); // the empty row 7001 is not an image
  const rows1 = (JSON.parse(readFileSync(path.join(clothesDir, '1.json'), 'utf8')) as { data: number[][] }).data;
  assert.equal(imageAt(full, full.train, 6000), asBytes(rows1[0]!));
  assert.equal(imageAt(full, full.test, 1000), asBytes(rows1[6000]!));
});

test('pixels are bytes; as floats (gatherImages) byte / 255; the mean/std constants match the train split', () => {
  assert.instance(full.train.pixels, Uint8Array);
  let min = Infinity, max = -Infinity, sum = 0, sumSq = 0;
  for (const byte of full.train.pixels) {
    const v = byte / 255;
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
    sumSq += v * v;
  }
  assert.is(min, 0);
  assert.is(max, 1);
  const floats = gatherImages(full, full.train, [0, 59999]);
  assert.equal(floats, Float32Array.from([...imageAt(full, full.train, 0), ...imageAt(full, full.train, 59999)], (b) => b / 255));
  assert.throws(() => gatherImages(full, full.train, [60000]), /image index 60000 is outside \[0, 60000\)/);
  const n = full.train.pixels.length;
  const mean = sum / n;
  const std = Math.sqrt(sumSq / n - mean * mean);
  assert.ok(Math.abs(mean - FASHION_MNIST_MEAN) < 1e-3, `mean ${mean}`);
  assert.ok(Math.abs(std - FASHION_MNIST_STD) < 1e-3, `std ${std}`);
});

test('limitPerClass keeps the first n of each class in each split', async () => {
  const small = await loadFashionMnist({ limitPerClass: 7 });
  assert.is(small.train.count, 70);
  assert.is(small.test.count, 70);
  for (let c = 0; c < 10; c++) {
    for (let k = 0; k < 7; k++) {
      assert.is(small.train.labels[c * 7 + k], c);
      assert.equal(imageAt(small, small.train, c * 7 + k), imageAt(full, full.train, c * 6000 + k));
      assert.equal(imageAt(small, small.test, c * 7 + k), imageAt(full, full.test, c * 1000 + k));
    }
  }
});

const FIXED_MTIME = 1_700_000_000;

/** Ten tiny class files; class c has rows with values c*10 + r, plus malformed rows that must be dropped. */
async function makeSource(dir: string): Promise<void> {
  for (let c = 0; c < 10; c++) {
    const row = (r: number) => new Array(784).fill(c * 10 + r);
    const data = [row(0), [], row(1), new Array(783).fill(1), row(2), new Array(785).fill(1), row(3), row(4)];
    await fs.writeFile(path.join(dir, `${c}.json`), JSON.stringify({ data }));
    await fs.utimes(path.join(dir, `${c}.json`), FIXED_MTIME, FIXED_MTIME); // whole seconds: restorable exactly
  }
}

test('rows without 784 values are dropped before the per-class split (synthetic source)', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fmnist-src-'));
  try {
    await makeSource(dir);
    const d = await loadFashionMnist({ sourceDir: dir, cache: false, trainPerClass: 3 });
    assert.is(d.train.count, 30);
    assert.is(d.test.count, 20);
    for (let c = 0; c < 10; c++) {
      for (let r = 0; r < 3; r++) assert.is(imageAt(d, d.train, c * 3 + r)[0], c * 10 + r);
      for (let r = 0; r < 2; r++) assert.is(imageAt(d, d.test, c * 2 + r)[0], c * 10 + 3 + r);
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('the cache is written, reused, and rebuilt when corrupt, truncated or of another source', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fmnist-cache-'));
  try {
    const sourceDir = path.join(dir, 'src');
    const cacheDir = path.join(dir, 'cache');
    await fs.mkdir(sourceDir);
    await makeSource(sourceDir);
    const options = { sourceDir, cacheDir, trainPerClass: 3 };
    const cacheFile = fashionMnistCachePath(options);
    const reference = await loadFashionMnist(options);
    const good = await fs.readFile(cacheFile);
    assert.is(good.length, 32 + 50 * 785);

    // The second load reads the cache, not the JSON: garble a source file but keep its size and mtime (the fingerprint).
    const file0 = path.join(sourceDir, '0.json');
    const original0 = await fs.readFile(file0);
    await fs.writeFile(file0, Buffer.alloc(original0.length, 0x20));
    await fs.utimes(file0, FIXED_MTIME, FIXED_MTIME);
    const again = await loadFashionMnist(options);
    assert.equal(again.train.pixels, reference.train.pixels);
    assert.equal(again.test.labels, reference.test.labels);
    await fs.writeFile(file0, original0);
    await fs.utimes(file0, FIXED_MTIME, FIXED_MTIME);

    const corruptions: Array<[string, (b: Buffer) => Buffer]> = [
      ['flipped body byte', (b) => { const c = Buffer.from(b); c[c.length - 5] = c[c.length - 5]! ^ 0xff; return c; }],
      ['truncated', (b) => b.subarray(0, b.length - 100)],
      ['bad magic', (b) => { const c = Buffer.from(b); c.write('XXXX', 0, 'latin1'); return c; }],
      ['empty', () => Buffer.alloc(0)],
    ];
    for (const [name, corrupt] of corruptions) {
      await fs.writeFile(cacheFile, corrupt(good));
      const reloaded = await loadFashionMnist(options);
      assert.equal(reloaded.train.pixels, reference.train.pixels, name);
      assert.equal(reloaded.test.pixels, reference.test.pixels, name);
      assert.ok((await fs.readFile(cacheFile)).equals(good), `${name}: cache rewritten`);
    }

    // A stale cache (the sources changed) is rebuilt.
    const data0 = JSON.parse(await fs.readFile(path.join(sourceDir, '0.json'), 'utf8')) as { data: number[][] };
    data0.data[0] = new Array(784).fill(200);
    await fs.writeFile(path.join(sourceDir, '0.json'), JSON.stringify(data0));
    const changed = await loadFashionMnist(options);
    assert.is(changed.train.pixels[0], 200);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('a missing source file is an Error naming it and the remedy', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fmnist-missing-'));
  try {
    await makeSource(dir);
    await fs.rm(path.join(dir, '4.json'));
    try {
      await loadFashionMnist({ sourceDir: dir, cache: false });
      assert.unreachable('should throw');
    } catch (error) {
      assert.match((error as Error).message, path.join(dir, '4.json'));
      assert.match((error as Error).message, 'npm ci');
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test.run();
