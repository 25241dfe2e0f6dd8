/**
 * exports/evaluation/features.ts, exports/evaluation/feature-file.ts and `dino features`: a folder's rows are its files through DINO's
 * eval transform and the model, in data order with their labels and files; an in-memory dataset's rows equal
 * `extractFeatures`; a row is the feature of its file; the run's recorded holdout and a validation folder split the
 * rows as the evaluations split them; both formats read back alike; a run stopped by SIGINT and run again gives the
 * very file an uninterrupted run gives; k-NN and the linear probe take the files instead of a model.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { Graph, Prng, emitOnnx, relu } from '../../../dsl/index.ts';
import { featureSplit, readFeatureFile, readFeatureSplits } from '../../../exports/evaluation/feature-file.ts';
import { datasetImages, dinoEvalTransform, extractFeatureFile, writeFeatures } from '../../../exports/evaluation/features.ts';
import { knnClassify, knnEvaluate } from '../../../exports/evaluation/knn.ts';
import { type LinearFeatureSpec, extractFeatures, featureRows } from '../../../exports/evaluation/extract-features.ts';
import { runModel } from '../../../exports/evaluation/run-model.ts';
import { linearProbe, trainLinearProbe } from '../../../exports/evaluation/linear.ts';
import { createSession } from '../../../runtime/backend.ts';
import type { Dataset } from '../../../runtime/data/dataset.ts';
import { decodeImageFile } from '../../../runtime/data/decode.ts';
import { evalTransform } from '../../../runtime/data/multicrop.ts';
import { makeRun, tempDir } from '../helpers.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');
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

/** Each file alone through DINO's eval transform at 28 px (grayscale) and the model: the rows a feature file must hold. */
async function reference(modelFile: string, files: readonly string[], linear?: LinearFeatureSpec): Promise<Float32Array[]> {
  const session = await createSession(modelFile, { threads: 1 });
  const rows: Float32Array[] = [];
  const dim = linear ? 192 * (linear.nLastBlocks + (linear.avgpoolPatchtokens ? 1 : 0)) : 192;
  for (const file of files) {
    const input = new Float32Array(28 * 28);
    evalTransform(await decodeImageFile(file, 1), dinoEvalTransform(28), input);
    const row = new Float32Array(dim);
    await featureRows(session, 192, input, [1, 1, 28, 28], linear, row);
    rows.push(row);
  }
  await session.release();
  return rows;
}

function assertRowsClose(got: Float32Array, dim: number, want: Float32Array[], what: string): void {
  want.forEach((w, i) => {
    const g = got.subarray(i * dim, (i + 1) * dim);
    const err = Math.max(...Array.from(w, (v, j) => Math.abs(v - g[j]!)));
    assert.ok(err < 1e-4, `${what} row ${i}: max difference ${err}`);
  });
}

test("a folder's rows are its files through DINO's eval transform, in data order, with labels and files (.safetensors, .npy)", async () => {
  await makeFolder();
  const out = path.join(dir, 'f.safetensors');
  const r = await extractFeatureFile({ run, dataset: folder, out, batch: 5 });
  assert.ok(r.finished);
  const file = readFeatureFile(out);
  assert.is(file.count, 36);
  assert.equal(file.info.splits, [{ name: 'train', count: 33 }, { name: 'test', count: 3 }]);
  assert.equal(file.info.classes, ['cat', 'dog', 'emu']);
  assert.match(file.info.transform, /Resize\(32, bicubic\) \+ CenterCrop\(28\)/);
  // Every 10th file of each class is test, as the evaluations split a folder given to them; labels are the folders.
  assert.equal(file.files!.slice(0, 3), ['cat/00.png', 'cat/01.png', 'cat/02.png']);
  assert.equal(file.files!.slice(33), ['cat/09.png', 'dog/09.png', 'emu/09.png']);
  file.files!.forEach((f, i) => assert.is(file.info.classes[file.labels[i]!], f.split('/')[0], `row ${i} (${f})`));
  assertRowsClose(file.data, file.dim, await reference(model, file.files!.map((f) => path.join(folder, f))), 'f.safetensors');
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
  // A model that dino export did not write is refused naming it.
  const g = new Graph('plain');
  g.output('y', relu(g.input('images', 'float32', [1, 1, 28, 28])));
  const plainModel = path.join(dir, 'plain.onnx');
  fs.writeFileSync(plainModel, (emitOnnx(g, { params: 'inputs' }) as { right: Uint8Array }).right);
  const notOurs = await rejection(() => extractFeatureFile({ model: plainModel, dataset: folder, out: path.join(dir, 'never.npy') }));
  assert.match(notOurs.message, /plain\.onnx: no "dino\.export" or "dino\.backbone" metadata/);
  // Another feature into the same file is refused, naming the file.
  const refused = await rejection(() => extractFeatureFile({ run, dataset: folder, out, batch: 5, normalize: true }));
  assert.ok(refused.message.includes(out) && refused.message.includes('remove it'), refused.message);
});

test('a row is the feature of its file: a file alone in a folder gives the same row', async () => {
  const file = readFeatureFile(path.join(dir, 'f.safetensors'));
  for (const row of [4, 20, 35]) {
    const lone = path.join(dir, `lone-${row}`);
    fs.mkdirSync(path.join(lone, 'x'), { recursive: true });
    fs.copyFileSync(path.join(folder, file.files![row]!), path.join(lone, 'x', 'image.png'));
    const out = path.join(lone, 'one.safetensors');
    await extractFeatureFile({ model, dataset: lone, out, split: 'train' });
    const one = readFeatureFile(out);
    assert.is(one.count, 1);
    assertRowsClose(one.data, one.dim, [file.data.subarray(row * file.dim, (row + 1) * file.dim)], `row ${row} = ${file.files![row]}`);
  }
});

