// Fixtures: test/fixtures/io/*.pth and expected.safetensors, made by tools/make_pth_fixtures.py
// (Debian's python3-torch 1.13). Every tensor is compared bit for bit with what torch saved.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decodePth, extractStateDict, PyObject, readPth, type NamedTensor } from '../../../runtime/io/pth.ts';
import { readSafetensors } from '../../../runtime/io/safetensors.ts';
import { readZipDirectory, readZipEntry } from '../../../runtime/io/zip.ts';
import { crc32 } from 'node:zlib';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/io');
const fixture = (name: string): string => path.join(FIXTURES, name);
const EXPECTED = readSafetensors(fixture('expected.safetensors')).tensors;

const BACKBONE_KEYS = [
  'cls_token',
  'pos_embed',
  'patch_embed.proj.weight',
  'patch_embed.proj.bias',
  'blocks.0.norm1.weight',
  'blocks.0.attn.qkv.weight',
  'blocks.0.attn.qkv.bias',
  'blocks.0.attn.proj.weight',
  'blocks.0.mlp.fc1.weight',
  'norm.weight',
  'position_ids',
  'num_batches_tracked',
];
const HEAD_KEYS = ['mlp.0.weight', 'mlp.0.bias', 'mlp.2.weight', 'mlp.2.bias', 'last_layer.weight_g', 'last_layer.weight_v'];

function bytesOf(t: NamedTensor): number[] {
  return [...new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)];
}

function assertSameTensor(actual: unknown, expected: NamedTensor | undefined, name: string): void {
  assert.ok(expected !== undefined, `no expected value for ${name}`);
  const t = actual as NamedTensor;
  assert.ok(t !== undefined && ArrayBuffer.isView(t.data), `${name} is a tensor`);
  assert.is(t.dtype, expected!.dtype, `${name} dtype`);
  assert.equal(t.shape, expected!.shape, `${name} shape`);
  assert.equal(bytesOf(t), bytesOf(expected!), `${name} data`);
}

/** Follows `a/b/0/c` through Maps (numeric segments also match int keys) and arrays. */
function at(tree: unknown, segments: string[]): unknown {
  let node = tree;
  for (const segment of segments) {
    if (node instanceof Map) node = node.has(segment) ? node.get(segment) : node.get(Number(segment));
    else if (Array.isArray(node)) node = node[Number(segment)];
    else return undefined;
  }
  return node;
}

const full = readPth(fixture('full_checkpoint.pth'));

test('full checkpoint: every tensor (student, teacher, optimizer state, center, all dtypes) matches torch bit for bit', () => {
  let compared = 0;
  for (const [name, expected] of EXPECTED) {
    if (!name.startsWith('full/')) continue;
    // Keys inside state dicts contain dots but no slashes: split on the first 2 or 4 slashes only.
    const parts = name.split('/');
    const segments = parts[1] === 'optimizer' ? parts.slice(1) : [parts[1]!, parts.slice(2).join('/')];
    assertSameTensor(at(full, segments), expected, name);
    compared++;
  }
  assert.is(compared, 2 * (BACKBONE_KEYS.length + HEAD_KEYS.length) + 2 * 3 + 1 + 5);
});

test('full checkpoint: Python values, argparse.Namespace and optimizer hyper-parameters', () => {
  const top = full as Map<string, unknown>;
  assert.equal([...top.keys()], ['student', 'teacher', 'optimizer', 'epoch', 'args', 'dino_loss', 'extra_dtypes']);
  assert.is(top.get('epoch'), 3);
  const args = top.get('args');
  assert.ok(args instanceof PyObject);
  assert.is((args as PyObject).className, 'argparse.Namespace');
  assert.is((args as PyObject).attribute('arch'), 'vit_tiny');
  assert.is((args as PyObject).attribute('lr'), 0.0005);
  assert.is((args as PyObject).attribute('use_fp16'), false);
  assert.equal((args as PyObject).attribute('local_crops_scale'), [0.05, 0.4]);
  const group = at(full, ['optimizer', 'param_groups', '0']) as Map<string, unknown>;
  assert.is(group.get('lr'), 0.0005);
  assert.equal(group.get('betas'), [0.9, 0.999]);
  assert.is(group.get('weight_decay'), 0.04);
  assert.is(group.get('foreach'), null);
  assert.equal(group.get('params'), [0, 1]);
  const extra = top.get('extra_dtypes') as Map<string, unknown>;
  assert.is(extra.get('big_int'), 2n ** 70n);
  assert.is(extra.get('neg_int'), -300);
  assert.is(extra.get('float'), 1.5);
  assert.equal(extra.get('tuple'), [1, 'a', null, true]);
  assert.equal(extra.get('bytes'), new Uint8Array([0, 1, 255]));
  assert.equal(extra.get('list'), [1, 2.5, 'three']);
  assert.equal([...((extra.get('half') as NamedTensor).data as Float32Array)], [1, -2.5, 65504, 2 ** -24, Infinity, -0]);
});

