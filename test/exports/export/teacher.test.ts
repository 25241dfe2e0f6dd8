/**
 * exports/export/teacher.ts: the exported backbone equals the training-time network (onnxruntime-node ≤ 1e-5 relative,
 * onnxruntime-web WASM ≤ 1e-4), reproduces PyTorch on the reference weights (imported from .pth and safetensors),
 * keeps the graph contract, and fails with errors that name the file and the problem.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { Graph, Scope, decodeOnnx, emitOnnx, formatError } from '../../../dsl/index.ts';
import { type ViTConfig, visionTransformer } from '../../../models/vit.ts';
import { createSession, ort } from '../../../runtime/backend.ts';
import { createWebSession, ortWeb } from '../../../runtime/web.ts';
import { readSafetensors, writeSafetensorsAtomic, type NamedTensor } from '../../../runtime/io/safetensors.ts';
import { exportTeacher, readExportInfo } from '../../../exports/export/teacher.ts';
import { type FakeRun, makeRun, randomImages, relativeError, tempDir } from '../helpers.ts';

const TMP = tempDir('teacher');
const RUN: FakeRun = makeRun(path.join(TMP, 'run'));
const cfg = RUN.config.backbone;
const N = 5, SIZE = RUN.config.augment.globalSize;
const images = randomImages(N, cfg.inChans, SIZE, SIZE);
const report: string[] = [];

/** The network as the training step runs it: `<network>.backbone.*` state inputs, images normalised by the loader's rule. */
async function trainingTimeOutputs(network: 'teacher' | 'student'): Promise<Record<string, ort.Tensor>> {
  const g = new Graph('training_time');
  const x = g.input('globals', 'float32', [N, cfg.inChans, SIZE, SIZE]);
  const out = visionTransformer(new Scope(g, '', `${network}.`).child('backbone'), x, cfg);
  g.output('features', out.cls);
  g.output('patch_tokens', out.patchTokens);
  g.output('attention', out.attention);
  const bytes = emitOnnx(g, { params: 'inputs' });
  if (E.isLeft(bytes)) throw new Error(bytes.left.map(formatError).join('\n'));
  const session = await createSession(bytes.right, { threads: 2 });
  const mean = RUN.config.augment.mean[0]!, invStd = 1 / RUN.config.augment.std[0]!;
  const feeds: Record<string, ort.Tensor> = { globals: new ort.Tensor('float32', images.map((v) => (v - mean) * invStd), [N, cfg.inChans, SIZE, SIZE]) };
  for (const t of g.params.values()) feeds[t.name] = new ort.Tensor('float32', RUN.state.get(t.name)!, t.shape as number[]);
  const result = await session.run(feeds);
  await session.release();
  return result;
}

/** The [CLS] row over patch keys of a [N, heads, T, T] attention tensor. */
function clsRow(att: Float32Array, n: number, heads: number, t: number): Float32Array {
  const out = new Float32Array(n * heads * (t - 1));
  for (let i = 0; i < n * heads; i++) out.set(att.subarray(i * t * t + 1, i * t * t + t), i * (t - 1));
  return out;
}

