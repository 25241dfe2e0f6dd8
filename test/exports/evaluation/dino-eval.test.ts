/**
 * Evaluation as DINO's scripts: the per-block [CLS] export (`intermediate`) against the fixed-size forward and the
 * PyTorch fixture, the linear-evaluation features (n last blocks, average patch token), k-NN options, the run's own
 * data by default (data source record, held-out split, validation folder, errors), and preprocessor_config.json.
 */
import { wordError } from '../../../cli/errors.ts';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';
import { type ViTConfig } from '../../../models/vit.ts';
import { createSession, ort } from '../../../runtime/backend.ts';
import { dataSource, parseDataSource } from '../../../runtime/data/source.ts';
import { readSafetensors } from '../../../runtime/io/safetensors.ts';
import { readDinoWeights } from '../../../runtime/io/weights.ts';
import { EvalDataError, type EvalDataOptions, EvalOptionError, evalDataSource, runDataSource } from '../../../exports/evaluation/eval-data.ts';
import { evalImages } from '../../../exports/evaluation/features.ts';
import { checkKnnOptions, knnClassify, knnEvaluate, KNN_TEMPERATURE } from '../../../exports/evaluation/knn.ts';
import { extractFeatures } from '../../../exports/evaluation/extract-features.ts';
import { linearProbe } from '../../../exports/evaluation/linear.ts';
import { writeReport } from '../../../exports/apps/report.ts';
import { type ExportInfo, backboneSpecs, backboneValues, exportTeacher, preprocessorConfig, readExportInfo, teacherOnnx } from '../../../exports/export/teacher.ts';
import { getPreset } from '../../../runtime/dino/presets.ts';
import { makeRun, randomImages, relativeError, tempDir } from '../helpers.ts';

const TMP = tempDir('dino-eval');
const RUN = makeRun(path.join(TMP, 'run'));
const cfg = RUN.config.backbone;
const report: string[] = [];

/** The evaluation data of a ViT export's info (features.ts `evalImages`: the split, labels and classes; images streamed). */
const evalData = (opts: EvalDataOptions, info: ExportInfo) => evalImages(opts, {
  kind: 'vit', inChans: info.backbone.inChans, dim: info.backbone.embedDim, vit: info,
  fixedSide: info.imageSize ? info.imageSize[0] : null, trainedSide: info.imageSize ? info.imageSize[0] : info.backbone.imgSize,
});

async function run(model: string | Uint8Array, x: Float32Array, dims: number[]): Promise<Record<string, ort.Tensor>> {
  const session = await createSession(model, { threads: 2 });
  const out = await session.run({ images: new ort.Tensor('float32', x, dims) });
  await session.release();
  return out;
}

/** Row j of a [N, m, D] tensor as [N, D]. */
function blockRow(t: ort.Tensor, j: number): Float32Array {
  const [n, m, d] = t.dims as [number, number, number];
  const data = t.data as Float32Array, out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) out.set(data.subarray((i * m + j) * d, (i * m + j + 1) * d), i * d);
  return out;
}

/** The model of the first `depth` blocks with the same weights (and the same final norm): DINO's intermediate layer. */
function truncated(backbone: ViTConfig, values: ReadonlyMap<string, Float32Array>, depth: number, imageSize: [number, number], mean: number[], std: number[]): Uint8Array {
  const cut = { ...backbone, depth };
  const names = new Set(backboneSpecs(cut).map((s) => s.name));
  return teacherOnnx(cut, new Map([...values].filter(([k]) => names.has(k))), { mean, std, imageSize, source: 'truncated' });
}

// ---- the intermediate export ------------------------------------------------------------------------