test('extractStateDict: teacher by default, student on request, prefixes stripped, DINO names', () => {
  const teacher = extractStateDict(full, 'full_checkpoint.pth');
  assert.equal([...teacher.backbone.keys()], BACKBONE_KEYS);
  assert.equal([...teacher.head.keys()], HEAD_KEYS);
  for (const key of BACKBONE_KEYS) assertSameTensor(teacher.backbone.get(key), EXPECTED.get(`full/teacher/backbone.${key}`), key);
  for (const key of HEAD_KEYS) assertSameTensor(teacher.head.get(key), EXPECTED.get(`full/teacher/head.${key}`), key);

  const student = extractStateDict(full, 'full_checkpoint.pth', { prefer: 'student' });
  assert.equal([...student.backbone.keys()], BACKBONE_KEYS);
  assert.equal([...student.head.keys()], HEAD_KEYS);
  for (const key of BACKBONE_KEYS) assertSameTensor(student.backbone.get(key), EXPECTED.get(`full/student/module.backbone.${key}`), key);
  for (const key of HEAD_KEYS) assertSameTensor(student.head.get(key), EXPECTED.get(`full/student/module.head.${key}`), key);
  // Teacher and student really are different tensors.
  assert.not.equal(bytesOf(student.backbone.get('cls_token')!), bytesOf(teacher.backbone.get('cls_token')!));
});

test('backbone-only state dict (stored, deflated, pickle protocol 4): keys without prefix, empty head', () => {
  for (const file of ['backbone_only.pth', 'backbone_deflated.pth', 'backbone_protocol4.pth']) {
    const { backbone, head } = extractStateDict(readPth(fixture(file)), file, { prefer: 'student' });
    assert.equal([...backbone.keys()], BACKBONE_KEYS, file);
    assert.is(head.size, 0);
    for (const key of BACKBONE_KEYS) assertSameTensor(backbone.get(key), EXPECTED.get(`backbone_only/${key}`), `${file} ${key}`);
  }
});

test('non-contiguous tensors are materialised row-major; contiguous ones are views over the file', () => {
  const { backbone } = extractStateDict(readPth(fixture('backbone_only.pth')), 'backbone_only.pth');
  // Saved as views: qkv weight/bias share one [24, 9] storage (strides (9,1) and (9,) at offset 8),
  // proj.weight has strides (16, 2), fc1.weight is a transpose with strides (1, 16).
  assert.equal(backbone.get('blocks.0.attn.qkv.weight')!.shape, [24, 8]);
  assert.equal(backbone.get('blocks.0.attn.qkv.bias')!.shape, [24]);
  assert.equal(backbone.get('blocks.0.attn.proj.weight')!.shape, [8, 8]);
  assert.equal(backbone.get('blocks.0.mlp.fc1.weight')!.shape, [16, 8]);
  const qkvWeight = backbone.get('blocks.0.attn.qkv.weight')!.data as Float32Array;
  const qkvBias = backbone.get('blocks.0.attn.qkv.bias')!.data as Float32Array;
  assert.is(qkvWeight.length, 24 * 8);
  assert.ok(new Set([...qkvWeight, ...qkvBias]).size === 24 * 9, 'weight and bias are disjoint parts of one storage');
  // Values checked against torch's .contiguous() in the previous tests; here: where the data lives.
  const fileSize = fs.statSync(fixture('backbone_only.pth')).size;
  assert.is(backbone.get('cls_token')!.data.buffer.byteLength, fileSize, 'contiguous: a view over the file buffer');
  assert.is.not(qkvWeight.buffer.byteLength, fileSize, 'strided: a fresh copy');
});

function errorOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    return (error as Error).message;
  }
  assert.unreachable('should have thrown');
  return '';
}

/** The entries of a real fixture, to rebuild variants of it. */
function zipEntries(file: string): Map<string, Uint8Array> {
  const bytes = new Uint8Array(fs.readFileSync(fixture(file)));
  const entries = new Map<string, Uint8Array>();
  for (const [name, entry] of readZipDirectory(bytes)) entries.set(name, readZipEntry(bytes, entry).slice());
  return entries;
}

/** A stored (uncompressed) ZIP archive, written here to make well-formed archives with bad content. */
function storedZip(entries: Map<string, Uint8Array>): Uint8Array {
  const locals: number[] = [];
  const central: number[] = [];
  const u16 = (out: number[], v: number): void => { out.push(v & 0xff, (v >>> 8) & 0xff); };
  const u32 = (out: number[], v: number): void => { u16(out, v & 0xffff); u16(out, v >>> 16); };
  for (const [name, data] of entries) {
    const nameBytes = [...new TextEncoder().encode(name)];
    const crc = crc32(data) >>> 0;
    const offset = locals.length;
    u32(locals, 0x04034b50); u16(locals, 20); u16(locals, 0); u16(locals, 0); u16(locals, 0); u16(locals, 0x21);
    u32(locals, crc); u32(locals, data.length); u32(locals, data.length); u16(locals, nameBytes.length); u16(locals, 0);
    locals.push(...nameBytes, ...data);
    u32(central, 0x02014b50); u16(central, 20); u16(central, 20); u16(central, 0); u16(central, 0); u16(central, 0); u16(central, 0x21);
    u32(central, crc); u32(central, data.length); u32(central, data.length); u16(central, nameBytes.length);
    u16(central, 0); u16(central, 0); u16(central, 0); u16(central, 0); u32(central, 0); u32(central, offset);
    central.push(...nameBytes);
  }
  const end: number[] = [];
  u32(end, 0x06054b50); u16(end, 0); u16(end, 0); u16(end, entries.size); u16(end, entries.size);
  u32(end, central.length); u32(end, locals.length); u16(end, 0);
  return new Uint8Array([...locals, ...central, ...end]);
}

test('the test ZIP writer reproduces a readable checkpoint (so the variants below differ only where intended)', () => {
  const rebuilt = storedZip(zipEntries('backbone_only.pth'));
  const { backbone } = extractStateDict(decodePth(rebuilt, 'rebuilt.pth'), 'rebuilt.pth');
  for (const key of BACKBONE_KEYS) assertSameTensor(backbone.get(key), EXPECTED.get(`backbone_only/${key}`), key);
});