test('run folder: exported teacher equals the training-time teacher in onnxruntime-node (≤ 1e-5 relative)', async () => {
  const out = path.join(TMP, 'teacher.onnx');
  const t0 = performance.now();
  const res = exportTeacher({ run: RUN.dir, out });
  report.push(`fmnist-tiny6 export: ${(res.bytes / 1e6).toFixed(2)} MB in ${(performance.now() - t0).toFixed(0)} ms`);
  assert.is(res.info.imageSize, null, 'dynamic H and W by default');
  assert.equal(res.info.mean, [0.286]);
  const t1 = performance.now();
  const session = await createSession(out, { threads: 2 });
  report.push(`onnxruntime-node session load: ${(performance.now() - t1).toFixed(0)} ms`);
  const got = await session.run({ images: new ort.Tensor('float32', images, [N, cfg.inChans, SIZE, SIZE]) });
  const want = await trainingTimeOutputs('teacher');
  const t = 1 + (SIZE / cfg.patchSize) ** 2;
  const checks: [string, Float32Array, Float32Array][] = [
    ['features', got['features']!.data as Float32Array, want['features']!.data as Float32Array],
    ['patch_tokens', got['patch_tokens']!.data as Float32Array, want['patch_tokens']!.data as Float32Array],
    ['cls_attention', got['cls_attention']!.data as Float32Array, clsRow(want['attention']!.data as Float32Array, N, cfg.numHeads, t)],
  ];
  assert.equal([...got['features']!.dims], [N, cfg.embedDim]);
  assert.equal([...got['patch_tokens']!.dims], [N, t - 1, cfg.embedDim]);
  assert.equal([...got['cls_attention']!.dims], [N, cfg.numHeads, t - 1]);
  for (const [name, a, b] of checks) {
    const rel = relativeError(a, b);
    report.push(`node vs training-time ${name}: ${rel.toExponential(2)}`);
    assert.ok(rel <= 1e-5, `${name}: relative error ${rel}`);
  }
  await session.release();
});

test('run folder: --student exports the student (and differs from the teacher)', async () => {
  const out = path.join(TMP, 'student.onnx');
  exportTeacher({ run: RUN.dir, student: true, out });
  const session = await createSession(out, { threads: 2 });
  const got = (await session.run({ images: new ort.Tensor('float32', images, [N, cfg.inChans, SIZE, SIZE]) }))['features']!.data as Float32Array;
  const student = (await trainingTimeOutputs('student'))['features']!.data as Float32Array;
  const teacher = (await trainingTimeOutputs('teacher'))['features']!.data as Float32Array;
  assert.ok(relativeError(got, student) <= 1e-5, 'student export matches the student');
  assert.ok(relativeError(got, teacher) > 1e-2, 'and not the teacher');
  await session.release();
});

test('the same ONNX in onnxruntime-web (WASM) matches onnxruntime-node within 1e-4', async () => {
  const bytes = fs.readFileSync(path.join(TMP, 'teacher.onnx'));
  const node = await createSession(bytes, { threads: 2 });
  const web = await createWebSession(bytes);
  const a = await node.run({ images: new ort.Tensor('float32', images, [N, cfg.inChans, SIZE, SIZE]) });
  const b = await web.run({ images: new ortWeb.Tensor('float32', images, [N, cfg.inChans, SIZE, SIZE]) });
  for (const name of ['features', 'patch_tokens', 'cls_attention']) {
    const rel = relativeError(b[name]!.data as Float32Array, a[name]!.data as Float32Array);
    report.push(`wasm vs node ${name}: ${rel.toExponential(2)}`);
    assert.ok(rel <= 1e-4, `${name}: relative error ${rel}`);
  }
  await node.release();
  await web.release();
});