test('intermediate export: block_cls = final-norm [CLS] of each block (truncated fixed-size forwards), existing outputs unchanged', async () => {
  const plain = exportTeacher({ run: RUN.dir, out: path.join(TMP, 'plain.onnx') });
  assert.is('intermediate' in plain.info, false, 'default export info unchanged');
  const inter = exportTeacher({ run: RUN.dir, out: path.join(TMP, 'inter.onnx'), intermediate: cfg.depth });
  assert.is(inter.info.intermediate, cfg.depth);
  assert.is(readExportInfo(inter.out).intermediate, cfg.depth);
  const values = backboneValues(cfg, readDinoWeights(path.join(RUN.dir, 'checkpoint.safetensors'), 'teacher').backbone, 'checkpoint');
  const mean = [...RUN.config.augment.mean], std = [...RUN.config.augment.std];
  for (const [h, w] of [[28, 28], [40, 24]] as const) {
    const x = randomImages(3, 1, h, w, h + w);
    const a = await run(plain.out, x, [3, 1, h, w]);
    const b = await run(inter.out, x, [3, 1, h, w]);
    // Same graph plus two outputs; ORT fuses a little differently when block outputs have another consumer, so the
    // values agree to rounding (the default export itself is unchanged: teacher.test.ts).
    for (const name of ['features', 'patch_tokens', 'cls_attention']) {
      const rel = relativeError(b[name]!.data as Float32Array, a[name]!.data as Float32Array);
      if (name === 'features') report.push(`intermediate vs default export, features at ${h}x${w}: ${rel.toExponential(2)}`);
      assert.ok(rel <= 1e-6, `${h}x${w} ${name}: ${rel}`);
    }
    assert.equal([...b['block_cls']!.dims], [3, cfg.depth, cfg.embedDim]);
    assert.equal([...b['patch_mean']!.dims], [3, cfg.embedDim]);
    let worst = 0;
    for (let j = 0; j < cfg.depth; j++) {
      const want = (await run(truncated(cfg, values, j + 1, [h, w], mean, std), x, [3, 1, h, w]))['features']!.data as Float32Array;
      const rel = relativeError(blockRow(b['block_cls']!, j), want);
      worst = Math.max(worst, rel);
      assert.ok(rel <= 1e-5, `${h}x${w} block ${j}: ${rel}`);
    }
    assert.ok(relativeError(blockRow(b['block_cls']!, cfg.depth - 1), a['features']!.data as Float32Array) <= 1e-6, 'last block = features');
    const tokens = a['patch_tokens']!.data as Float32Array, p = a['patch_tokens']!.dims[1]!, d = cfg.embedDim;
    const avg = new Float64Array(3 * d);
    for (let i = 0; i < 3; i++) for (let q = 0; q < p; q++) for (let k = 0; k < d; k++) avg[i * d + k]! += tokens[(i * p + q) * d + k]! / p;
    assert.ok(relativeError(b['patch_mean']!.data as Float32Array, avg) <= 1e-5, 'patch_mean = mean of patch_tokens');
    report.push(`any-size block_cls vs truncated fixed-size forwards at ${h}x${w}: ${worst.toExponential(2)}`);
  }
  // fewer blocks: the last n, oldest first
  const two = exportTeacher({ run: RUN.dir, out: path.join(TMP, 'inter2.onnx'), intermediate: 2, imageSize: 28 });
  const x = randomImages(2, 1, 28, 28, 3);
  const all = await run(inter.out, x, [2, 1, 28, 28]), last2 = await run(two.out, x, [2, 1, 28, 28]);
  for (let j = 0; j < 2; j++) assert.ok(relativeError(blockRow(last2['block_cls']!, j), blockRow(all['block_cls']!, cfg.depth - 2 + j)) <= 1e-5);
  assert.throws(() => exportTeacher({ run: RUN.dir, out: path.join(TMP, 'bad.onnx'), intermediate: 7 }), /intermediate must be an integer from 1 to 6/);
});