test("an in-memory dataset's rows equal extractFeatures on the same images, bit for bit", async () => {
  const prng = Prng.seeded(9);
  const set = (n: number) => ({ count: n, pixels: Uint8Array.from({ length: n * 28 * 28 }, () => Math.floor(prng.uniform() * 256)), labels: Int32Array.from({ length: n }, (_, i) => i % 3) });
  const data: Dataset = { name: 'random', channels: 1, height: 28, width: 28, classes: ['a', 'b', 'c'], train: set(20), test: set(7) };
  const out = path.join(dir, 'mem.safetensors');
  await writeFeatures({ model, out, batch: 8, images: datasetImages(data, ['train', 'test'], [28, 28]) });
  const file = readFeatureFile(out);
  const [train, test] = [await extractFeatures(model, { channels: 1, height: 28, width: 28, set: data.train }, { batch: 8 }), await extractFeatures(model, { channels: 1, height: 28, width: 28, set: data.test }, { batch: 8 })];
  assert.equal(Array.from(file.data), [...Array.from(train.data), ...Array.from(test.data)]);
  assert.equal(Array.from(file.labels), [...Array.from(data.train.labels), ...Array.from(data.test.labels)]);
  assert.is(file.files, undefined);
});

test("a run's own folder is split by its recorded holdout; a validation folder's classes are matched by name", async () => {
  const holdRun = makeRun(path.join(dir, 'hold-run'), { config: { data: { kind: 'folder', path: folder }, holdout: 0.25 } as never }).dir;
  const out = path.join(dir, 'hold.npy');
  await extractFeatureFile({ run: holdRun, out, split: 'test' });
  const held = readFeatureFile(out);
  // floor((k + 1) 0.25) > floor(k 0.25): files k = 3, 7, 11 of each class.
  assert.equal(held.files, ['cat', 'dog', 'emu'].flatMap((c) => ['03', '07', '11'].map((k) => `${c}/${k}.png`)));
  const val = path.join(dir, 'val');
  for (const [cls, src] of [['dog', 'cat/00.png'], ['zebra', 'emu/05.png']]) {
    fs.mkdirSync(path.join(val, cls!), { recursive: true });
    fs.copyFileSync(path.join(folder, src!), path.join(val, cls!, 'v.png'));
  }
  const withVal = path.join(dir, 'with-val.safetensors');
  await extractFeatureFile({ model, dataset: folder, val, out: withVal });
  const v = readFeatureFile(withVal);
  assert.equal(v.info.splits, [{ name: 'train', count: 36 }, { name: 'test', count: 2 }]);
  assert.equal(v.info.classes, ['cat', 'dog', 'emu', 'zebra']);
  assert.equal(Array.from(v.labels.subarray(36)), [1, 3]);
  assert.equal(v.files!.slice(36), ['../val/dog/v.png', '../val/zebra/v.png']);
});

test('linear feature (2 last blocks + mean patch token) as the probe reads it; normalize gives unit rows', async () => {
  const linear = { nLastBlocks: 2, avgpoolPatchtokens: true };
  const out = path.join(dir, 'lin.safetensors');
  await extractFeatureFile({ run, dataset: folder, out, split: 'test', ...linear });
  const file = readFeatureFile(out);
  assert.is(file.dim, 3 * 192);
  assert.equal(file.info.linear, linear);
  assertRowsClose(file.data, file.dim, await reference(runModel({ run, intermediate: 2 }), file.files!.map((f) => path.join(folder, f)), linear), 'linear');
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
  const file = readFeatureFile(path.join(dir, 'f.safetensors'));
  const [train, test] = [featureSplit(file, 'train'), featureSplit(file, 'test')];
  const viaFile = await knnEvaluate({ features: path.join(dir, 'f.safetensors'), ks: [1, 5] });
  assert.equal(viaFile.result, await knnClassify(train, test, { ks: [1, 5], numClasses: 3 }));
  const viaModel = await knnEvaluate({ run, dataset: folder, ks: [1, 5], save: false, dumpFeatures: path.join(dir, 'dump') });
  const viaDump = await knnEvaluate({ features: path.join(dir, 'dump'), ks: [1, 5] });
  assert.equal(viaDump.result, viaModel.result);
  const dumped = readFeatureSplits(path.join(dir, 'dump'));
  assert.is(dumped.train.count, 33);
  assert.ok(Math.abs(Math.hypot(...rowsOf(dumped.test.data, dumped.test.dim, 0)) - 1) < 1e-5, 'dumped rows are L2-normalised, as eval_knn.py dumps them');
  const probeFile = await linearProbe({ features: path.join(dir, 'f.safetensors'), epochs: 3 });
  const probe = await trainLinearProbe(train, test, { epochs: 3, numClasses: 3 });
  assert.is(probeFile.top1, probe.top1);
  assert.equal(probeFile.epochLosses, probe.epochLosses);
  assert.match((await rejection(() => knnEvaluate({ features: path.join(dir, 'lin.safetensors') }))).message, /no train split/);
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
test.run();
