/**
 * exports/export/hf.ts with the real client: the folder `dino export --format hf` writes is loaded offline by
 * `@huggingface/transformers` (AutoProcessor + AutoModel, and pipeline('image-feature-extraction')), in a child
 * process (hf-client.ts), and gives the features of the plain `dino export` ONNX through onnxruntime-node (≤ 1e-5
 * relative) for a run's ViT (one channel: RGB in, luma in the graph) and for imported DINO weights (the PyTorch
 * reference fixture; `--preset vit_small --weights FILE` through the CLI). The folder's files and errors are checked too.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Prng, decodeOnnx, initialValues } from '../../../dsl/index.ts';
import { type ViTConfig } from '../../../models/vit.ts';
import { getPreset as getModelPreset } from '../../../models/presets.ts';
import { HF_EXPORT_INFO_KEY, exportHf } from '../../../exports/export/hf.ts';
import { backboneSpecs, exportTeacher, findMetadata } from '../../../exports/export/teacher.ts';
import { writeWeights } from '../../../exports/export/weights.ts';
import { createSession, ort } from '../../../runtime/backend.ts';
import { readSafetensors, type NamedTensor } from '../../../runtime/io/safetensors.ts';
import { makeRun, relativeError, tempDir } from '../helpers.ts';
import { type ClientResult, assertSameFeatures, plainExportOutputs, referencePixels, writeTestImages } from './hf-helpers.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const TMP = tempDir('hf');
const report: string[] = [];

/** transformers.js on `folder` and `images`, in a child process (see hf-client.ts). */
function runClient(folder: string, images: readonly string[]): ClientResult & { modelClass: string } {
  const out = path.join(TMP, `${path.basename(folder)}-client.json`);
  const t0 = performance.now();
  execFileSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'test/exports/export/hf-client.ts'), folder, out, ...images], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  report.push(`transformers.js child process (${path.basename(folder)}): ${(performance.now() - t0).toFixed(0)} ms`);
  return JSON.parse(fs.readFileSync(out, 'utf8'));
}

const outputNames = (file: string) => decodeOnnx(fs.readFileSync(file)).graph;

test('run folder (1-channel ViT): transformers.js AutoModel and the pipeline equal dino export through onnxruntime-node (≤ 1e-5)', async () => {
  const run = makeRun(path.join(TMP, 'run'));
  const cfg = run.config.backbone;
  const folder = path.join(TMP, 'fmnist-hf');
  const res = exportHf({ run: run.dir, out: folder });
  report.push(`fmnist-tiny6 hf export: ${(res.bytes / 1e6).toFixed(2)} MB in ${(res.seconds * 1000).toFixed(0)} ms`);
  const plain = exportTeacher({ run: run.dir, out: path.join(TMP, 'fmnist.onnx') });

  // The folder as transformers.js reads it.
  const config = JSON.parse(fs.readFileSync(path.join(folder, 'config.json'), 'utf8'));
  assert.is(config.model_type, 'vit');
  assert.equal([config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.patch_size, config.image_size], [192, 6, 3, 4, 28]);
  assert.is(config['transformers.js_config'].dtype, 'fp32');
  const pre = JSON.parse(fs.readFileSync(path.join(folder, 'preprocessor_config.json'), 'utf8'));
  assert.equal([pre.do_convert_rgb, pre.do_normalize, pre.size], [true, true, { height: 28, width: 28 }]);
  assert.equal(pre.image_mean, [0.286, 0.286, 0.286], 'the one-channel mean, for each of the three channels');
  const graph = outputNames(res.files.model);
  assert.equal(graph.input.map((i: any) => i.name), ['pixel_values']);
  assert.equal(graph.input[0].type.tensor_type.shape.dim.map((d: any) => d.dim_param ?? d.dim_value), ['N', 3, 'H', 'W']);
  assert.equal(graph.output.map((o: any) => o.name), ['last_hidden_state', 'pooler_output', 'cls_attention']);
  assert.ok(graph.node.some((n: any) => n.name.startsWith('luma/')), 'luma is the first op');
  assert.is(JSON.parse(findMetadata(fs.readFileSync(res.files.model), HF_EXPORT_INFO_KEY)!).backbone.inChans, 1);

  // Two grayscale PNGs and a colour one (its luma is what the one-channel model sees).
  const images = await writeTestImages(TMP, 28, [1, 3, 1], 7);
  const got = runClient(folder, images.map((i) => i.file));
  assert.is(got.modelClass, 'ViTModel');
  const want = await plainExportOutputs(plain.out, referencePixels(images, 1), [images.length, 1, 28, 28]);
  assertSameFeatures(got, want, { n: images.length, patches: 49, dim: cfg.embedDim, heads: cfg.numHeads }, 'fmnist-tiny6', report, 1e-5);

  // transformers.js runs the model unchanged: the same file in onnxruntime-node on its pixel_values gives its outputs.
  const session = await createSession(res.files.model, { threads: 1 });
  const direct = await session.run({ pixel_values: new ort.Tensor('float32', Float32Array.from(got.pixel_values.data), got.pixel_values.dims) });
  assert.ok(relativeError(direct['last_hidden_state']!.data as Float32Array, got.last_hidden_state.data) <= 1e-6);
  await session.release();
});