test('intermediate export reproduces PyTorch (get_intermediate_layers) on the reference ViT: fixed and any size', async () => {
  const ref = readSafetensors(new URL('../../fixtures/ref/vit_tiny_ref.safetensors', import.meta.url).pathname);
  const raw = JSON.parse(ref.metadata['config']!) as Record<string, number | boolean>;
  const vit: ViTConfig = {
    kind: 'vit', imgSize: raw['img_size'] as number, patchSize: raw['patch_size'] as number, inChans: raw['in_chans'] as number,
    embedDim: raw['embed_dim'] as number, depth: raw['depth'] as number, numHeads: raw['num_heads'] as number,
    mlpRatio: raw['mlp_ratio'] as number, qkvBias: raw['qkv_bias'] as boolean, layerNormEps: raw['layer_norm_eps'] as number, dropPathRate: 0,
  };
  const weights = new URL('../fixtures/backbone_only.pth', import.meta.url).pathname;
  const values = backboneValues(vit, readDinoWeights(weights, 'teacher').backbone, weights);
  const dynamic = exportTeacher({ backbone: vit, weights, mean: [0], std: [1], out: path.join(TMP, 'ref-inter.onnx'), intermediate: vit.depth });
  for (const input of ['images', 'images_rect']) {
    const t = ref.tensors.get(`input.${input}`)!;
    const [n, c, h, w] = t.shape as [number, number, number, number];
    const fixed = exportTeacher({ backbone: vit, weights, mean: [0], std: [1], out: path.join(TMP, `ref-inter-${input}.onnx`), intermediate: vit.depth, imageSize: [h, w] });
    for (const [label, file] of [['fixed', fixed.out], ['any-size', dynamic.out]] as const) {
      const out = await run(file, t.data as Float32Array, [n, c, h, w]);
      // the last block's entry is PyTorch's feature (get_intermediate_layers(x, 1)[0][:, 0] = forward(x))
      const rel = relativeError(blockRow(out['block_cls']!, vit.depth - 1), ref.tensors.get(`output.${input}.features`)!.data as Float32Array);
      report.push(`${label} ${input} block_cls[last] vs PyTorch: ${rel.toExponential(2)}`);
      assert.ok(rel < 1e-5, `${label} ${input}: ${rel}`);
      // the first block's entry: the one-block network (DINO's intermediate output = norm(blocks[0](x)))
      const want = (await run(truncated(vit, values, 1, [h, w], [0], [1]), t.data as Float32Array, [n, c, h, w]))['features']!.data as Float32Array;
      assert.ok(relativeError(blockRow(out['block_cls']!, 0), want) < 1e-5, `${label} ${input} block 0`);
    }
  }
});

// ---- linear-evaluation features -------------------------------------------------------------------

test('extractFeatures: n=1 without average is `features`; n=1 with average interleaves as DINO; n=2 + average concatenates', async () => {
  const data = { channels: 1, height: 28, width: 28 };
  const x = randomImages(7, 1, 28, 28, 11);
  const set = { count: 7, pixels: Uint8Array.from(x, (v) => Math.round(v * 255)), labels: Int32Array.from({ length: 7 }, (_, i) => i % 3) };
  const inter = path.join(TMP, 'inter.onnx'), plainModel = path.join(TMP, 'plain.onnx');
  const base = await extractFeatures(plainModel, { ...data, set }, { batch: 3 });
  const one = await extractFeatures(plainModel, { ...data, set }, { batch: 3, linear: { nLastBlocks: 1, avgpoolPatchtokens: false } });
  assert.equal(one.data, base.data, 'n=1, no average: exactly the features');
  const d = cfg.embedDim;
  const outs = await run(inter, Float32Array.from(set.pixels, (v) => v / 255), [7, 1, 28, 28]);
  const avg = outs['patch_mean']!.data as Float32Array, blocks = outs['block_cls']!, cls = outs['features']!.data as Float32Array;
  const oneAvg = await extractFeatures(inter, { ...data, set }, { batch: 4, linear: { nLastBlocks: 1, avgpoolPatchtokens: true } });
  assert.is(oneAvg.dim, 2 * d);
  for (let i = 0; i < 7; i++) for (let j = 0; j < d; j++) {
    assert.is(oneAvg.data[i * 2 * d + 2 * j], cls[i * d + j]);
    assert.is(oneAvg.data[i * 2 * d + 2 * j + 1], avg[i * d + j]);
  }
  // the default export has no patch_mean: the average of patch_tokens is taken here instead
  const fromTokens = await extractFeatures(plainModel, { ...data, set }, { batch: 7, linear: { nLastBlocks: 1, avgpoolPatchtokens: true } });
  assert.ok(relativeError(fromTokens.data, oneAvg.data) <= 1e-5);
  const twoAvg = await extractFeatures(inter, { ...data, set }, { batch: 5, linear: { nLastBlocks: 2, avgpoolPatchtokens: true } });
  assert.is(twoAvg.dim, 3 * d);
  const b4 = blockRow(blocks, cfg.depth - 2), b5 = blockRow(blocks, cfg.depth - 1);
  for (let i = 0; i < 7; i++) {
    assert.equal(twoAvg.data.subarray(i * 3 * d, i * 3 * d + d), b4.subarray(i * d, (i + 1) * d));
    assert.equal(twoAvg.data.subarray(i * 3 * d + d, i * 3 * d + 2 * d), b5.subarray(i * d, (i + 1) * d));
    assert.equal(twoAvg.data.subarray(i * 3 * d + 2 * d, (i + 1) * 3 * d), avg.subarray(i * d, (i + 1) * d));
  }
  try {
    await extractFeatures(plainModel, { ...data, set }, { linear: { nLastBlocks: 2, avgpoolPatchtokens: false } });
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, 'intermediate >= 2');
  }
});

