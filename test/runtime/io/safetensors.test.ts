import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  writeSafetensorsAtomic,
  type NamedTensor,
} from '../../../runtime/io/safetensors.ts';

const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '../../fixtures/io');

function bytesOf(t: NamedTensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** Same dtype, shape and bit-identical data (NaN payloads and -0 included). */
function assertSameTensor(actual: NamedTensor | undefined, expected: NamedTensor, name: string): void {
  assert.ok(actual !== undefined, `${name} missing`);
  assert.is(actual!.dtype, expected.dtype, `${name} dtype`);
  assert.equal(actual!.shape, expected.shape, `${name} shape`);
  assert.equal([...bytesOf(actual!)], [...bytesOf(expected)], `${name} data`);
}

function allDtypes(): Map<string, NamedTensor> {
  return new Map<string, NamedTensor>([
    // uint8 first and odd-sized: the writer must still lay wide tensors out aligned
    ['u8.bytes', { dtype: 'uint8', shape: [3], data: new Uint8Array([0, 7, 255]) }],
    ['f32.special', { dtype: 'float32', shape: [2, 3], data: new Float32Array([1.5, -0, Infinity, -Infinity, NaN, 1e-45]) }],
    ['f64.values', { dtype: 'float64', shape: [2], data: new Float64Array([Math.PI, -1e-310]) }],
    ['i64.big', { dtype: 'int64', shape: [3], data: new BigInt64Array([0n, -(2n ** 63n), 2n ** 62n + 12345n]) }],
    ['i32.range', { dtype: 'int32', shape: [1, 2], data: new Int32Array([-(2 ** 31), 2 ** 31 - 1]) }],
    ['bool.mask', { dtype: 'bool', shape: [5], data: new Uint8Array([1, 0, 0, 1, 1]) }],
    ['f32.scalar', { dtype: 'float32', shape: [], data: new Float32Array([42]) }],
    ['f32.empty', { dtype: 'float32', shape: [0, 4], data: new Float32Array(0) }],
    ['blocks.0.attn.qkv.weight', { dtype: 'float32', shape: [6, 2], data: Float32Array.from({ length: 12 }, (_, i) => i / 7) }],
  ]);
}

function tempFolder(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'safetensors-test-'));
}

/** A file from a raw header object and data bytes, padded as the format requires. */
function rawFile(header: unknown, data: Uint8Array): Uint8Array {
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(new TextEncoder().encode(json), 8);
  out.set(data, 8 + json.length);
  return out;
}

function headerOf(bytes: Uint8Array): { length: number; json: string } {
  const length = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return { length, json: new TextDecoder().decode(bytes.subarray(8, 8 + length)) };
}

test('round trip of every dtype, with metadata, bit-exact', () => {
  const tensors = allDtypes();
  const metadata = { step: '1234', config: JSON.stringify({ preset: 'fmnist-tiny6', lr: 5e-4 }), note: 'ünïcode ☃' };
  const bytes = encodeSafetensors(tensors, metadata);
  const decoded = decodeSafetensors(bytes, 'roundtrip.safetensors');
  assert.equal(decoded.metadata, metadata);
  assert.is(decoded.tensors.size, tensors.size);
  for (const [name, tensor] of tensors) assertSameTensor(decoded.tensors.get(name), tensor, name);
});

test('header: 8-byte aligned with space padding, offsets contiguous in header order, widest dtype first', () => {
  const bytes = encodeSafetensors(allDtypes(), { a: 'b' });
  const { length, json } = headerOf(bytes);
  assert.is(length % 8, 0);
  assert.ok(json.length === length);
  assert.ok(/^\{.*\} *$/.test(json), 'JSON then spaces');
  const header = JSON.parse(json) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  assert.equal(header.__metadata__, { a: 'b' });
  const entries = Object.entries(header).filter(([k]) => k !== '__metadata__');
  let offset = 0;
  for (const [name, entry] of entries) {
    assert.is(entry.data_offsets[0], offset, `${name} starts where the previous one ended`);
    offset = entry.data_offsets[1];
  }
  assert.is(offset, bytes.length - 8 - length, 'tensors fill the data section exactly');
  assert.equal(
    entries.map(([, e]) => e.dtype),
    ['F64', 'I64', 'F32', 'I32', 'F32', 'F32', 'F32', 'U8', 'BOOL'],
  );
});

test('decoded tensors are views over the file buffer (no copy) when aligned', () => {
  const bytes = encodeSafetensors(allDtypes());
  const decoded = decodeSafetensors(bytes, 'views.safetensors');
  for (const [name, t] of decoded.tensors) assert.ok(t.data.buffer === bytes.buffer, `${name} is a view`);
});

