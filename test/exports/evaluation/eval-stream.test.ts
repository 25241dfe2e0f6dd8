/**
 * The evaluations of an image folder stream it (features.ts `evalImages` + `imageFeatures`): k-NN and the linear probe
 * of a run on a folder give the very features `dino features` writes for it (bit for bit, whole splits, evenly spaced
 * limits, a validation folder), hence the same accuracies as `knn --features` / `linear --features`; the split rules'
 * errors still come from that road; the demo's gallery is the streamed rows of its picks.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { EvalDataError } from '../../../exports/evaluation/eval-data.ts';
import { BadImageError } from '../../../runtime/data/decode.ts';
import { indexImageFolder } from '../../../runtime/data/folder-index.ts';
import { type Yardstick, describeYardstick, scoreFeatures, scoreModel } from '../../../exports/evaluation/curve.ts';
import { featureSplit, readFeatureFile } from '../../../exports/evaluation/feature-file.ts';
import { type FeatureSet, evenlySpaced } from '../../../exports/evaluation/extract-features.ts';
import { extractFeatureFile } from '../../../exports/evaluation/features.ts';
import { knnEvaluate, l2NormalizeRows } from '../../../exports/evaluation/knn.ts';
import { linearProbe } from '../../../exports/evaluation/linear.ts';
import { runModel } from '../../../exports/evaluation/run-model.ts';
import { prepareDemo } from '../../../exports/apps/serve.ts';
import { makeRun, tempDir } from '../helpers.ts';

const dir = tempDir('eval-stream');
const run = makeRun(path.join(dir, 'run')).dir;
const model = runModel({ run });

/** `perClass` PNGs of differing sizes (the eval transform resizes and crops them) in each class folder of `root`. */
async function imageFolder(root: string, classes: readonly string[], perClass: number, seed = 0): Promise<void> {
  for (const [c, cls] of classes.entries()) {
    fs.mkdirSync(path.join(root, cls), { recursive: true });
    for (let i = 0; i < perClass; i++) {
      const w = 24 + ((i * 5 + seed) % 13), h = 22 + ((i * 3 + seed) % 11);
      const px = Buffer.alloc(w * h * 3).map((_, k) => (k * (i + 2 + seed) + c * 90 + ((k >> 5) % 5) * 40) % 256);
      await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(path.join(root, cls, `${String(i).padStart(2, '0')}.png`));
    }
  }
}

/** Rows `rows` of a feature split, as a feature set. */
function pick(set: FeatureSet, rows: ArrayLike<number>): FeatureSet {
  const idx = Array.from(rows);
  const data = new Float32Array(idx.length * set.dim);
  idx.forEach((r, i) => data.set(set.data.subarray(r * set.dim, (r + 1) * set.dim), i * set.dim));
  return { count: idx.length, dim: set.dim, data, labels: Int32Array.from(idx, (r) => set.labels[r]!) };
}

function assertSameRows(got: FeatureSet, want: FeatureSet, what: string): void {
  assert.is(got.count, want.count, `${what}: rows`);
  assert.is(got.dim, want.dim, `${what}: width`);
  assert.equal(Array.from(got.labels), Array.from(want.labels), `${what}: labels`);
  assert.ok(Buffer.compare(Buffer.from(got.data.buffer, got.data.byteOffset, got.data.byteLength), Buffer.from(want.data.buffer, want.data.byteOffset, want.data.byteLength)) === 0, `${what}: features bit for bit`);
}

const folder = path.join(dir, 'shapes');
const file = path.join(dir, 'shapes.safetensors');

test('k-NN and the linear probe of a folder stream the very features `dino features` writes: same rows, same accuracies', async () => {
  await imageFolder(folder, ['ant', 'bee', 'cow'], 20);
  await extractFeatureFile({ run, dataset: folder, out: file, batch: 16 });
  const features = readFeatureFile(file);
  const [train, test] = [featureSplit(features, 'train'), featureSplit(features, 'test')];
  assert.is(train.count, 54);
  assert.is(test.count, 6);

  const streamed = await knnEvaluate({ run, dataset: folder, ks: [1, 5, 20], batch: 16, save: false, keepFeatures: true });
  assertSameRows(streamed.features!.train, train, 'k-NN bank');
  assertSameRows(streamed.features!.test, test, 'k-NN evaluated images');
  const viaFile = await knnEvaluate({ features: file, ks: [1, 5, 20] });
  assert.equal(streamed.result, viaFile.result);
  assert.match(streamed.table, 'on shapes');

  const probe = await linearProbe({ run, dataset: folder, featureBatch: 16, epochs: 3, batch: 16 });
  const probeViaFile = await linearProbe({ features: file, epochs: 3, batch: 16 });
  assert.is(probe.top1, probeViaFile.top1);
  assert.equal(probe.epochLosses, probeViaFile.epochLosses);
  assert.is(probe.n_train, 54);

  // Limits pick evenly spaced rows of each split (every class keeps its share), decoding only those files.
  const limited = await knnEvaluate({ run, dataset: folder, ks: [3], batch: 16, limitTrain: 20, limitTest: 4, save: false, keepFeatures: true });
  assertSameRows(limited.features!.train, pick(train, evenlySpaced(54, 20)), 'limited bank');
  assertSameRows(limited.features!.test, pick(test, evenlySpaced(6, 4)), 'limited evaluated images');
  assert.equal(new Set(limited.features!.train.labels), new Set([0, 1, 2]));
});

