import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { BadImageError, indexImageFolder } from '../../../runtime/data/folder-index.ts';
import { decodeImageFile } from '../../../runtime/data/decode.ts';

async function writeImage(file: string, rgb: [number, number, number], width: number, height: number, format: 'png' | 'jpeg' = 'png'): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  const image = sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } });
  await (format === 'png' ? image.png() : image.jpeg({ quality: 95 })).toFile(file);
}

async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'folder-index-'));
  try {
    await body(dir);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

const listing = (files: { count: number; path(i: number): string; label(i: number): number }) =>
  Array.from({ length: files.count }, (_, i) => `${files.path(i)}:${files.label(i)}`);

test('plain folder: every file in train, sorted by path, classes by code unit, loose files -1; sizes and mtimes', async () => {
  await withTempDir(async (root) => {
    for (let i = 0; i < 3; i++) await writeImage(path.join(root, 'b', `${i}.png`), [200, 0, 0], 5, 4);
    await writeImage(path.join(root, 'B', 'deep', 'x.png'), [0, 0, 200], 6, 6);
    await writeImage(path.join(root, 'loose.png'), [0, 200, 0], 3, 3);
    await fs.writeFile(path.join(root, 'b', '.hidden'), 'ignored');
    const index = await indexImageFolder(root);
    assert.equal(index.classes, ['B', 'b']);
    assert.is(index.layout, 'plain');
    assert.equal(listing(index), ['B/deep/x.png:0', 'b/0.png:1', 'b/1.png:1', 'b/2.png:1', 'loose.png:-1']);
    assert.equal(listing(index.train), listing(index), 'DINO trains on every image of a plain folder');
    assert.is(index.test.count, 0);
    const stat = await fs.stat(path.join(root, 'b', '1.png'));
    assert.is(index.byteSize(2), stat.size);
    assert.is(index.mtimeMs(2), stat.mtimeMs);
    assert.is(index.file(2), path.join(root, 'b', '1.png'));
    assert.throws(() => index.path(5), /outside \[0, 5\)/);
  });
});

test('holdout F: per class, file k held out when floor((k+1)F) > floor(kF); train/ + val/ layout gives the splits', async () => {
  await withTempDir(async (root) => {
    for (let i = 0; i < 25; i++) await writeImage(path.join(root, 'plain', 'c', `${String(i).padStart(2, '0')}.png`), [9, 9, 9], 2, 2);
    const held = await indexImageFolder(path.join(root, 'plain'), { holdout: 0.1 });
    assert.equal(Array.from({ length: held.test.count }, (_, i) => held.test.path(i)), ['c/09.png', 'c/19.png']);
    assert.is(held.train.count, 23);
    const quarter = await indexImageFolder(path.join(root, 'plain'), { holdout: 0.25 });
    assert.equal(Array.from({ length: quarter.test.count }, (_, i) => quarter.test.path(i)), ['c/03.png', 'c/07.png', 'c/11.png', 'c/15.png', 'c/19.png', 'c/23.png']);

    const split = path.join(root, 'split');
    await writeImage(path.join(split, 'train', 'dog', 'a.png'), [1, 2, 3], 2, 2);
    await writeImage(path.join(split, 'train', 'cat', 'a.png'), [1, 2, 3], 2, 2);
    await writeImage(path.join(split, 'val', 'emu', 'a.png'), [1, 2, 3], 2, 2);
    await writeImage(path.join(split, 'notes', 'ignored.png'), [1, 2, 3], 2, 2);
    const index = await indexImageFolder(split, { holdout: 0.5 });
    assert.is(index.layout, 'splits');
    assert.equal(index.classes, ['cat', 'dog', 'emu']);
    assert.equal(listing(index.train), ['train/cat/a.png:0', 'train/dog/a.png:1']);
    assert.equal(listing(index.test), ['val/emu/a.png:2']);
  });
});

test('bad files found at indexing: empty and non-image files stop it naming the file; skipBadImages leaves them out', async () => {
  await withTempDir(async (root) => {
    await writeImage(path.join(root, 'a', '0.png'), [1, 1, 1], 2, 2);
    await writeImage(path.join(root, 'a', '1.jpg'), [1, 1, 1], 2, 2, 'jpeg');
    await fs.writeFile(path.join(root, 'a', '2.png'), 'text, not an image');
    await fs.writeFile(path.join(root, 'a', '3.png'), '');
    const error = await indexImageFolder(root).then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof BadImageError, String(error));
    assert.is((error as BadImageError).file, path.join(root, 'a', '2.png'));
    const index = await indexImageFolder(root, { skipBadImages: true });
    assert.equal(listing(index), ['a/0.png:0', 'a/1.jpg:0']);
    assert.equal(index.skipped.map((s) => path.basename(s.file)), ['2.png', '3.png']);
    assert.match(index.skipped[1]!.reason, /empty/);
  });
});