// ---- imported DINO weights ------------------------------------------------------------------------

const REF = readSafetensors(new URL('../../fixtures/ref/vit_tiny_ref.safetensors', import.meta.url).pathname);
const refRaw = JSON.parse(REF.metadata['config']!) as Record<string, number | boolean>;
const refVit: ViTConfig = {
  kind: 'vit', imgSize: refRaw['img_size'] as number, patchSize: refRaw['patch_size'] as number, inChans: refRaw['in_chans'] as number,
  embedDim: refRaw['embed_dim'] as number, depth: refRaw['depth'] as number, numHeads: refRaw['num_heads'] as number,
  mlpRatio: refRaw['mlp_ratio'] as number, qkvBias: refRaw['qkv_bias'] as boolean, layerNormEps: refRaw['layer_norm_eps'] as number, dropPathRate: 0,
};
const BACKBONE_PTH = new URL('../fixtures/backbone_only.pth', import.meta.url).pathname;

test('imported DINO weights (the PyTorch reference, backbone .pth): transformers.js equals dino export (≤ 1e-5), and the graph equals PyTorch', async () => {
  const folder = path.join(TMP, 'ref-hf');
  const res = exportHf({ backbone: refVit, weights: BACKBONE_PTH, out: folder });
  assert.equal(res.info.mean, [0.485, 0.456, 0.406], 'ImageNet normalisation, in the processor');
  const plain = exportTeacher({ backbone: refVit, weights: BACKBONE_PTH, out: path.join(TMP, 'ref.onnx') });
  const images = await writeTestImages(TMP, 16, [3, 3, 1], 11);
  const got = runClient(folder, images.map((i) => i.file));
  const want = await plainExportOutputs(plain.out, referencePixels(images, 3), [images.length, 3, 16, 16]);
  assertSameFeatures(got, want, { n: images.length, patches: 16, dim: refVit.embedDim, heads: refVit.numHeads }, 'reference ViT', report, 1e-5);

  // pixel_values are normalised images: the reference input (PyTorch's, already normalised) gives PyTorch's outputs.
  const x = REF.tensors.get('input.images')!;
  const session = await createSession(res.files.model, { threads: 1 });
  const out = await session.run({ pixel_values: new ort.Tensor('float32', x.data as Float32Array, x.shape) });
  const tokens = out['last_hidden_state']!.data as Float32Array, d = refVit.embedDim, t = 17;
  const cls = Float32Array.from({ length: 2 * d }, (_, i) => tokens[Math.floor(i / d) * t * d + (i % d)]!);
  const rel = relativeError(cls, REF.tensors.get('output.images.features')!.data as Float32Array);
  report.push(`reference ViT last_hidden_state[:, 0] vs PyTorch: ${rel.toExponential(2)}`);
  assert.ok(rel <= 1e-5, `vs PyTorch: ${rel}`);
  assert.ok(relativeError(out['pooler_output']!.data as Float32Array, cls) === 0, 'pooler_output is the [CLS] token');
  await session.release();
});