test('a validation folder: the bank is every image of the folder, the evaluated images the validation folder, classes matched by name', async () => {
  const val = path.join(dir, 'shapes-val');
  await imageFolder(val, ['bee', 'cow', 'dog'], 3, 7);
  const out = path.join(dir, 'with-val.safetensors');
  await extractFeatureFile({ run, dataset: folder, val, out, batch: 16 });
  const features = readFeatureFile(out);
  assert.equal(features.info.classes, ['ant', 'bee', 'cow', 'dog']);
  const streamed = await knnEvaluate({ run, dataset: folder, val, ks: [1, 5], batch: 16, save: false, keepFeatures: true });
  assertSameRows(streamed.features!.train, featureSplit(features, 'train'), 'bank');
  assertSameRows(streamed.features!.test, featureSplit(features, 'test'), 'validation images');
  assert.equal(Array.from(streamed.features!.test.labels), [1, 1, 1, 2, 2, 2, 3, 3, 3]);
  assert.equal(streamed.result, (await knnEvaluate({ features: out, ks: [1, 5] })).result);
});

test('the split rules refuse as before: a missing folder, a folder with nothing held out, a run trained on every image', async () => {
  const kindOf = (p: Promise<unknown>) => p.then(() => 'resolved', (e: unknown) => (e instanceof EvalDataError ? e.problem.kind : String(e)));
  assert.is(await kindOf(knnEvaluate({ run, dataset: path.join(dir, 'nowhere'), save: false })), 'missing');
  const small = path.join(dir, 'small');
  await imageFolder(small, ['a', 'b'], 5);
  assert.is(await kindOf(knnEvaluate({ run, dataset: small, save: false })), 'no-held-out');
  assert.is(await kindOf(linearProbe({ run, dataset: small })), 'no-held-out');
  const ownRun = makeRun(path.join(dir, 'folder-run')).dir;
  const config = JSON.parse(fs.readFileSync(path.join(ownRun, 'config.json'), 'utf8')) as Record<string, unknown>;
  fs.writeFileSync(path.join(ownRun, 'config.json'), JSON.stringify({ ...config, data: { kind: 'folder', path: folder } }));
  assert.is(await kindOf(knnEvaluate({ run: ownRun, save: false })), 'no-split');
  // With the holdout its training recorded: the 10th file of each class is evaluated.
  fs.writeFileSync(path.join(ownRun, 'config.json'), JSON.stringify({ ...config, data: { kind: 'folder', path: folder }, holdout: 0.1 }));
  const held = await knnEvaluate({ run: ownRun, ks: [1], save: false });
  assert.is(held.result.n_train, 54);
  assert.is(held.result.n_test, 6);
});

test('skipBadImages: a file that passes the header check but cannot be decoded is left out; without it, an error names it', async () => {
  const withBad = path.join(dir, 'with-bad');
  fs.cpSync(folder, withBad, { recursive: true });
  const png = fs.readFileSync(path.join(folder, 'ant', '00.png'));
  fs.mkdirSync(path.join(withBad, 'zzz'));
  const bad = path.join(withBad, 'zzz', 'cut.png'); // the last file of the bank
  fs.writeFileSync(bad, png.subarray(0, png.length - 40));
  const error = await knnEvaluate({ run, dataset: withBad, save: false }).then(() => undefined, (e: unknown) => e);
  assert.ok(error instanceof BadImageError && error.file === bad, String(error));
  const logs: string[] = [];
  const r = await knnEvaluate({ run, dataset: withBad, skipBadImages: true, ks: [1, 5, 20], batch: 16, save: false, keepFeatures: true, log: (m) => logs.push(m) });
  const features = readFeatureFile(file);
  assertSameRows(r.features!.train, featureSplit(features, 'train'), 'bank without the bad file');
  assert.equal(r.result, (await knnEvaluate({ features: file, ks: [1, 5, 20] })).result);
  assert.ok(logs.some((l) => l.includes(bad) && l.includes('skipped 1')), logs.join('\n'));
});

test('a curve point on a folder (train() on its index) scores the streamed features: those of dino features', async () => {
  const index = await indexImageFolder(folder, { holdout: 0.1 });
  const y: Yardstick = { k: 5, limitTrain: 30, probe: { epochs: 2, batch: 16 } };
  assert.equal(describeYardstick(y, index).n_train, 30);
  const features = readFeatureFile(file);
  const want = await scoreFeatures(pick(featureSplit(features, 'train'), evenlySpaced(54, 30)), featureSplit(features, 'test'), y, 3);
  assert.equal(await scoreModel(fs.readFileSync(model), index, y), want);
});

test('the demo gallery: evenly spaced bank images, their streamed features and their pixels (model input as bytes)', async () => {
  const demo = path.join(dir, 'demo');
  const meta = await prepareDemo({ model, dataset: folder, dir: demo, gallerySize: 5 });
  assert.is(meta.count, 5);
  assert.equal([meta.channels, meta.height, meta.width], [1, 28, 28]);
  const rows = evenlySpaced(54, 5);
  const bank = pick(featureSplit(readFeatureFile(file), 'train'), rows);
  assert.equal(meta.labels, Array.from(bank.labels));
  const gallery = new Float32Array(new Uint8Array(fs.readFileSync(path.join(demo, 'gallery-features.bin'))).buffer);
  assert.equal(Array.from(gallery), Array.from(l2NormalizeRows(bank.data, bank.dim)));
  assert.is(fs.statSync(path.join(demo, 'gallery-pixels.bin')).size, 5 * 28 * 28);
});

test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
test.run();