test('corrupt, truncated, foreign and legacy files: errors name the file and the problem', () => {
  const good = new Uint8Array(fs.readFileSync(fixture('full_checkpoint.pth')));
  const directory = readZipDirectory(good);
  const contentStart = (name: string): number => {
    const local = directory.get(name)!.localHeaderOffset;
    const view = new DataView(good.buffer, good.byteOffset);
    return local + 30 + view.getUint16(local + 26, true) + view.getUint16(local + 28, true);
  };
  const flipped = (offset: number): Uint8Array => {
    const b = good.slice();
    b[offset] = b[offset]! ^ 0xff;
    return b;
  };
  let seed = 12345;
  const random = Uint8Array.from({ length: 4096 }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 24));
  // The central directory's offset, from the end-of-central-directory record (the last 22 bytes here).
  const centralStart = new DataView(good.buffer, good.byteOffset).getUint32(good.length - 22 + 16, true);
  assert.ok(centralStart > 2000 && centralStart < good.length);

  const entries = zipEntries('backbone_only.pth');
  const withEntry = (name: string, data: Uint8Array | undefined): Uint8Array => {
    const copy = new Map(entries);
    if (data === undefined) copy.delete(name);
    else copy.set(name, data);
    return storedZip(copy);
  };
  const pickle = entries.get('backbone_only/data.pkl')!;
  const storage0 = entries.get('backbone_only/data/0')!;

  const NAME = 'model.pth';
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['empty file', new Uint8Array(0), /not a PyTorch checkpoint.*nothing \(empty file\)/],
    ['random bytes', random, /not a PyTorch checkpoint: a torch\.save file is a ZIP archive starting with "PK\\x03\\x04"/],
    ['truncated to half', good.subarray(0, good.length >> 1), /not a complete ZIP archive \(no ZIP end-of-central-directory record.*truncated or corrupt/],
    ['middle cut out, directory kept', new Uint8Array([...good.subarray(0, 2000), ...good.subarray(centralStart)]), /not a complete ZIP archive \(.*(beyond the end of the file|bad signature|missing)/],
    ['a flipped byte in data.pkl', flipped(contentStart('full_checkpoint/data.pkl') + 100), /entry "full_checkpoint\/data\.pkl" fails its CRC-32 check/],
    ['a flipped byte in a storage', flipped(contentStart('full_checkpoint/data/3') + 5), /entry "full_checkpoint\/data\/3" fails its CRC-32 check/],
    ['pickle cut short', withEntry('backbone_only/data.pkl', pickle.subarray(0, 300)), /backbone_only\/data\.pkl is not a valid pickle \(the pickle ends at byte 300/],
    ['unknown opcode', withEntry('backbone_only/data.pkl', Uint8Array.of(0x80, 0x02, 0xff)), /unsupported pickle opcode 0xff at byte 2/],
    ['no data.pkl', withEntry('backbone_only/data.pkl', undefined), /has no <archive>\/data\.pkl, so it was not written by torch\.save/],
    ['a storage missing', withEntry('backbone_only/data/0', undefined), /the archive has no entry backbone_only\/data\/0/],
    ['a storage too short', withEntry('backbone_only/data/0', storage0.subarray(0, storage0.length - 4)), /storage data\/0 \(torch\.FloatStorage\) holds \d+ bytes but is declared as \d+ elements/],
  ];
  for (const [what, bytes, pattern] of cases) {
    const message = errorOf(() => decodePth(bytes, NAME));
    assert.ok(message.startsWith(`${NAME}: `), `${what}: names the file: ${message}`);
    assert.match(message, pattern, `${what}: ${message}`);
  }
  const legacy = errorOf(() => readPth(fixture('legacy_format.pth')));
  assert.ok(legacy.startsWith(fixture('legacy_format.pth')));
  assert.match(legacy, /legacy \(pre-1\.6, non-zip\).*re-save it with a recent PyTorch/);
  const missing = errorOf(() => readPth(fixture('does-not-exist.pth')));
  assert.match(missing, /does-not-exist\.pth: cannot read PyTorch checkpoint: no such file/);
});

test('extractStateDict errors name the file and say what to do', () => {
  const onlyTeacher = new Map([['teacher', new Map([['backbone.cls_token', { dtype: 'float32', shape: [1], data: new Float32Array(1) }]])]]);
  assert.match(
    errorOf(() => extractStateDict(onlyTeacher, 'ckpt.pth', { prefer: 'student' })),
    /^ckpt\.pth: this DINO checkpoint has no "student" state dict \(it has "teacher"\); pass prefer: 'teacher'/,
  );
  assert.match(errorOf(() => extractStateDict([1, 2], 'list.pth')), /^list\.pth: expected a dict of tensors.*found a list\/tuple/);
  const withJunk = new Map<string, unknown>([['epoch', 3], ['cls_token', { dtype: 'float32', shape: [1], data: new Float32Array(1) }]]);
  assert.match(errorOf(() => extractStateDict(withJunk, 'junk.pth')), /^junk\.pth: entry "epoch" of the top-level dict is a number, not a .*tensor/);
  assert.match(errorOf(() => extractStateDict(new Map(), 'empty.pth')), /^empty\.pth: no tensors found/);
  const { backbone } = extractStateDict(new Map([['state_dict', new Map([['module.norm.weight', { dtype: 'float32', shape: [1], data: new Float32Array([2]) }]])]]), 'w.pth');
  assert.equal([...backbone.keys()], ['norm.weight'], '{state_dict: ...} wrapper and module. prefix');
});

test.run();
