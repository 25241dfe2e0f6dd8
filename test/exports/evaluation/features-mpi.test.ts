/**
 * `mpirun -np 2 dino features`: each rank extracts its contiguous share of the rows to its own shard, and rank 0
 * writes an index naming each row's shard; the shards, read in the index's order, hold the rows (features, labels,
 * files) of the one-process file. Skipped, with the reason printed, where Open MPI's mpirun is absent.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { readFeatureFile } from '../../../exports/evaluation/feature-file.ts';
import { type FeatureShardIndex, shardRows } from '../../../exports/evaluation/features.ts';
import { runModel } from '../../../exports/evaluation/run-model.ts';
import { mpiUnavailable, mpirunEnv } from '../../runtime/dist/mpi-launch.ts';
import { makeRun, tempDir } from '../helpers.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
const dir = tempDir('features-mpi');
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
const skip = mpiUnavailable();
if (skip) console.log(`  skipped: ${skip}`);

function dinoFeatures(ranks: number, args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const dino = [path.join(ROOT, 'bin/dino.mjs'), 'features', ...args];
  const child = ranks > 0
    ? spawn('mpirun', ['--oversubscribe', '-np', String(ranks), process.execPath, ...dino], { cwd: dir, env: { ...mpirunEnv(), NO_COLOR: '1' } })
    : spawn(process.execPath, dino, { cwd: dir, env: { ...process.env, NO_COLOR: '1' } });
  let stdout = '', stderr = '';
  child.stdout.on('data', (b: Buffer) => (stdout += b));
  child.stderr.on('data', (b: Buffer) => (stderr += b));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

test('shardRows: contiguous, in order, every row once, sizes within one', () => {
  assert.equal(shardRows(10, 3), [{ first: 0, count: 3 }, { first: 3, count: 3 }, { first: 6, count: 4 }]);
  assert.equal(shardRows(2, 2), [{ first: 0, count: 1 }, { first: 1, count: 1 }]);
});

(skip ? test.skip : test)('2 ranks write 2 shards and an index; together they are the one-process file', async () => {
  const model = runModel({ run: makeRun(path.join(dir, 'run')).dir });
  const folder = path.join(dir, 'images');
  for (const [c, cls] of ['cat', 'dog', 'emu'].entries()) {
    fs.mkdirSync(path.join(folder, cls), { recursive: true });
    for (let i = 0; i < 5; i++) {
      const side = 20 + ((i * 7) % 17);
      const px = Buffer.alloc(side * side * 3).map((_, k) => (k * (i + 3) + c * 85 + ((k >> 4) % 7) * 31) % 256);
      await sharp(px, { raw: { width: side, height: side, channels: 3 } }).png().toFile(path.join(folder, cls, `${i}.png`));
    }
  }
  const args = ['--model', model, '--data', folder, '--batch', '4', '--threads', '1'];
  const one = await dinoFeatures(0, [...args, '--out', 'one.safetensors']);
  assert.is(one.code, 0, one.stderr);
  const two = await dinoFeatures(2, [...args, '--out', 'two.safetensors']);
  assert.is(two.code, 0, two.stderr);
  assert.is(two.stdout.match(/wrote two\.shards\.json/g)?.length, 1, two.stdout); // rank 0 alone prints

  const whole = readFeatureFile(path.join(dir, 'one.safetensors'));
  const index = JSON.parse(fs.readFileSync(path.join(dir, 'two.shards.json'), 'utf8')) as FeatureShardIndex;
  assert.equal([index.format, index.count, index.dim], ['dino-ts-feature-shards/1', whole.info.count, whole.info.dim]);
  assert.equal(index.shards.map((s) => s.file), ['two.rank0-of-2.safetensors', 'two.rank1-of-2.safetensors']);
  let worst = 0;
  for (const s of index.shards) {
    const shard = readFeatureFile(path.join(dir, s.file));
    assert.is(shard.info.count, s.count);
    assert.equal(shard.files, whole.files!.slice(s.first, s.first + s.count), `${s.file}: files`);
    assert.equal([...shard.labels], [...whole.labels.subarray(s.first, s.first + s.count)], `${s.file}: labels`);
    const want = whole.data.subarray(s.first * whole.info.dim, (s.first + s.count) * whole.info.dim);
    shard.data.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - want[i]!))));
  }
  assert.is(index.shards.reduce((n, s) => n + s.count, 0), whole.info.count);
  // The same rows through the same model; batches of other rows beside them may change the last float bit.
  console.log(`  2 shards vs one file: ${whole.info.count} rows, largest feature difference ${worst}`);
  assert.ok(worst <= 1e-5, `largest feature difference ${worst}`);
});

test.run();
