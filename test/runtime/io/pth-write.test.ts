// The .pth writer: bytes compared with what torch.save wrote (test/fixtures/io/export_reference.pth, made by
// `tools/check_pth_export.py reference` with Debian's torch 1.13), round trips through the project's own reader,
// and the ZIP layout checked byte by byte.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { crc32 } from 'node:zlib';
import { decodePth, readPth, type NamedTensor } from '../../../runtime/io/pth.ts';
import { contiguousStrides, encodePth, writePth } from '../../../runtime/io/pth-write.ts';
import { readZipDirectory, readZipEntry } from '../../../runtime/io/zip.ts';
import { encodeZip } from '../../../runtime/io/zip-write.ts';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REFERENCE = path.join(HERE, '../../fixtures/io/export_reference.pth');

/** tools/check_pth_export.py reference_state_dict(), rebuilt value for value. */
function referenceStateDict(): Map<string, NamedTensor> {
  const values = (n: number, k: number) => Array.from({ length: n }, (_, i) => (((i * 37 + k * 11) % 101) - 50) / 8);
  const f32 = (shape: number[], k: number): NamedTensor => ({ dtype: 'float32', shape, data: Float32Array.from(values(shape.reduce((a, b) => a * b, 1), k)) });
  const sd = new Map<string, NamedTensor>();
  sd.set('cls_token', f32([1, 1, 4], 0));
  sd.set('patch_embed.proj.weight', f32([4, 3, 2, 2], 1));
  for (let b = 0; b < 40; b++) sd.set(`blocks.${b}.attn.qkv.weight`, f32([12, 4], b + 2));
  sd.set('scalar', { dtype: 'float32', shape: [], data: Float32Array.of(values(1, 3)[0]!) });
  sd.set('empty', { dtype: 'float32', shape: [0, 3], data: new Float32Array(0) });
  sd.set('double', { dtype: 'float64', shape: [5], data: Float64Array.from(values(5, 4)) });
  sd.set('long', { dtype: 'int64', shape: [4], data: BigInt64Array.of(-3n, 0n, 7n, 2n ** 40n) });
  sd.set('int', { dtype: 'int32', shape: [3], data: Int32Array.of(-5, 9, 300) });
  sd.set('byte', { dtype: 'uint8', shape: [3], data: Uint8Array.of(0, 1, 255) });
  sd.set('bool', { dtype: 'bool', shape: [3], data: Uint8Array.of(1, 0, 1) });
  sd.set('wide', f32([300], 5));
  return sd;
}

function entriesByName(bytes: Uint8Array): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  for (const [name, entry] of readZipDirectory(bytes)) out.set(name, readZipEntry(bytes, entry));
  return out;
}

const bytesOf = (t: NamedTensor) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);

function assertSameTensors(actual: unknown, expected: Map<string, NamedTensor>): void {
  assert.ok(actual instanceof Map, 'an OrderedDict reads back as a Map');
  const back = actual as Map<string, NamedTensor>;
  assert.equal([...back.keys()], [...expected.keys()], 'keys in order');
  for (const [name, t] of expected) {
    const b = back.get(name)!;
    assert.is(b.dtype, t.dtype, `${name} dtype`);
    assert.equal(b.shape, t.shape, `${name} shape`);
    assert.ok(Buffer.from(bytesOf(b)).equals(Buffer.from(bytesOf(t))), `${name} bits`);
  }
}

test('data.pkl and every storage are byte-identical to what torch.save wrote for the same state dict', () => {
  const ours = entriesByName(encodePth(referenceStateDict(), { archiveName: 'export_reference' }));
  const torch = entriesByName(new Uint8Array(fs.readFileSync(REFERENCE)));
  const pkl = 'export_reference/data.pkl';
  assert.ok(Buffer.from(ours.get(pkl)!).equals(Buffer.from(torch.get(pkl)!)), 'data.pkl bytes equal torch 1.13\'s');
  let storages = 0;
  for (const [name, content] of torch) {
    if (!name.startsWith('export_reference/data/')) continue;
    assert.ok(Buffer.from(ours.get(name)!).equals(Buffer.from(content)), `${name} bytes`);
    storages++;
  }
  assert.is(storages, referenceStateDict().size);
  assert.is(new TextDecoder().decode(ours.get('export_reference/version')), new TextDecoder().decode(torch.get('export_reference/version')));
});