test('graph contract: symbolic N (and H, W unless fixed), initializers only, module-path node names, metadata', () => {
  const fixed = exportTeacher({ run: RUN.dir, out: path.join(TMP, 'fixed.onnx'), dynamicSize: false });
  assert.equal(fixed.info.imageSize, [28, 28], 'dynamicSize: false fixes the training crop size');
  const fixedDims = decodeOnnx(fs.readFileSync(fixed.out)).graph.input[0].type.tensor_type.shape.dim;
  assert.equal(fixedDims.map((d: any) => d.dim_param ?? d.dim_value), ['N', 1, 28, 28]);
  const bytes = fs.readFileSync(path.join(TMP, 'teacher.onnx'));
  const model = decodeOnnx(bytes);
  const inputs = model.graph.input.map((i: any) => i.name);
  assert.equal(inputs, ['images'], 'the only graph input is images');
  const dims = model.graph.input[0].type.tensor_type.shape.dim;
  assert.equal(dims.map((d: any) => d.dim_param ?? d.dim_value), ['N', 1, 'H', 'W']);
  assert.equal(model.graph.output.map((o: any) => o.name), ['features', 'patch_tokens', 'cls_attention']);
  const names: string[] = model.graph.node.map((n: any) => n.name);
  for (const prefix of ['normalize/', 'patch_embed.proj/', 'blocks.0.attn/', 'blocks.5.mlp.fc2/', 'norm/']) {
    assert.ok(names.some((n) => n.startsWith(prefix)), `a node named ${prefix}...`);
  }
  const inits: string[] = model.graph.initializer.map((i: any) => i.name);
  for (const key of ['cls_token', 'pos_embed', 'blocks.0.attn.qkv.weight', 'norm.weight']) assert.ok(inits.includes(key), `initializer ${key}`);
  assert.ok(model.opset_import.every((o: any) => !o.domain), 'default domain only');
  const info = readExportInfo(bytes);
  assert.is(info.backbone.depth, 6);
  assert.equal(info.std, [0.353]);
  assert.ok(info.source.includes('teacher'));
});

// ---- PyTorch reference weights, imported -----------------------------------------------------------

const REF_FILE = new URL('../../fixtures/ref/vit_tiny_ref.safetensors', import.meta.url).pathname;
const FIXTURES = new URL('../fixtures/', import.meta.url).pathname;
const ref = readSafetensors(REF_FILE);
const refCfgRaw = JSON.parse(ref.metadata['config']!) as Record<string, number | boolean>;
const refVit: ViTConfig = {
  kind: 'vit', imgSize: refCfgRaw['img_size'] as number, patchSize: refCfgRaw['patch_size'] as number, inChans: refCfgRaw['in_chans'] as number,
  embedDim: refCfgRaw['embed_dim'] as number, depth: refCfgRaw['depth'] as number, numHeads: refCfgRaw['num_heads'] as number,
  mlpRatio: refCfgRaw['mlp_ratio'] as number, qkvBias: refCfgRaw['qkv_bias'] as boolean, layerNormEps: refCfgRaw['layer_norm_eps'] as number, dropPathRate: 0,
};
const refTensor = (name: string) => ref.tensors.get(name)!;

async function checkAgainstTorch(modelFile: string, input: string, label: string): Promise<void> {
  const x = refTensor(`input.${input}`);
  const [n, c, h, w] = x.shape as [number, number, number, number];
  const session = await createSession(modelFile, { threads: 1 });
  const got = await session.run({ images: new ort.Tensor('float32', x.data as Float32Array, [n, c, h, w]) });
  const t = 1 + (h / refVit.patchSize) * (w / refVit.patchSize);
  const want: Record<string, Float32Array> = {
    features: refTensor(`output.${input}.features`).data as Float32Array,
    patch_tokens: refTensor(`output.${input}.patch_tokens`).data as Float32Array,
    cls_attention: clsRow(refTensor(`output.${input}.attention`).data as Float32Array, n, refVit.numHeads, t),
  };
  for (const [name, expected] of Object.entries(want)) {
    const rel = relativeError(got[name]!.data as Float32Array, expected);
    report.push(`${label} ${input} ${name} vs PyTorch: ${rel.toExponential(2)}`);
    assert.ok(rel < 1e-5, `${label} ${input} ${name}: relative error ${rel}`);
  }
  await session.release();
}

const refExport = (weights: string, out: string, imageSize: number | [number, number] | undefined, extra: object = {}) =>
  exportTeacher({ backbone: refVit, weights, mean: [0], std: [1], out: path.join(TMP, out), ...(imageSize ? { imageSize } : {}), ...extra });