test('CLI: dino export --format hf --preset vit_small --weights FILE.pth (DINO ViT-S/16 keys, fresh weights) loads in transformers.js', async () => {
  const cfg = getModelPreset('vit_small').backbone as ViTConfig;
  const tensors = new Map<string, NamedTensor>();
  const specs = backboneSpecs(cfg);
  const values = initialValues(specs, Prng.seeded(3));
  for (const s of specs) tensors.set(s.name, { dtype: 'float32', shape: [...s.shape] as number[], data: values.get(s.name)! });
  const weights = path.join(TMP, 'dino_vits16_fresh.pth');
  writeWeights(weights, tensors, 'pth');
  const folder = path.join(TMP, 'vits16-hf');
  const t0 = performance.now();
  const cli = execFileSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bin/dino.ts'), 'export', '--format', 'hf', '--preset', 'vit_small', '--weights', weights, '--out', folder], { cwd: ROOT, encoding: 'utf8' });
  report.push(`dino export --format hf --preset vit_small: ${(performance.now() - t0).toFixed(0)} ms (${cli.trim()})`);
  assert.match(cli, folder);
  const plain = exportTeacher({ preset: 'vit_small', weights, out: path.join(TMP, 'vits16.onnx') });
  const images = await writeTestImages(TMP, 224, [3], 13);
  const got = runClient(folder, images.map((i) => i.file));
  const want = await plainExportOutputs(plain.out, referencePixels(images, 3), [1, 3, 224, 224]);
  assertSameFeatures(got, want, { n: 1, patches: 196, dim: 384, heads: 6 }, 'vit_small', report, 1e-5);
});

test('--image-size fixes the graph and the processor to that size; --student exports the student', async () => {
  const run = makeRun(path.join(TMP, 'run-fixed'));
  const res = exportHf({ run: run.dir, out: path.join(TMP, 'fixed-hf'), imageSize: 56, student: true });
  assert.equal(res.info.processorSize, [56, 56]);
  const pre = JSON.parse(fs.readFileSync(res.files.preprocessorConfig, 'utf8'));
  assert.equal(pre.size, { height: 56, width: 56 });
  const graph = outputNames(res.files.model);
  assert.equal(graph.input[0].type.tensor_type.shape.dim.map((d: any) => d.dim_param ?? d.dim_value), ['N', 3, 56, 56]);
  const plain = exportTeacher({ run: run.dir, student: true, out: path.join(TMP, 'student-56.onnx'), imageSize: 56 });
  const gray = Float32Array.from({ length: 56 * 56 }, (_, i) => (i % 97) / 97);
  const session = await createSession(res.files.model, { threads: 1 });
  const mean = 0.286, std = 0.353; // fmnist-tiny6's normalisation, done by the processor
  const rgb = new Float32Array(3 * gray.length);
  for (let c = 0; c < 3; c++) rgb.set(gray.map((v) => (v - mean) / std), c * gray.length);
  const hf = await session.run({ pixel_values: new ort.Tensor('float32', rgb, [1, 3, 56, 56]) });
  const want = await plainExportOutputs(plain.out, gray, [1, 1, 56, 56]);
  const rel = relativeError(hf['pooler_output']!.data as Float32Array, want['features']!);
  assert.ok(rel <= 1e-5, `student at 56 px: ${rel}`);
  await session.release();
});

// ---- errors ---------------------------------------------------------------------------------------

test('errors name the flag or file and what to do', () => {
  const file = path.join(TMP, 'a-file');
  fs.writeFileSync(file, 'x');
  assert.throws(() => exportHf({ backbone: refVit, weights: BACKBONE_PTH, out: file }), /a-file is a file.*name a folder/);
  assert.throws(() => exportHf({ backbone: refVit, weights: BACKBONE_PTH, out: path.join(TMP, 'bad-size'), imageSize: 18 }), /18x18.*patch size 4/);
  assert.throws(() => exportHf({ backbone: { ...refVit, inChans: 2 }, weights: BACKBONE_PTH, out: path.join(TMP, 'two') }), /1 channel .* or 3, not 2/);
  assert.throws(() => exportHf({ backbone: refVit, weights: BACKBONE_PTH, out: path.join(TMP, 'mean'), mean: [0.1, 0.2] }), /mean \[0.1,0.2\]: give 1 value or 3/);
  assert.not.ok(fs.existsSync(path.join(TMP, 'bad-size')), 'nothing written on failure');
  const usage = (args: string[]) => {
    try {
      execFileSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bin/dino.ts'), 'export', ...args], { cwd: ROOT, encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      return { status: (e as { status: number }).status, stderr: String((e as { stderr: string }).stderr) };
    }
    return { status: 0, stderr: '' };
  };
  const pre = usage(['--format', 'hf', '--preset', 'vit_small', '--weights', BACKBONE_PTH, '--out', path.join(TMP, 'x'), '--preprocessor-config']);
  assert.is(pre.status, 2);
  assert.match(pre.stderr, /--preprocessor-config/);
});

test('report', () => {
  console.log(report.map((l) => `    ${l}`).join('\n'));
  fs.rmSync(TMP, { recursive: true, force: true });
});

test.run();
