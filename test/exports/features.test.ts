/**
 * exports/features.ts, exports/feature-file.ts and `dino features`: the rows of a feature file equal
 * `extractFeatures` on the same images, in data order, with their labels and files; a row is the feature of its
 * file; both formats read back alike; a run stopped by SIGINT and run again gives the very file an uninterrupted
 * run gives; k-NN and the linear probe take the files instead of a model.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { readFeatureFile, readFeatureSplits } from '../../exports/feature-file.ts';
import { extractFeatureFile, listImageFolder } from '../../exports/features.ts';
import { extractFeatures, knnEvaluate, runModel } from '../../exports/knn.ts';
import { linearProbe } from '../../exports/linear.ts';
import { loadImageFolder } from '../../runtime/data/image-folder.ts';
import { makeRun, tempDir } from './helpers.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const dir = tempDir('features');
const run = makeRun(path.join(dir, 'run')).dir;
const model = runModel({ run });
const folder = path.join(dir, 'images');

/** 3 classes of 12 PNGs (sizes differ, so the loader resizes), plus a hidden file that must be ignored. */
async function makeFolder(): Promise<void> {
  for (const [c, cls] of ['cat', 'dog', 'emu'].entries()) {
    fs.mkdirSync(path.join(folder, cls), { recursive: true });
    for (let i = 0; i < 12; i++) {
      const side = 20 + ((i * 7) % 17);
      const px = Buffer.alloc(side * side * 3).map((_, k) => (k * (i + 3) + c * 85 + ((k >> 4) % 7) * 31) % 256);
      await sharp(px, { raw: { width: side, height: side, channels: 3 } }).png().toFile(path.join(folder, cls, `${String(i).padStart(2, '0')}.png`));
    }
  }
  fs.writeFileSync(path.join(folder, 'cat', '.DS_Store'), 'not an image');
}