test('round trip through the project\'s .pth reader: every dtype, a scalar, an empty tensor, bit-equal and in order', () => {
  const sd = referenceStateDict();
  assertSameTensors(decodePth(encodePth(sd), 'mem.pth'), sd);
});

test('more than 1000 tensors (SETITEMS batches) and a memo past 255 read back', () => {
  const sd = new Map<string, NamedTensor>();
  for (let i = 0; i < 1203; i++) sd.set(`t${i}`, { dtype: 'float32', shape: [2], data: Float32Array.of(i, -i / 3) });
  assertSameTensors(decodePth(encodePth(sd), 'many.pth'), sd);
  const one = new Map([['only', sd.get('t7')!]]);
  assertSameTensors(decodePth(encodePth(one), 'one.pth'), one); // a batch of one is SETITEM
  assert.equal(decodePth(encodePth(new Map()), 'none.pth'), new Map());
});

test('ZIP layout: local headers, 64-byte aligned data, CRC-32, central directory and end record, byte by byte', () => {
  const sd = referenceStateDict();
  const bytes = encodePth(sd, { archiveName: 'w' });
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const names = ['w/data.pkl', 'w/byteorder', ...[...sd.keys()].map((_, i) => `w/data/${i}`), 'w/version', 'w/.data/serialization_id'];
  // Walk the local headers from the start of the file.
  let at = 0;
  const offsets: number[] = [];
  for (const name of names) {
    offsets.push(at);
    assert.is(view.getUint32(at, true), 0x04034b50, `${name}: local header signature`);
    assert.is(view.getUint16(at + 6, true) & 0x0008, 0, `${name}: no data descriptor`);
    assert.is(view.getUint16(at + 8, true), 0, `${name}: stored`);
    const size = view.getUint32(at + 22, true);
    assert.is(view.getUint32(at + 18, true), size, `${name}: compressed size = size`);
    const nameLength = view.getUint16(at + 26, true);
    const extraLength = view.getUint16(at + 28, true);
    assert.is(new TextDecoder().decode(bytes.subarray(at + 30, at + 30 + nameLength)), name);
    assert.is(view.getUint16(at + 30 + nameLength, true), 0x4246, `${name}: padding field "FB"`);
    const start = at + 30 + nameLength + extraLength;
    assert.is(start % 64, 0, `${name}: data starts 64-byte aligned`);
    const data = bytes.subarray(start, start + size);
    assert.is(view.getUint32(at + 14, true), crc32(data) >>> 0, `${name}: CRC-32`);
    at = start + size;
  }
  // Central directory right after the last entry, then the end record.
  const directoryOffset = at;
  for (const [i, name] of names.entries()) {
    assert.is(view.getUint32(at, true), 0x02014b50, `${name}: central signature`);
    assert.is(view.getUint32(at + 42, true), offsets[i], `${name}: local header offset`);
    const nameLength = view.getUint16(at + 28, true);
    assert.is(new TextDecoder().decode(bytes.subarray(at + 46, at + 46 + nameLength)), name);
    at += 46 + nameLength + view.getUint16(at + 30, true) + view.getUint16(at + 32, true);
  }
  assert.is(view.getUint32(at, true), 0x06054b50, 'end record signature');
  assert.is(view.getUint16(at + 8, true), names.length);
  assert.is(view.getUint16(at + 10, true), names.length);
  assert.is(view.getUint32(at + 12, true), at - directoryOffset, 'directory size');
  assert.is(view.getUint32(at + 16, true), directoryOffset, 'directory offset');
  assert.is(at + 22, bytes.length, 'nothing after the end record');
  const entries = entriesByName(bytes);
  assert.is(new TextDecoder().decode(entries.get('w/byteorder')), 'little');
  assert.is(new TextDecoder().decode(entries.get('w/version')), '3\n');
  assert.match(new TextDecoder().decode(entries.get('w/.data/serialization_id')), /^\d{40}$/);
});