test('linearProbe: n=4 + average exports DIR/teacher.linear-n4.onnx (rebuilt when stale), reports the setting; errors name the option', async () => {
  const dir = makeRun(path.join(TMP, 'linear-run')).dir;
  const r = await linearProbe({ run: dir, nLastBlocks: 4, avgpoolPatchtokens: true, limitTrain: 300, limitTest: 100, epochs: 2, batch: 100 });
  const file = path.join(dir, 'teacher.linear-n4.onnx');
  assert.ok(fs.existsSync(file));
  assert.not.ok(fs.existsSync(path.join(dir, 'teacher.onnx')), 'the default export is not needed');
  assert.is(readExportInfo(file).intermediate, 4);
  const json = JSON.parse(r.json);
  assert.equal(Object.keys(json), ['top1', 'train_top1', 'n_train', 'n_test', 'epochs', 'n_last_blocks', 'avgpool_patchtokens']);
  assert.is(json.n_last_blocks, 4);
  assert.match(r.summary, `${5 * cfg.embedDim} dims`);
  assert.ok(r.top1 > 20, r.summary);
  // Older than the checkpoint (not than now: on a loaded machine the first probe alone can take over a minute).
  const before = new Date(fs.statSync(path.join(dir, 'checkpoint.safetensors')).mtimeMs - 60_000);
  fs.utimesSync(file, before, before);
  await linearProbe({ run: dir, nLastBlocks: 4, limitTrain: 100, limitTest: 20, epochs: 1, batch: 100 });
  assert.ok(fs.statSync(file).mtimeMs > before.getTime() + 30_000, 're-exported: it was older than the checkpoint');
  for (const [opts, option] of [[{ nLastBlocks: 0 }, 'nLastBlocks'], [{ nLastBlocks: 2.5 }, 'nLastBlocks'], [{ nLastBlocks: 7 }, 'nLastBlocks']] as const) {
    try {
      await linearProbe({ run: dir, ...opts });
      assert.unreachable();
    } catch (e) {
      assert.instance(e, EvalOptionError);
      assert.is((e as EvalOptionError).option, option);
    }
  }
});

// ---- k-NN options -------------------------------------------------------------------------------------