test('full DINO training checkpoint (.pth, made by PyTorch): teacher export reproduces PyTorch outputs', async () => {
  const file = path.join(FIXTURES, 'dino_checkpoint.pth');
  for (const [input, size] of [['images', [16, 16]], ['images_small', [8, 8]], ['images_rect', [16, 8]]] as const) {
    const res = refExport(file, `ref-${input}.onnx`, [size[0], size[1]]);
    assert.ok(res.info.source.includes('teacher'));
    await checkAgainstTorch(res.out, input, '.pth teacher');
  }
  // The checkpoint's student (module.-prefixed keys) holds the reference weights * 0.5: its export must differ.
  const student = refExport(file, 'ref-student.onnx', 16, { student: true });
  const session = await createSession(student.out, { threads: 1 });
  const x = refTensor('input.images');
  const f = (await session.run({ images: new ort.Tensor('float32', x.data as Float32Array, x.shape) }))['features']!.data as Float32Array;
  assert.ok(relativeError(f, refTensor('output.images.features').data as Float32Array) > 1e-2, 'student differs from teacher');
  await session.release();
});

test('backbone-only .pth (like dino_deitsmall16_pretrain.pth) and backbone-only safetensors reproduce PyTorch', async () => {
  await checkAgainstTorch(refExport(path.join(FIXTURES, 'backbone_only.pth'), 'ref-bb.onnx', 16).out, 'images', 'backbone .pth');
  const st = path.join(TMP, 'backbone.safetensors');
  const tensors = new Map<string, NamedTensor>();
  for (const [k, t] of ref.tensors) if (k.startsWith('param.backbone.')) tensors.set(`backbone.${k.slice('param.backbone.'.length)}`, t);
  writeSafetensorsAtomic(st, tensors);
  await checkAgainstTorch(refExport(st, 'ref-st.onnx', [16, 8]).out, 'images_rect', 'safetensors');
});

// ---- dynamic H and W ------------------------------------------------------------------------------

test('dynamic H/W: one model reproduces PyTorch at 16x16, 8x8 and 16x8 (position embedding resized in the graph)', async () => {
  const res = refExport(path.join(FIXTURES, 'backbone_only.pth'), 'ref-dynamic.onnx', undefined);
  assert.is(res.info.imageSize, null);
  const dims = decodeOnnx(fs.readFileSync(res.out)).graph.input[0].type.tensor_type.shape.dim.map((d: any) => d.dim_param ?? d.dim_value);
  assert.equal(dims, ['N', 3, 'H', 'W']);
  for (const input of ['images', 'images_small', 'images_rect']) await checkAgainstTorch(res.out, input, 'dynamic');
});

test('dynamic H/W: equals the fixed-size exports at 28, 16, 40x24 and 56 (node ≤ 1e-5) and WASM (≤ 1e-4)', async () => {
  const dyn = exportTeacher({ run: RUN.dir, out: path.join(TMP, 'dynamic.onnx') });
  const node = await createSession(dyn.out, { threads: 2 });
  const web = await createWebSession(fs.readFileSync(dyn.out));
  for (const [h, w] of [[28, 28], [16, 16], [40, 24], [56, 56]] as const) {
    const fixed = exportTeacher({ run: RUN.dir, out: path.join(TMP, `fixed-${h}x${w}.onnx`), imageSize: [h, w] });
    const fixedSession = await createSession(fixed.out, { threads: 2 });
    const x = randomImages(2, 1, h, w, h + w);
    const want = await fixedSession.run({ images: new ort.Tensor('float32', x, [2, 1, h, w]) });
    const got = await node.run({ images: new ort.Tensor('float32', x, [2, 1, h, w]) });
    const gotWeb = await web.run({ images: new ortWeb.Tensor('float32', x, [2, 1, h, w]) });
    for (const name of ['features', 'patch_tokens', 'cls_attention']) {
      assert.equal([...got[name]!.dims], [...want[name]!.dims], `${h}x${w} ${name} dims`);
      const rel = relativeError(got[name]!.data as Float32Array, want[name]!.data as Float32Array);
      const relWeb = relativeError(gotWeb[name]!.data as Float32Array, want[name]!.data as Float32Array);
      if (name === 'features') report.push(`dynamic ${h}x${w} features vs fixed export: node ${rel.toExponential(2)}, wasm ${relWeb.toExponential(2)}`);
      assert.ok(rel <= 1e-5, `${h}x${w} ${name}: ${rel}`);
      assert.ok(relWeb <= 1e-4, `${h}x${w} ${name} wasm: ${relWeb}`);
    }
    await fixedSession.release();
  }
  await node.release();
  await web.release();
});