test('ZIP64 layout (forced) reads back through the project\'s reader', () => {
  const sd = referenceStateDict();
  const bytes = encodePth(sd, { zip: { forceZip64: true } });
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  assert.is(view.getUint32(bytes.length - 22, true), 0x06054b50);
  assert.is(view.getUint32(bytes.length - 22 - 20, true), 0x07064b50, 'ZIP64 locator before the end record');
  assert.is(view.getUint32(bytes.length - 22 - 20 - 56, true), 0x06064b50, 'ZIP64 end record');
  assertSameTensors(decodePth(bytes, 'zip64.pth'), sd);
  for (const entry of readZipDirectory(bytes).values()) {
    const at = entry.localHeaderOffset;
    assert.is(view.getUint32(at + 22, true), 0xffffffff, `${entry.name}: local size in the ZIP64 field`);
    const extra = at + 30 + view.getUint16(at + 26, true);
    assert.is(view.getUint16(extra, true), 0x0001, `${entry.name}: ZIP64 extra first`);
    assert.is(Number(view.getBigUint64(extra + 4, true)), entry.uncompressedSize);
  }
});

test('alignment option and duplicate names', () => {
  const bytes = encodeZip([{ name: 'a/x', data: Uint8Array.of(1, 2, 3) }, { name: 'a/y', data: Uint8Array.of(4) }], { alignment: 4096 });
  for (const entry of readZipDirectory(bytes).values()) {
    const view = new DataView(bytes.buffer);
    const start = entry.localHeaderOffset + 30 + view.getUint16(entry.localHeaderOffset + 26, true) + view.getUint16(entry.localHeaderOffset + 28, true);
    assert.is(start % 4096, 0);
  }
  assert.throws(() => encodeZip([{ name: 'a', data: new Uint8Array(1) }, { name: 'a', data: new Uint8Array(1) }]), /written twice/);
});

test('strides as torch computes them', () => {
  assert.equal(contiguousStrides([2, 3, 4]), [12, 4, 1]);
  assert.equal(contiguousStrides([2, 0, 3]), [3, 3, 1]);
  assert.equal(contiguousStrides([]), []);
});

test('refuses data that does not match dtype or shape, naming the tensor', () => {
  assert.throws(() => encodePth(new Map([['w', { dtype: 'float32', shape: [3], data: Float32Array.of(1, 2) } as NamedTensor]])), /"w".*\[3\].*holds 2/);
  assert.throws(() => encodePth(new Map([['w', { dtype: 'float32', shape: [2], data: Float64Array.of(1, 2) } as NamedTensor]])), /"w".*Float32Array.*Float64Array/);
  assert.throws(() => encodePth(new Map(), { archiveName: '../x' }), /archive name/);
});

test('writePth: named after the file, atomic, readable by readPth; a failed write leaves the old file', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pth-write-'));
  try {
    const file = path.join(dir, 'teacher weights.pth');
    const sd = referenceStateDict();
    writePth(file, sd);
    assertSameTensors(readPth(file), sd);
    assert.ok([...readZipDirectory(new Uint8Array(fs.readFileSync(file))).keys()].every((n) => n.startsWith('teacher_weights/')));
    const before = fs.readFileSync(file);
    assert.throws(() => writePth(file, new Map([['bad', { dtype: 'float32', shape: [4], data: new Float32Array(1) } as NamedTensor]])), /weights not written.*previous file/);
    assert.ok(fs.readFileSync(file).equals(before));
    assert.equal(fs.readdirSync(dir), ['teacher weights.pth'], 'no temp file left');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('Python\'s zipfile accepts the archive (CRC-32 of every entry), when a python3 is on PATH', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pth-zipfile-'));
  try {
    const plain = path.join(dir, 'plain.pth');
    const zip64 = path.join(dir, 'zip64.pth');
    writePth(plain, referenceStateDict());
    writePth(zip64, referenceStateDict(), { zip: { forceZip64: true } });
    const script = 'import sys, zipfile\nfor p in sys.argv[1:]:\n    z = zipfile.ZipFile(p)\n    assert z.testzip() is None, p\n    print(p, len(z.namelist()))';
    const run = spawnSync('python3', ['-c', script, plain, zip64], { encoding: 'utf8' });
    if (run.error) {
      console.log('  (skipped: no python3 on PATH for the zipfile check)');
      return;
    }
    assert.is(run.status, 0, run.stderr);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