/** The error `f` rejects with (fails when it resolves). */
async function rejection(f: () => Promise<unknown>): Promise<Error> {
  try {
    await f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

const rowsOf = (data: Float32Array, dim: number, i: number) => Array.from(data.subarray(i * dim, (i + 1) * dim));

test('rows equal extractFeatures on the same images, in data order, with labels and files (.safetensors and .npy)', async () => {
  await makeFolder();
  const out = path.join(dir, 'f.safetensors');
  const r = await extractFeatureFile({ run, dataset: folder, out, batch: 5 });
  assert.ok(r.finished);
  assert.is(r.info.count, 36);
  const file = readFeatureFile(out);
  const data = (await loadImageFolder(folder, { imageSize: 28, channels: 1 })).dataset;
  const expected = [data.train, data.test].map((set) => extractFeatures(model, { channels: 1, height: 28, width: 28, set }, { batch: 5 }));
  const [train, test] = await Promise.all(expected);
  assert.equal(file.info.splits, [{ name: 'train', count: 33 }, { name: 'test', count: 3 }]);
  assert.equal(Array.from(file.data), [...Array.from(train!.data), ...Array.from(test!.data)], 'rows = extractFeatures, train then test');
  assert.equal(Array.from(file.labels), [...Array.from(train!.labels), ...Array.from(test!.labels)]);
  assert.equal(file.info.classes, ['cat', 'dog', 'emu']);
  // Files: every 10th of each class is test, as loadImageFolder splits; each row's label is its file's folder.
  assert.equal(file.files!.slice(0, 3), ['cat/00.png', 'cat/01.png', 'cat/02.png']);
  assert.equal(file.files!.slice(33), ['cat/09.png', 'dog/09.png', 'emu/09.png']);
  file.files!.forEach((f, i) => assert.is(file.info.classes[file.labels[i]!], f.split('/')[0], `row ${i} (${f})`));
  // The .npy form holds the same rows.
  const npy = path.join(dir, 'g.npy');
  await extractFeatureFile({ run, dataset: folder, out: npy, batch: 5 });
  const back = readFeatureFile(npy);
  assert.equal(Array.from(back.data), Array.from(file.data));
  assert.equal(Array.from(back.labels), Array.from(file.labels));
  assert.equal(back.files, file.files);
  for (const f of ['g.npy', 'g.labels.npy', 'g.json', 'g.files.txt']) assert.ok(fs.existsSync(path.join(dir, f)), f);
  // Run again on the finished file: nothing to do, file unchanged.
  const before = fs.readFileSync(out);
  const again = await extractFeatureFile({ run, dataset: folder, out, batch: 5 });
  assert.is(again.resumedAt, 36);
  assert.ok(Buffer.compare(before, fs.readFileSync(out)) === 0);
  // Another feature into the same file is refused, naming the file.
  const refused = await rejection(() => extractFeatureFile({ run, dataset: folder, out, batch: 5, normalize: true }));
  assert.ok(refused.message.includes(out) && refused.message.includes('remove it'), refused.message);
});

test('a row is the feature of its file: a file alone in a folder gives the same row', async () => {
  const file = readFeatureFile(path.join(dir, 'f.safetensors'));
  for (const row of [4, 20, 35]) {
    const lone = path.join(dir, `lone-${row}`, 'x');
    fs.mkdirSync(lone, { recursive: true });
    fs.copyFileSync(path.join(folder, file.files![row]!), path.join(lone, 'image.png'));
    const data = (await loadImageFolder(path.dirname(lone), { imageSize: 28, channels: 1, testEvery: 0 })).dataset;
    const one = await extractFeatures(model, { channels: 1, height: 28, width: 28, set: data.train });
    assert.equal(Array.from(one.data), rowsOf(file.data, file.dim, row), `row ${row} = ${file.files![row]}`);
  }
});

test('listImageFolder orders files as loadImageFolder: train/ + val/ layout', () => {
  const root = path.join(dir, 'layout');
  for (const f of ['train/b/2.png', 'train/b/1.png', 'train/a/z/3.png', 'train/loose.png', 'val/a/9.png', '.hidden/x.png']) {
    fs.mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
    fs.writeFileSync(path.join(root, f), '');
  }
  assert.equal(listImageFolder(root), { train: ['train/a/z/3.png', 'train/b/1.png', 'train/b/2.png', 'train/loose.png'], test: ['val/a/9.png'] });
});

test('linear feature (2 last blocks + mean patch token) equals extractFeatures with the same spec; normalize gives unit rows', async () => {
  const linear = { nLastBlocks: 2, avgpoolPatchtokens: true };
  const out = path.join(dir, 'lin.safetensors');
  await extractFeatureFile({ run, dataset: folder, out, split: 'test', ...linear });
  const file = readFeatureFile(out);
  const data = (await loadImageFolder(folder, { imageSize: 28, channels: 1 })).dataset;
  const ref = await extractFeatures(runModel({ run, intermediate: 2 }), { channels: 1, height: 28, width: 28, set: data.test }, { linear });
  assert.is(file.dim, 3 * 192);
  assert.equal(Array.from(file.data), Array.from(ref.data));
  assert.equal(file.info.linear, linear);
  const unit = path.join(dir, 'unit.npy');
  await extractFeatureFile({ run, dataset: folder, out: unit, split: 'test', normalize: true });
  const u = readFeatureFile(unit);
  for (let i = 0; i < u.count; i++) assert.ok(Math.abs(Math.hypot(...rowsOf(u.data, u.dim, i)) - 1) < 1e-5, `row ${i} has norm 1`);
});

/** Runs `dino features` as a child process; resolves with its exit code and output. */
function dinoFeatures(args: string[], onStart?: (child: ReturnType<typeof spawn>) => void): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'bin/dino.mjs'), 'features', ...args], { cwd: dir, env: { ...process.env, NO_COLOR: '1' } });
    let out = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (out += b));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out }));
    onStart?.(child);
  });
}