test('cache: reused for files with unchanged size and mtime, re-read otherwise; frozen keeps the recorded list', async () => {
  await withTempDir(async (root) => {
    const data = path.join(root, 'data');
    const cacheFile = path.join(root, 'run', 'data-index.tsv');
    for (let i = 0; i < 3; i++) await writeImage(path.join(data, 'k', `${i}.png`), [i, i, i], 2, 2);
    const first = await indexImageFolder(data, { cacheFile });
    assert.is(first.count, 3);
    const cached = await fs.readFile(cacheFile, 'utf8');
    assert.ok(cached.includes('k/2.png'));
    // Corrupt a file's header keeping its size and mtime: the cached verdict (good) is reused.
    const target = path.join(data, 'k', '1.png');
    const stat = await fs.stat(target);
    const bytes = await fs.readFile(target);
    bytes[0] = 0;
    await fs.writeFile(target, bytes);
    await fs.utimes(target, stat.atimeMs / 1000, stat.mtimeMs / 1000);
    assert.is((await indexImageFolder(data, { cacheFile, skipBadImages: true })).count, 3, 'unchanged size + mtime: not re-read');
    // A new mtime invalidates that file's entry: its header is read again and it is found bad.
    await fs.utimes(target, stat.atimeMs / 1000, stat.mtimeMs / 1000 + 5);
    const reread = await indexImageFolder(data, { cacheFile, skipBadImages: true });
    assert.is(reread.count, 2);
    assert.equal(reread.skipped.map((s) => s.file), [target]);
    // Frozen: a file added since is not seen; the recorded order and verdicts stay.
    await writeImage(path.join(data, 'k', '0a.png'), [5, 5, 5], 2, 2);
    const frozen = await indexImageFolder(data, { cacheFile, frozen: true, skipBadImages: true });
    assert.equal(listing(frozen), listing(reread));
    assert.is((await indexImageFolder(data, { skipBadImages: true })).count, 3, 'a fresh listing sees the new file');
    const missing = await indexImageFolder(data, { cacheFile: path.join(root, 'none.tsv'), frozen: true }).then(() => 'no error', (e: Error) => e.message);
    assert.match(missing, /none\.tsv: no folder index there/);
  });
});

test('decodeImageFile: the file at its own size, RGB interleaved as decoded; 1 channel is PIL luma; a truncated file is a BadImageError naming it', async () => {
  await withTempDir(async (root) => {
    const file = path.join(root, 'red.png');
    await writeImage(file, [255, 0, 0], 7, 3);
    const rgb = await decodeImageFile(file, 3);
    assert.equal([rgb.channels, rgb.height, rgb.width, rgb.data.length], [3, 3, 7, 63]);
    assert.is(rgb.interleaved, true);
    assert.ok(rgb.data.every((v, i) => v === (i % 3 === 0 ? 255 : 0)), 'pixels (255, 0, 0), channels interleaved');
    const gray = await decodeImageFile(file, 1);
    assert.equal([gray.channels, gray.data.length], [1, 21]);
    assert.ok(gray.data.every((v) => v === 76), `PIL's L of pure red is 76, got ${gray.data[0]}`);
    const jpeg = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 9, g: 99, b: 199 } } }).jpeg().toBuffer();
    const truncated = path.join(root, 'cut.jpg');
    await fs.writeFile(truncated, jpeg.subarray(0, jpeg.length >> 1));
    const error = await decodeImageFile(truncated, 3).then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof BadImageError && error.file === truncated, String(error));
  });
});

test.run();
