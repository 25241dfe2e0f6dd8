/**
 * exports/export/weights.ts: the teacher backbone of a run written as .pth and safetensors under DINO's keys; read back
 * bit for bit by the project's readers, and, when a python with torch is found, loaded by PyTorch itself
 * (torch.load weights_only=True, load_state_dict strict into DINO's VisionTransformer) via tools/check_pth_export.py.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readPth, type NamedTensor } from '../../../runtime/io/pth.ts';
import { readSafetensors } from '../../../runtime/io/safetensors.ts';
import { readDinoWeights } from '../../../runtime/io/weights.ts';
import { teacherBackboneState, weightFormatFor, writeTeacherWeights } from '../../../exports/export/weights.ts';
import { dinoViTKeyRank } from '../../../models/weight-names.ts';
import { makeRun, tempDir } from '../helpers.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const TMP = tempDir('weights');
const RUN = makeRun(path.join(TMP, 'run'));
const cfg = RUN.config.backbone;
if (cfg.kind !== 'vit') throw new Error('the fmnist-tiny6 preset is a ViT');

const bits = (t: NamedTensor | Float32Array) => {
  const d = t instanceof Float32Array ? t : t.data;
  return Buffer.from(d.buffer, d.byteOffset, d.byteLength);
};

function assertTeacher(tensors: Map<string, NamedTensor>, network: 'teacher' | 'student' = 'teacher'): void {
  const prefix = `${network}.backbone.`;
  const expected = [...RUN.state.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  assert.equal([...tensors.keys()].sort(), [...expected].sort(), 'exactly the backbone keys, unprefixed');
  const ranks = [...tensors.keys()].map((k) => dinoViTKeyRank(k)!);
  assert.equal(ranks, [...ranks].sort((a, b) => a - b), 'in DINO\'s state_dict order');
  assert.is([...tensors.keys()][0], 'cls_token');
  assert.is([...tensors.keys()].at(-1), 'norm.bias');
  for (const [key, t] of tensors) {
    assert.is(t.dtype, 'float32');
    assert.ok(bits(t).equals(bits(RUN.state.get(prefix + key)!)), `${key} bits`);
  }
}

test('teacherBackboneState: strips teacher.backbone., leaves out the student, head, center and optimizer state', () => {
  const state = readSafetensors(path.join(RUN.dir, 'checkpoint.safetensors')).tensors;
  state.set('teacher.head.mlp.0.weight', { dtype: 'float32', shape: [1], data: new Float32Array(1) });
  state.set('optim.m.student.backbone.cls_token', { dtype: 'float32', shape: [1], data: new Float32Array(1) });
  assertTeacher(teacherBackboneState(state));
  assertTeacher(teacherBackboneState(state, 'student'), 'student');
  assert.throws(() => teacherBackboneState(new Map([['center', state.get('center')!]])), /no "teacher\.backbone\.\*" tensors.*center/);
});

test('teacherBackboneState takes a TrainState-like object (ORT tensors: type, dims, data)', () => {
  const names = [...RUN.state.keys()];
  const shapes = readSafetensors(path.join(RUN.dir, 'checkpoint.safetensors')).tensors;
  const like = { names: () => names, get: (n: string) => ({ type: 'float32', dims: shapes.get(n)!.shape, data: RUN.state.get(n)! }) };
  assertTeacher(teacherBackboneState(like));
});

test('writeTeacherWeights from a run folder: .pth and safetensors read back bit for bit, safetensors metadata format=pt', () => {
  const pth = path.join(TMP, 'out', 'teacher.pth');
  const st = path.join(TMP, 'out', 'teacher.safetensors');
  const r1 = writeTeacherWeights(RUN.dir, pth, 'pth');
  const r2 = writeTeacherWeights(path.join(RUN.dir, 'checkpoint.safetensors'), st, 'safetensors');
  assert.is(r1.tensors, r2.tensors);
  assert.is(r1.bytes, fs.statSync(pth).size);
  const back = readPth(pth);
  assert.ok(back instanceof Map);
  assertTeacher(back as Map<string, NamedTensor>);
  const sf = readSafetensors(st);
  assert.equal(sf.metadata, { format: 'pt' });
  assertTeacher(sf.tensors);
  // The project's own importer takes both files back as a backbone state dict.
  for (const file of [pth, st]) {
    const imported = readDinoWeights(file).backbone;
    assert.is(imported.size, r1.tensors, file);
  }
});

test('writeTeacherWeights: errors name what is missing', () => {
  assert.throws(() => writeTeacherWeights(path.join(TMP, 'nope'), path.join(TMP, 'x.pth'), 'pth'), /no such run folder/);
  fs.mkdirSync(path.join(TMP, 'empty-run'), { recursive: true });
  assert.throws(() => writeTeacherWeights(path.join(TMP, 'empty-run'), path.join(TMP, 'x.pth'), 'pth'), /checkpoint\.safetensors not found/);
  assert.throws(() => writeTeacherWeights(RUN.dir, path.join(TMP, 'x.bin'), 'onnx' as 'pth'), /unknown weights format "onnx"/);
  assert.is(weightFormatFor('a/b.PTH'), 'pth');
  assert.is(weightFormatFor('b.pt'), 'pth');
  assert.is(weightFormatFor('b.safetensors'), 'safetensors');
  assert.is(weightFormatFor('b.onnx'), undefined);
});

/** A python that imports torch: $DINO_TORCH_PYTHON, python3 on PATH, or Debian's /usr/bin/python3. */
function torchPython(): string | undefined {
  for (const candidate of [process.env['DINO_TORCH_PYTHON'], 'python3', '/usr/bin/python3']) {
    if (!candidate) continue;
    const probe = spawnSync(candidate, ['-c', 'import torch'], { encoding: 'utf8' });
    if (!probe.error && probe.status === 0) return candidate;
  }
  return undefined;
}

test('PyTorch loads the .pth with weights_only=True, it equals the safetensors bit for bit, and load_state_dict(strict) takes it', () => {
  const python = torchPython();
  if (!python) {
    console.log('  (skipped: no python with torch found (tried $DINO_TORCH_PYTHON, python3, /usr/bin/python3); install python3-torch to run the PyTorch check)');
    return;
  }
  const pth = path.join(TMP, 'torch', 'teacher.pth');
  const st = path.join(TMP, 'torch', 'teacher.safetensors');
  writeTeacherWeights(RUN.dir, pth, 'pth');
  writeTeacherWeights(RUN.dir, st, 'safetensors');
  const run = spawnSync(python, [path.join(ROOT, 'tools/check_pth_export.py'), 'check', pth, '--safetensors', st, '--vit', '--num-heads', String(cfg.numHeads)], { encoding: 'utf8' });
  assert.is(run.status, 0, `check_pth_export.py failed:\n${run.stdout}\n${run.stderr}`);
  const report = JSON.parse(run.stdout.trim().split('\n').at(-1)!);
  assert.is(report.weights_only, true);
  assert.is(report.tensors, [...RUN.state.keys()].filter((k) => k.startsWith('teacher.backbone.')).length);
  assert.match(report.load_state_dict, /strict/);
  assert.equal(report.safetensors_metadata, { format: 'pt' });
  console.log(`  torch ${report.torch}: ${report.load_state_dict}; features ${JSON.stringify(report.features)}`);
});

test.after(() => fs.rmSync(TMP, { recursive: true, force: true }));

test.run();