test('k-NN options: ks and temperature checked with the option named; results keyed by k; temperature recorded only when not 0.07', async () => {
  assert.equal(checkKnnOptions(), { ks: [10, 20, 100, 200], temperature: KNN_TEMPERATURE });
  assert.equal(checkKnnOptions([20, 5, 20]).ks, [5, 20]);
  for (const [ks, t, option] of [[[0], 0.07, 'ks'], [[1.5], 0.07, 'ks'], [[], 0.07, 'ks'], [[5], 0, 'temperature'], [[5], -1, 'temperature'], [[5], NaN, 'temperature']] as const) {
    try {
      checkKnnOptions(ks, t);
      assert.unreachable();
    } catch (e) {
      assert.instance(e, EvalOptionError);
      assert.is((e as EvalOptionError).option, option);
      assert.match((e as Error).message, option);
    }
  }
  const train = { count: 4, dim: 2, data: Float32Array.of(1, 0, 0.9, 0.1, 0, 1, 0.1, 0.9), labels: Int32Array.of(0, 0, 1, 1) };
  const q = { count: 1, dim: 2, data: Float32Array.of(0.8, 0.2), labels: Int32Array.of(0) };
  const def = await knnClassify(train, q, { ks: [3, 1] });
  assert.equal(Object.keys(def), ['top1', 'top5', 'n_train', 'n_test']);
  assert.equal(Object.keys(def.top1), ['1', '3']);
  // Top-5 with k < 5 is top-k, as DINO's knn_classifier: the query (class 0) is nearest to two class-1 images, then a
  // class-0 one. At k = 3 its class is second (counted); at k = 1 top-5 means top-1 (not counted).
  const three = { count: 5, dim: 2, data: Float32Array.of(1, 0, 0.95, 0.05, 0.9, 0.1, 0, 1, 0.2, 0.8), labels: Int32Array.of(1, 1, 0, 2, 2) };
  const q0 = { count: 1, dim: 2, data: Float32Array.of(1, 0.01), labels: Int32Array.of(0) };
  const small = await knnClassify(three, q0, { ks: [1, 3] });
  assert.equal(small.top1, { '1': 0, '3': 0 });
  assert.equal(small.top5, { '1': 0, '3': 100 });
  const hot = await knnClassify(train, q, { ks: [1], temperature: 0.5 });
  assert.is(hot.temperature, 0.5);
  try {
    await knnEvaluate({ run: path.join(TMP, 'no-such-run'), ks: [10, -1] });
    assert.unreachable();
  } catch (e) {
    assert.instance(e, EvalOptionError, 'checked before the run is read');
  }
});

// ---- the run's own data ---------------------------------------------------------------------------

/** A folder of PNGs: `perClass` images of 28 px per class, the class's colour plus noise. */
async function imageFolder(dir: string, classes: string[], perClass: number, seed = 0): Promise<void> {
  for (const [ci, name] of classes.entries()) {
    fs.mkdirSync(path.join(dir, name), { recursive: true });
    for (let i = 0; i < perClass; i++) {
      const px = randomImages(1, 3, 28, 28, seed + ci * 100 + i);
      const raw = Buffer.alloc(28 * 28 * 3);
      for (let p = 0; p < 28 * 28; p++) for (let c = 0; c < 3; c++) raw[p * 3 + c] = Math.round(255 * (0.6 * px[p]! + 0.4 * (c === ci % 3 ? 1 : 0)));
      await sharp(raw, { raw: { width: 28, height: 28, channels: 3 } }).png().toFile(path.join(dir, name, `img${String(i).padStart(2, '0')}.png`));
    }
  }
}

/** An RGB 28 px run (fmnist-tiny6 with 3 channels) whose config.json records `data`. */
function rgbRun(dir: string, data?: unknown, extra: Record<string, unknown> = {}) {
  const base = getPreset('fmnist-tiny6');
  const r = makeRun(dir, { config: { backbone: { ...base.backbone, inChans: 3 }, augment: { ...base.augment, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25] } } });
  if (data !== undefined) fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...r.config, data, ...extra }, null, 2));
  return r;
}

test('runDataSource: old config.json = Fashion-MNIST, folder records (object or string), bad records named; dataSource resolves paths', () => {
  assert.equal(runDataSource(RUN.dir), { kind: 'fmnist' });
  const dir = path.join(TMP, 'src-run');
  rgbRun(dir, { kind: 'folder', path: '/data/pets', val: '/data/pets-val' });
  assert.equal(runDataSource(dir), { kind: 'folder', path: '/data/pets', val: '/data/pets-val' });
  assert.equal(parseDataSource('/data/x'), { kind: 'folder', path: '/data/x' });
  assert.equal(parseDataSource('fmnist'), { kind: 'fmnist' });
  assert.equal(parseDataSource({ kind: 'fmnist' }), { kind: 'fmnist' });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...RUN.config, data: { kind: 'folder' } }));
  assert.throws(() => runDataSource(dir), (e: Error) => e instanceof EvalDataError && e.message.includes('config.json') && e.message.includes('"kind":"folder"'));
  assert.equal(dataSource(), { kind: 'fmnist' });
  assert.equal(dataSource('imgs', 'val'), { kind: 'folder', path: path.resolve('imgs'), val: path.resolve('val') });
  assert.throws(() => dataSource(undefined, 'val'), /Fashion-MNIST/);
  // precedence: dataset > the run's record > fmnist; val replaces the run's, refused with Fashion-MNIST
  assert.equal(evalDataSource({ dataset: '/x' }), { kind: 'folder', path: '/x' });
  assert.equal(evalDataSource({}), { kind: 'fmnist' });
  assert.throws(() => evalDataSource({ run: RUN.dir, val: '/v' }), (e: Error) => e instanceof EvalOptionError && e.option === 'val');
});