test('reads a file written by an independent (Python) writer, incl. F16 and BF16 and a misaligned F32', () => {
  const file = path.join(FIXTURES, 'half_dtypes.safetensors');
  const { tensors, metadata } = readSafetensors(file);
  assert.equal(metadata, { note: 'F16/BF16 read test' });
  assertSameTensor(tensors.get('f16'), tensors.get('f16_as_f32')!, 'f16');
  assertSameTensor(tensors.get('bf16'), tensors.get('bf16_as_f32')!, 'bf16');
  assert.equal([...(tensors.get('f16')!.data as Float32Array)], [1, -2.5, 65504, 2 ** -24, Infinity, -0]);
  assert.equal(tensors.get('flags')!.dtype, 'bool');
  assert.equal([...tensors.get('flags')!.data], [1, 0, 1]);
  const misaligned = tensors.get('misaligned_f32')!;
  assert.equal([...(misaligned.data as Float32Array)], [1.5, -2.25, Math.fround(3e-3)]);
  assert.ok(misaligned.data.byteOffset % 4 === 0, 'copied to an aligned buffer');
});

test('writeSafetensorsAtomic writes a file readSafetensors reads back, and leaves no temp file', () => {
  const folder = tempFolder();
  const file = path.join(folder, 'checkpoint.safetensors');
  const tensors = allDtypes();
  writeSafetensorsAtomic(file, tensors, { step: '7' });
  assert.equal(fs.readdirSync(folder), ['checkpoint.safetensors']);
  const { tensors: back, metadata } = readSafetensors(file);
  assert.equal(metadata, { step: '7' });
  for (const [name, tensor] of tensors) assertSameTensor(back.get(name), tensor, name);
  // Overwriting replaces the content completely.
  writeSafetensorsAtomic(file, new Map([['x', { dtype: 'int32', shape: [1], data: new Int32Array([9]) } as NamedTensor]]));
  assert.equal([...readSafetensors(file).tensors.keys()], ['x']);
  fs.rmSync(folder, { recursive: true });
});

test('a write that fails midway leaves the previous checkpoint intact and no temp file', () => {
  const folder = tempFolder();
  const file = path.join(folder, 'checkpoint.safetensors');
  writeSafetensorsAtomic(file, allDtypes(), { step: '1' });
  const before = fs.readFileSync(file);

  // The third tensor's data source fails after the header and two tensors are already on disk.
  let tempBytesWhenFailing = -1;
  const failing: NamedTensor = {
    dtype: 'float32',
    shape: [4],
    get data(): Float32Array {
      const temps = fs.readdirSync(folder).filter((n) => n.endsWith('.tmp'));
      tempBytesWhenFailing = temps.length === 1 ? fs.statSync(path.join(folder, temps[0]!)).size : -1;
      throw new Error('device read failed');
    },
  };
  const next = new Map<string, NamedTensor>([
    ['a', { dtype: 'float32', shape: [1000], data: new Float32Array(1000).fill(2) }],
    ['b', { dtype: 'float32', shape: [10], data: new Float32Array(10).fill(3) }],
    ['c', failing],
  ]);
  assert.throws(
    () => writeSafetensorsAtomic(file, next, { step: '2' }),
    (e: Error) => e.message.includes(file) && e.message.includes('device read failed') && e.message.includes('left as it was'),
  );
  assert.ok(tempBytesWhenFailing > 4000, `the temp file held ${tempBytesWhenFailing} bytes when the source failed`);
  assert.equal(fs.readdirSync(folder), ['checkpoint.safetensors'], 'temp file removed');
  assert.ok(fs.readFileSync(file).equals(before), 'previous checkpoint unchanged');
  assert.equal(readSafetensors(file).metadata, { step: '1' });

  // A tensor whose data does not match its shape fails the same way, naming the tensor.
  const mismatched = new Map<string, NamedTensor>([
    ['ok', { dtype: 'float32', shape: [2], data: new Float32Array(2) }],
    ['blocks.0.norm1.weight', { dtype: 'float32', shape: [8], data: new Float32Array(6) }],
  ]);
  assert.throws(
    () => writeSafetensorsAtomic(file, mismatched),
    (e: Error) => e.message.includes('"blocks.0.norm1.weight"') && e.message.includes('[8]') && e.message.includes('holds 6'),
  );
  assert.ok(fs.readFileSync(file).equals(before));
  assert.equal(fs.readdirSync(folder), ['checkpoint.safetensors']);
  fs.rmSync(folder, { recursive: true });
});

test('encode rejects data of the wrong array type and non-string metadata', () => {
  const wrongType = new Map<string, NamedTensor>([['w', { dtype: 'int64', shape: [2], data: new Float64Array(2) }]]);
  assert.throws(() => encodeSafetensors(wrongType), /"w" has dtype int64, so its data must be a BigInt64Array \(got Float64Array\)/);
  assert.throws(() => encodeSafetensors(new Map(), { step: 3 as unknown as string }), /metadata "step" must be a string/);
});

