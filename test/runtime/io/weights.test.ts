/** The one weights reader: the same network selection and prefix rules for .pth and .safetensors. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type NamedTensor, encodeSafetensors } from '../../../runtime/io/safetensors.ts';
import { readDinoWeights } from '../../../runtime/io/weights.ts';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/io');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dino-weights-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

const t = (v: number): NamedTensor => ({ dtype: 'float32', shape: [1], data: Float32Array.of(v) });
const write = (name: string, entries: [string, number][]) => {
  const file = path.join(dir, name);
  fs.writeFileSync(file, encodeSafetensors(new Map(entries.map(([k, v]) => [k, t(v)]))));
  return file;
};
const values = (m: Map<string, NamedTensor>) => Object.fromEntries([...m].map(([k, x]) => [k, (x.data as Float32Array)[0]]));

test('a dino-ts checkpoint: the chosen network, backbone and head split, optimizer state and center dropped', () => {
  const file = write('ckpt.safetensors', [
    ['teacher.backbone.cls_token', 1], ['teacher.head.last_layer.weight_v', 2], ['student.backbone.cls_token', 3],
    ['student.head.last_layer.weight_v', 4], ['optim.m.student.backbone.cls_token', 5], ['center', 6],
  ]);
  const teacher = readDinoWeights(file);
  assert.equal(values(teacher.backbone), { cls_token: 1 });
  assert.equal(values(teacher.head), { 'last_layer.weight_v': 2 });
  const student = readDinoWeights(file, 'student');
  assert.equal(values(student.backbone), { cls_token: 3 });
  assert.equal(values(student.head), { 'last_layer.weight_v': 4 });
});

test('DistributedDataParallel `module.` prefixes are stripped in safetensors as in .pth; plain keys are backbone', () => {
  const ddp = readDinoWeights(write('ddp.safetensors', [['module.backbone.norm.weight', 1], ['module.head.mlp.0.bias', 2], ['module.pos_embed', 3]]));
  assert.equal(values(ddp.backbone), { 'norm.weight': 1, pos_embed: 3 });
  assert.equal(values(ddp.head), { 'mlp.0.bias': 2 });
  const wrapped = readDinoWeights(write('net.safetensors', [['student.module.backbone.norm.weight', 7]]), 'student');
  assert.equal(values(wrapped.backbone), { 'norm.weight': 7 });
  // The full DINO .pth fixture: student keys carry `module.`, teacher keys do not; both come out the same way.
  const pth = path.join(FIXTURES, 'full_checkpoint.pth');
  assert.equal([...readDinoWeights(pth, 'student').backbone.keys()], [...readDinoWeights(pth, 'teacher').backbone.keys()]);
  assert.ok(![...readDinoWeights(pth, 'student').head.keys()].some((k) => k.startsWith('module.')));
});

test('errors name the file: a missing network, an unknown format', () => {
  const onlyTeacher = write('teacher-only.safetensors', [['teacher.backbone.cls_token', 1]]);
  assert.throws(() => readDinoWeights(onlyTeacher, 'student'), /teacher-only\.safetensors: this DINO checkpoint has no "student" state dict/);
  assert.throws(() => readDinoWeights(path.join(dir, 'w.npz')), /w\.npz: unknown weights format "\.npz"/);
});


test('Hugging Face and timm ViT names come out as DINO names; their classifier heads are dropped', () => {
  const q = 1, k = 2, v = 3;
  const hf = readDinoWeights(write('hf.safetensors', [
    ['vit.embeddings.cls_token', 10], ['vit.encoder.layer.0.attention.attention.query.bias', q],
    ['vit.encoder.layer.0.attention.attention.key.bias', k], ['vit.encoder.layer.0.attention.attention.value.bias', v],
    ['vit.layernorm.weight', 11], ['classifier.weight', 12],
  ]));
  assert.equal(values(hf.backbone), { cls_token: 10, 'blocks.0.attn.qkv.bias': q, 'norm.weight': 11 });
  assert.equal(Array.from(hf.backbone.get('blocks.0.attn.qkv.bias')!.data as Float32Array), [q, k, v]);
  assert.is(hf.head.size, 0);
  const timm = readDinoWeights(write('timm.safetensors', [['cls_token', 1], ['norm.weight', 2], ['head.weight', 3], ['head.bias', 4]]));
  assert.equal(values(timm.backbone), { cls_token: 1, 'norm.weight': 2 });
  assert.is(timm.head.size, 0);
});

test.run();