// ---- errors ------------------------------------------------------------------------------------------

function throwsWith(fn: () => unknown, ...parts: string[]): void {
  try {
    fn();
  } catch (e) {
    const msg = (e as Error).message;
    for (const p of parts) assert.ok(msg.includes(p), `error "${msg}" should mention "${p}"`);
    return;
  }
  assert.unreachable(`expected an error mentioning ${parts.join(', ')}`);
}

test('errors name the file and the problem', () => {
  const out = path.join(TMP, 'x.onnx');
  // a truncated safetensors checkpoint
  const bad = path.join(TMP, 'truncated.safetensors');
  const whole = fs.readFileSync(path.join(RUN.dir, 'checkpoint.safetensors'));
  fs.writeFileSync(bad, whole.subarray(0, whole.length - 1000));
  throwsWith(() => exportTeacher({ preset: 'fmnist-tiny6', weights: bad, out }), bad, 'corrupt or truncated');
  // a .pth that is not a zip / pickle
  const badPth = path.join(TMP, 'garbage.pth');
  fs.writeFileSync(badPth, Buffer.from('this is not a torch checkpoint'.repeat(10)));
  throwsWith(() => exportTeacher({ preset: 'vit_small', weights: badPth, out }), badPth);
  // a truncated .pth
  const cut = path.join(TMP, 'cut.pth');
  const pth = fs.readFileSync(path.join(FIXTURES, 'backbone_only.pth'));
  fs.writeFileSync(cut, pth.subarray(0, pth.length / 2));
  throwsWith(() => exportTeacher({ backbone: refVit, weights: cut, out }), cut);
  // weights of another architecture: every mismatch listed, with a hint
  throwsWith(() => exportTeacher({ preset: 'fmnist-tiny12', weights: path.join(RUN.dir, 'checkpoint.safetensors'), out }),
    'checkpoint.safetensors', 'missing key "blocks.6.norm1.weight"', '--preset');
  // missing run folder / checkpoint
  throwsWith(() => exportTeacher({ run: path.join(TMP, 'nope'), out }), path.join(TMP, 'nope'), 'dino train');
  const empty = path.join(TMP, 'empty-run');
  fs.mkdirSync(empty);
  fs.copyFileSync(path.join(RUN.dir, 'config.json'), path.join(empty, 'config.json'));
  throwsWith(() => exportTeacher({ run: empty, out }), path.join(empty, 'checkpoint.safetensors'), 'not found');
  // weights without an architecture; an unknown format; a size that is not a multiple of the patch
  throwsWith(() => exportTeacher({ weights: bad, out }), '--preset');
  throwsWith(() => exportTeacher({ preset: 'vit_small', weights: path.join(TMP, 'w.npz'), out }), 'w.npz', '.safetensors');
  throwsWith(() => exportTeacher({ run: RUN.dir, out, imageSize: 30 }), '30x30', 'patch size 4');
  throwsWith(() => exportTeacher({ run: RUN.dir, out, imageSize: 28, dynamicSize: true }), 'not both');
  assert.not.ok(fs.existsSync(out), 'nothing written on failure');
});

test('report', () => {
  console.log(report.map((l) => `    ${l}`).join('\n'));
  fs.rmSync(TMP, { recursive: true, force: true });
});

test.run();