const NAME = 'checkpoint.safetensors';
function decodeError(bytes: Uint8Array): string {
  try {
    decodeSafetensors(bytes, NAME);
  } catch (error) {
    return (error as Error).message;
  }
  assert.unreachable('decoding should have failed');
  return '';
}

test('corrupt files: each problem is an Error naming the file and the problem', () => {
  const good = encodeSafetensors(allDtypes(), { step: '1' });
  const cases: Array<[string, Uint8Array, RegExp]> = [
    ['empty', new Uint8Array(0), /0 bytes, too short/],
    ['shorter than the length field', good.subarray(0, 5), /5 bytes, too short/],
    ['truncated inside the header', good.subarray(0, 40), /header length field says \d+ bytes but only 32 follow/],
    [
      'header length beyond the file',
      (() => { const b = good.slice(); new DataView(b.buffer).setBigUint64(0, 10n ** 12n, true); return b; })(),
      /header length field says 1000000000000 bytes but only/,
    ],
    ['truncated data', good.subarray(0, good.length - 10), /has data_offsets \[\d+, \d+\] but the data section holds only \d+ bytes/],
    ['bad JSON', rawFile('x', new Uint8Array(0)).map((b, i) => (i === 8 ? 0x7b : b)), /not valid UTF-8 JSON/],
    ['header not an object', rawFile([1, 2], new Uint8Array(0)), /header must be a JSON object/],
    [
      'size mismatch',
      rawFile({ 'blocks.0.attn.qkv.weight': { dtype: 'F32', shape: [576, 12], data_offsets: [0, 100] } }, new Uint8Array(100)),
      /tensor "blocks.0.attn.qkv.weight" needs 27648 bytes but its data_offsets span 100; the file is corrupt or truncated — re-export it or resume from an earlier checkpoint/,
    ],
    [
      'overlapping offsets',
      rawFile(
        { a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, b: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } },
        new Uint8Array(24),
      ),
      /tensors "a" \[0, 16\] and "b" \[8, 24\] have overlapping data_offsets/,
    ],
    ['offsets reversed', rawFile({ a: { dtype: 'U8', shape: [0], data_offsets: [8, 4] } }, new Uint8Array(8)), /data_offsets \[8,4\]/],
    ['unknown dtype', rawFile({ a: { dtype: 'C64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)), /dtype "C64"/],
    ['bad shape', rawFile({ a: { dtype: 'U8', shape: [-1], data_offsets: [0, 1] } }, new Uint8Array(1)), /shape \[-1\]/],
    ['non-string metadata', rawFile({ __metadata__: { step: 3 } }, new Uint8Array(0)), /"__metadata__" entry "step" is not a string/],
  ];
  for (const [what, bytes, pattern] of cases) {
    const message = decodeError(bytes);
    assert.ok(message.startsWith(`${NAME}: `), `${what}: names the file: ${message}`);
    assert.match(message, pattern, what);
  }
});

test('readSafetensors on a missing file names the path', () => {
  const missing = path.join(os.tmpdir(), 'no-such-dir-xyz', 'model.safetensors');
  assert.throws(() => readSafetensors(missing), (e: Error) => e.message.startsWith(missing) && e.message.includes('no such file'));
});

test('a 200 MB checkpoint is written and read back without copying tensor data', () => {
  const folder = tempFolder();
  const file = path.join(folder, 'big.safetensors');
  const elements = 50 * 1024 * 1024; // 200 MB of float32
  const big = new Float32Array(elements);
  for (let i = 0; i < elements; i += 4099) big[i] = i;
  const tensors = new Map<string, NamedTensor>([
    ['big', { dtype: 'float32', shape: [elements / 1024, 1024], data: big }],
    ['step', { dtype: 'int64', shape: [], data: new BigInt64Array([5n]) }],
  ]);
  let start = performance.now();
  writeSafetensorsAtomic(file, tensors, { step: '5' });
  const writeMs = performance.now() - start;
  start = performance.now();
  const { tensors: back } = readSafetensors(file);
  const readMs = performance.now() - start;
  const bigBack = back.get('big')!.data as Float32Array;
  assert.ok(bigBack.buffer.byteLength === fs.statSync(file).size, 'a view over the one file buffer');
  assert.is(bigBack[4099 * 1000], 4099 * 1000);
  assert.is(bigBack[elements - 1], big[elements - 1]);
  assert.is((back.get('step')!.data as BigInt64Array)[0], 5n);
  console.log(`    200 MB: write ${writeMs.toFixed(0)} ms (incl. fsync), read ${readMs.toFixed(0)} ms`);
  fs.rmSync(folder, { recursive: true });
});

test.run();