test('SIGINT mid-way, then the same command again: the file an uninterrupted run writes, byte for byte', async () => {
  // 240 images at batch 4: the child is interrupted as soon as its first rows are in the file.
  const many = path.join(dir, 'many');
  for (let i = 0; i < 240; i++) {
    const cls = path.join(many, `c${i % 4}`);
    fs.mkdirSync(cls, { recursive: true });
    const px = Buffer.alloc(28 * 28).map((_, k) => (k * (i + 1) + i * 13) % 256);
    await sharp(px, { raw: { width: 28, height: 28, channels: 1 } }).png().toFile(path.join(cls, `${String(i).padStart(3, '0')}.png`));
  }
  const args = (out: string) => ['--model', model, '--data', many, '--batch', '4', '--threads', '1', '--out', out];
  const out = path.join(dir, 'many.safetensors');
  const progress = `${out}.progress.json`;
  /** True once row 0 holds a feature (the file is allocated with zero rows, written in row order). */
  const firstRowWritten = () => {
    if (!fs.existsSync(out)) return false;
    const bytes = fs.readFileSync(out);
    if (bytes.length < 8) return false;
    const start = 8 + Number(bytes.readBigUInt64LE(0));
    return bytes.subarray(start, start + 192 * 4).some((b) => b !== 0);
  };
  const first = await dinoFeatures(args(out), (child) => {
    const poll = setInterval(() => {
      if (!firstRowWritten()) return;
      clearInterval(poll);
      child.kill('SIGINT');
    }, 5);
    child.on('close', () => clearInterval(poll));
  });
  assert.is(first.code, 130, first.out);
  assert.match(first.out, /run the same command again to continue/);
  const stoppedAt = (JSON.parse(fs.readFileSync(progress, 'utf8')) as { completed: number }).completed;
  assert.ok(stoppedAt > 0 && stoppedAt < 240, `stopped at ${stoppedAt}`);
  assert.throws(() => readFeatureFile(out), /not finished/);
  // Another batch size would not continue it into the same bytes: refused.
  const otherBatch = await dinoFeatures(args(out).map((a) => (a === '4' ? '8' : a)));
  assert.is(otherBatch.code, 1, otherBatch.out);
  assert.match(otherBatch.out, /started with batch 4/);
  const second = await dinoFeatures(args(out));
  assert.is(second.code, 0, second.out);
  assert.match(second.out, new RegExp(`continued from row ${stoppedAt}`));
  assert.not.ok(fs.existsSync(progress));
  // The uninterrupted run, in this process, with the same batch and threads (and file name: the header names the file list).
  const whole = path.join(dir, 'whole', 'many.safetensors');
  const r = await extractFeatureFile({ model, dataset: many, out: whole, batch: 4, threads: 1 });
  assert.is(r.resumedAt, 0);
  assert.ok(Buffer.compare(fs.readFileSync(out), fs.readFileSync(whole)) === 0, 'interrupted + continued = uninterrupted');
  assert.is(fs.readFileSync(path.join(dir, 'many.files.txt'), 'utf8'), fs.readFileSync(path.join(dir, 'whole', 'many.files.txt'), 'utf8'));
});

test('knn and linear take precomputed features: a dino features file, and a knn --dump-features folder', async () => {
  const viaModel = await knnEvaluate({ run, dataset: folder, ks: [1, 5], save: false, dumpFeatures: path.join(dir, 'dump') });
  const viaFile = await knnEvaluate({ features: path.join(dir, 'f.safetensors'), ks: [1, 5] });
  const viaDump = await knnEvaluate({ features: path.join(dir, 'dump'), ks: [1, 5] });
  assert.equal(viaFile.result, viaModel.result);
  assert.equal(viaDump.result, viaModel.result);
  const dumped = readFeatureSplits(path.join(dir, 'dump'));
  assert.is(dumped.train.count, 33);
  assert.ok(Math.abs(Math.hypot(...rowsOf(dumped.test.data, dumped.test.dim, 0)) - 1) < 1e-5, 'dumped rows are L2-normalised, as eval_knn.py dumps them');
  const probeModel = await linearProbe({ run, dataset: folder, epochs: 3 });
  const probeFile = await linearProbe({ features: path.join(dir, 'f.safetensors'), epochs: 3 });
  assert.is(probeFile.top1, probeModel.top1);
  assert.equal(probeFile.epochLosses, probeModel.epochLosses);
  assert.match((await rejection(() => knnEvaluate({ features: path.join(dir, 'lin.safetensors') }))).message, /no train split/);
});

test.after(() => { if (!process.env['KEEP']) fs.rmSync(dir, { recursive: true, force: true }); });
test.run();