test('a run trained on a folder: k-NN, linear probe and report use its held-out split or its validation folder by default', async () => {
  const folder = path.join(TMP, 'shapes');
  await imageFolder(folder, ['a', 'b', 'c'], 10);
  const dir = path.join(TMP, 'rgb-run');
  // trained on every image (no --holdout): nothing is held out, and evaluation says how to give a split
  rgbRun(dir, folder);
  const noSplit = await knnEvaluate({ run: dir, ks: [1], save: false }).then(() => undefined, (e: unknown) => e);
  assert.ok(noSplit instanceof EvalDataError && noSplit.problem.kind === 'no-split', String(noSplit));
  assert.ok(wordError(noSplit).includes('--holdout F') && wordError(noSplit).includes('--val FOLDER'), wordError(noSplit));
  // --holdout 0.1: the 10th file of each class (img09.png), as training left it out
  rgbRun(dir, folder, { holdout: 0.1 });
  const ev = await knnEvaluate({ run: dir, ks: [1, 5], save: false });
  assert.is(ev.result.n_train, 27);
  assert.is(ev.result.n_test, 3);
  assert.match(ev.table, 'on shapes');
  const info = readExportInfo(path.join(dir, 'teacher.onnx'));
  const data = await evalData({ run: dir }, info);
  assert.equal(data.classes, ['a', 'b', 'c']);
  assert.equal(Array.from(data.test.labels), [0, 1, 2]);
  // a validation folder (classes in another order, one unknown to the bank): every folder image is in the bank
  const val = path.join(TMP, 'shapes-val');
  await imageFolder(val, ['b', 'c', 'd'], 2, 500);
  rgbRun(dir, { kind: 'folder', path: folder, val });
  const withVal = await evalData({ run: dir }, info);
  assert.is(withVal.train.count, 30);
  assert.is(withVal.test.count, 6);
  assert.equal(withVal.classes, ['a', 'b', 'c', 'd']);
  assert.equal(Array.from(withVal.test.labels), [1, 1, 2, 2, 3, 3]);
  const probe = await linearProbe({ run: dir, epochs: 2, batch: 10 });
  assert.is(probe.n_train, 30);
  assert.is(probe.n_test, 6);
  // the report's attention maps: the first held-out image of each class
  const html = fs.readFileSync(await writeReport({ run: dir, attentionImages: 2 }), 'utf8');
  assert.is((html.match(/<figcaption>[bc]<\/figcaption>/g) ?? []).length, 2, 'val images of classes b and c');
  // an explicit dataset still wins
  const fm = await evalData({ run: RUN.dir, dataset: 'fmnist' }, readExportInfo(path.join(TMP, 'plain.onnx')));
  assert.is(fm.test.count, 10000);
});

