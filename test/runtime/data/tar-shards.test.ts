import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { expandShardPattern, indexTarShards, isShardPattern } from '../../../runtime/data/tar-shards.ts';
import { BadImageError, decodeImageFile, decodeImageSource } from '../../../runtime/data/decode.ts';
import { augmentConfig } from '../../../runtime/data/multicrop.ts';
import { MultiCropLoader, type LoaderBatch, type LoaderOptions } from '../../../runtime/data/loader.ts';

const root = await fs.mkdtemp(path.join(os.tmpdir(), 'tar-shards-'));
const members = path.join(root, 'members');
const longDir = 'a-directory-name-long-enough-that-the-member-path-passes-the-hundred-bytes-of-a-ustar-name-field';

/** Writes sample files into `members` and tars them (in this order) into `tarFile` with GNU tar's `format`. */
async function shard(tarFile: string, samples: Array<{ key: string; cls?: number; extra?: string }>, format: 'gnu' | 'pax'): Promise<void> {
  const names: string[] = [];
  for (const [k, s] of samples.entries()) {
    const width = 20 + ((k * 5) % 11), height = 18 + ((k * 3) % 7);
    const pixels = Buffer.alloc(width * height * 3);
    for (let p = 0; p < pixels.length; p++) pixels[p] = (p * (k + 5) + s.key.length * 13) & 255;
    await fs.mkdir(path.dirname(path.join(members, s.key)), { recursive: true });
    await sharp(pixels, { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toFile(path.join(members, `${s.key}.jpg`));
    names.push(`${s.key}.jpg`);
    if (s.cls !== undefined) { await fs.writeFile(path.join(members, `${s.key}.cls`), `${s.cls}\n`); names.push(`${s.key}.cls`); }
    if (s.extra !== undefined) { await fs.writeFile(path.join(members, `${s.key}.json`), s.extra); names.push(`${s.key}.json`); }
  }
  execFileSync('tar', ['-cf', tarFile, `--format=${format}`, '-C', members, ...names]);
}

await fs.mkdir(path.join(root, 'shards'));
await shard(path.join(root, 'shards', 'train-000.tar'), Array.from({ length: 6 }, (_, i) => ({ key: `s0/${i}`, cls: i % 3 })), 'gnu');
await shard(path.join(root, 'shards', 'train-001.tar'), [
  ...Array.from({ length: 5 }, (_, i) => ({ key: `s1/${i}`, cls: (i + 1) % 3, extra: '{"caption": "ignored"}' })),
  { key: `${longDir}/long`, cls: 2 },
], 'pax');
await shard(path.join(root, 'shards', 'train-002.tar'), Array.from({ length: 5 }, (_, i) => ({ key: `s2/${i}`, cls: 10 })), 'gnu');
const pattern = path.join(root, 'shards', 'train-{000..002}.tar');

test('shard patterns: numeric brace ranges keep their zero padding; plain names; malformed ranges refused', () => {
  assert.equal(expandShardPattern('d/train-{000..002}.tar'), ['d/train-000.tar', 'd/train-001.tar', 'd/train-002.tar']);
  assert.equal(expandShardPattern('a-{1..2}-{08..09}.tar'), ['a-1-08.tar', 'a-1-09.tar', 'a-2-08.tar', 'a-2-09.tar']);
  assert.equal(expandShardPattern('one.tar'), ['one.tar']);
  assert.throws(() => expandShardPattern('x-{3..1}.tar'), /runs backwards/);
  assert.throws(() => expandShardPattern('x-{a,b}.tar'), /numeric range/);
  assert.ok(isShardPattern(pattern) && !isShardPattern(root));
});

test('indexing: one sample per key (GNU long names and pax paths), class from .cls, other members ignored; a member decodes as its file', async () => {
  const index = await indexTarShards(pattern);
  assert.is(index.count, 17);
  assert.ok(index.sharded);
  assert.equal(index.classes, ['0', '1', '2', '10'], 'classes sorted by value');
  assert.is(index.path(0), 'train-000.tar#s0/0.jpg');
  assert.is(index.path(11), `train-001.tar#${longDir}/long.jpg`);
  assert.equal(Array.from({ length: 17 }, (_, i) => index.label(i)), [0, 1, 2, 0, 1, 2, 1, 2, 0, 1, 2, 2, 3, 3, 3, 3, 3]);
  assert.equal(Array.from({ length: 17 }, (_, i) => index.shard(i)), [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
  for (const i of [0, 7, 11, 16]) {
    const fromTar = await decodeImageSource(index.source(i), 3);
    const fromFile = await decodeImageFile(path.join(members, index.path(i).split('#')[1]!), 3);
    assert.equal([fromTar.width, fromTar.height], [fromFile.width, fromFile.height]);
    assert.ok(Buffer.from(fromTar.data).equals(Buffer.from(fromFile.data)), `member ${index.path(i)}`);
  }
  const held = await indexTarShards(pattern, { holdout: 0.5 });
  assert.ok(held.test.count > 0 && held.train.count + held.test.count === 17);
});

test('the loader visits shard by shard, the same batches with 0 and 2 workers', async () => {
  const index = await indexTarShards(pattern);
  const options: LoaderOptions = { dataset: index, batchSize: 4, seed: 3, augment: augmentConfig({ globalSize: 16, localSize: 8, localCrops: 1 }) };
  const take = async (workers: number) => {
    const loader = new MultiCropLoader({ ...options, workers });
    try {
      const out: LoaderBatch[] = [];
      for (let i = 0; i < 4; i++) out.push(await loader.next());
      return out;
    } finally {
      await loader.close();
    }
  };
  const a = await take(0), b = await take(2);
  a.forEach((x, i) => {
    assert.equal(x.indices, b[i]!.indices);
    assert.equal(x.globals, b[i]!.globals);
    assert.ok(new Set(Array.from(x.indices, (k) => index.shard(k))).size <= 2, 'a batch reads one or two shards');
  });
  assert.is(new Set(a.flatMap((x) => Array.from(x.indices))).size, 16, 'an epoch visits distinct samples');
});

test('a member that is no image is found when indexing, named shard#member; skipBadImages leaves it out; a non-tar is refused', async () => {
  await fs.writeFile(path.join(members, 'bad.jpg'), 'not an image');
  const bad = path.join(root, 'shards', 'bad.tar');
  execFileSync('tar', ['-cf', bad, '-C', members, 's0/0.jpg', 'bad.jpg']);
  const error = await indexTarShards(bad).then(() => undefined, (e: unknown) => e);
  assert.ok(error instanceof BadImageError && error.file.endsWith('bad.tar#bad.jpg'), String(error));
  assert.is((await indexTarShards(bad, { skipBadImages: true })).count, 1);
  await fs.writeFile(path.join(root, 'shards', 'plain.tar'), Buffer.alloc(1024, 7));
  assert.match(await indexTarShards(path.join(root, 'shards', 'plain.tar')).then(() => 'no error', (e: Error) => e.message), 'not a tar file');
  assert.match(await indexTarShards(path.join(root, 'shards', 'none-{0..1}.tar')).then(() => 'no error', (e: Error) => e.message), 'none-0.tar');
});

test.after(() => fs.rm(root, { recursive: true, force: true }));

test.run();