test('evaluation data errors name the folder and the remedy', async () => {
  const info = readExportInfo(path.join(TMP, 'plain.onnx'));
  const dir = path.join(TMP, 'gone-run');
  const missing = path.join(TMP, 'moved-away');
  rgbRun(dir, { kind: 'folder', path: missing });
  const rgbInfo = { ...info, backbone: { ...info.backbone, inChans: 3 } };
  const expectError = async (p: Promise<unknown>, kind: string, ...parts: string[]) => {
    try {
      await p;
      assert.unreachable();
    } catch (e) {
      assert.instance(e, EvalDataError, (e as Error).message);
      assert.is((e as EvalDataError).problem.kind, kind);
      for (const part of parts) assert.ok((e as Error).message.includes(part), `"${(e as Error).message}" should mention "${part}"`);
    }
  };
  await expectError(evalData({ run: dir }, rgbInfo), 'missing', missing, dir, 'dataset: FOLDER');
  await expectError(evalData({ dataset: missing }, rgbInfo), 'missing', missing, 'check the path');
  const small = path.join(TMP, 'small');
  await imageFolder(small, ['a', 'b'], 5);
  await expectError(evalData({ dataset: small }, rgbInfo), 'no-held-out', small, 'val: FOLDER');
  await expectError(evalData({ dataset: small, val: missing }, rgbInfo), 'missing', missing);
  const old = path.join(TMP, 'old-rgb-run');
  rgbRun(old);
  await expectError(evalData({ run: old }, rgbInfo), 'channels', old, 'dataset: FOLDER');
  await expectError(evalData({ dataset: 'fmnist' }, rgbInfo), 'channels', 'grayscale');
});

// ---- preprocessor_config.json --------------------------------------------------------------------

/** What transformers.js' ImageProcessor does to HWC bytes after resizing: rescale, then normalise when asked (or always). */
function applyProcessor(c: ReturnType<typeof preprocessorConfig>, hwc: Uint8Array, channels: number, alwaysNormalize = false): Float32Array {
  const hw = hwc.length / channels, out = new Float32Array(hwc.length);
  for (let p = 0; p < hw; p++) for (let k = 0; k < channels; k++) {
    let v = hwc[p * channels + k]! * (c.do_rescale ? c.rescale_factor : 1);
    if (c.do_normalize || alwaysNormalize) v = (v - c.image_mean[k]!) / c.image_std[k]!;
    out[k * hw + p] = v; // CHW
  }
  return out;
}

test('preprocessor_config.json: a ViTImageProcessor config that gives the graph [0, 1] pixels (normalisation stays in the graph)', async () => {
  const out = path.join(TMP, 'hf', 'model.onnx');
  const r = exportTeacher({ run: RUN.dir, out, preprocessorConfig: true });
  assert.is(r.preprocessorConfig, path.join(path.resolve(TMP), 'hf', 'preprocessor_config.json'));
  const written = JSON.parse(fs.readFileSync(r.preprocessorConfig!, 'utf8'));
  assert.equal(written, {
    image_processor_type: 'ViTImageProcessor', do_resize: true, size: { height: 28, width: 28 }, resample: 3,
    do_rescale: true, rescale_factor: 1 / 255, do_normalize: false, image_mean: [0], image_std: [1], do_convert_rgb: false,
  });
  assert.not.ok(fs.existsSync(path.join(TMP, 'preprocessor_config.json')), 'only when asked');
  exportTeacher({ run: RUN.dir, out: path.join(TMP, 'hf-fixed', 'm.onnx'), imageSize: [32, 24], preprocessorConfig: true });
  assert.equal(JSON.parse(fs.readFileSync(path.join(TMP, 'hf-fixed', 'preprocessor_config.json'), 'utf8')).size, { height: 32, width: 24 });
  const rgb = preprocessorConfig({ backbone: getPreset('vit_small').backbone, imageSize: null });
  assert.equal([rgb.size, rgb.image_mean, rgb.image_std, rgb.do_convert_rgb], [{ height: 224, width: 224 }, [0, 0, 0], [1, 1, 1], true]);
  // The processor's output, fed to the graph, gives the features of bytes / 255 (what knn/linear feed), whether or
  // not the runtime honours do_normalize.
  const bytes = Uint8Array.from(randomImages(1, 1, 28, 28, 4), (v) => Math.round(v * 255));
  const want = (await run(out, Float32Array.from(bytes, (v) => v / 255), [1, 1, 28, 28]))['features']!.data as Float32Array;
  for (const always of [false, true]) {
    const got = (await run(out, applyProcessor(written, bytes, 1, always), [1, 1, 28, 28]))['features']!.data as Float32Array;
    assert.ok(relativeError(got, want) <= 1e-6, `normalize ${always}`);
  }
});

test('report', () => {
  console.log(report.map((l) => `    ${l}`).join('\n'));
  fs.rmSync(TMP, { recursive: true, force: true });
});

test.run();
