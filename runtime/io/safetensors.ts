// The safetensors format: an 8-byte little-endian header length N, N bytes of JSON
// ({ name: { dtype, shape, data_offsets: [begin, end] }, __metadata__?: { string: string } },
// padded with spaces so the data starts 8-byte aligned), then the raw little-endian tensor data;
// data_offsets are relative to the start of the data.
//
// Reading returns typed-array views over the file buffer where alignment allows, so a checkpoint of
// hundreds of MB is not copied a second time. Writing is atomic: temp file, fsync, rename, fsync folder.

import * as fs from 'node:fs';
import { writeFileAtomic } from './atomic.ts';
import {
  assertLittleEndianHost,
  bfloat16ToFloat32,
  ARRAY_OF_DTYPE,
  BYTES_PER_ELEMENT,
  float16ToFloat32,
  numel,
  typedArrayAt,
  type NamedTensor,
  type TensorDType,
  readFileBytes,
} from './tensor.ts';

export type { NamedTensor, TensorDType, TensorData } from './tensor.ts';

export type SafetensorsContents = {
  /** In file data order. */
  tensors: Map<string, NamedTensor>;
  metadata: Record<string, string>;
};

const FILE_DTYPE_OF: Record<TensorDType, string> = {
  float32: 'F32',
  float64: 'F64',
  int64: 'I64',
  int32: 'I32',
  uint8: 'U8',
  bool: 'BOOL',
};

/** File dtypes we read: the tensor dtype they become and their size in the file. */
const READ_DTYPES: Record<string, { dtype: TensorDType; fileBytes: number }> = {
  F32: { dtype: 'float32', fileBytes: 4 },
  F64: { dtype: 'float64', fileBytes: 8 },
  I64: { dtype: 'int64', fileBytes: 8 },
  I32: { dtype: 'int32', fileBytes: 4 },
  U8: { dtype: 'uint8', fileBytes: 1 },
  BOOL: { dtype: 'bool', fileBytes: 1 },
  F16: { dtype: 'float32', fileBytes: 2 }, // widened to float32 on read
  BF16: { dtype: 'float32', fileBytes: 2 }, // widened to float32 on read
};

const ARRAY_CLASS_OF: Record<TensorDType, string> = {
  float32: 'Float32Array',
  float64: 'Float64Array',
  int64: 'BigInt64Array',
  int32: 'Int32Array',
  uint8: 'Uint8Array',
  bool: 'Uint8Array',
};

/** The reference implementation refuses headers above 100 MB; so do we (a corrupt length is usually huge). */
const MAX_HEADER_BYTES = 100_000_000;

const CORRUPT_REMEDY = 'the file is corrupt or truncated — re-export it or resume from an earlier checkpoint';

// ---------------------------------------------------------------------------------------------
// Writing

type PlannedTensor = { name: string; tensor: NamedTensor; byteLength: number };
type Plan = { header: Uint8Array; tensors: PlannedTensor[]; dataBytes: number };

/**
 * Header and layout from dtypes and shapes only (the data is checked when it is written).
 * Tensors are laid out widest element first (stable otherwise), as the reference implementation
 * does, so every tensor starts aligned to its element size and reads back as a zero-copy view.
 */
function planLayout(tensors: Map<string, NamedTensor>, metadata: Record<string, string> | undefined): Plan {
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') {
        throw new Error(`safetensors metadata "${key}" must be a string (got ${typeof value}); JSON.stringify structured values first`);
      }
    }
    if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  }
  const entries: PlannedTensor[] = [];
  for (const [name, tensor] of tensors) {
    if (name === '__metadata__') throw new Error('safetensors: "__metadata__" is reserved and cannot name a tensor');
    if (!(tensor.dtype in FILE_DTYPE_OF)) {
      throw new Error(`safetensors: tensor "${name}" has dtype "${String(tensor.dtype)}"; supported: ${Object.keys(FILE_DTYPE_OF).join(', ')}`);
    }
    if (!Array.isArray(tensor.shape) || !tensor.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new Error(`safetensors: tensor "${name}" has shape ${JSON.stringify(tensor.shape)}; dims must be non-negative integers`);
    }
    entries.push({ name, tensor, byteLength: numel(tensor.shape) * BYTES_PER_ELEMENT[tensor.dtype] });
  }
  const order = entries
    .map((entry, index) => ({ entry, index }))
    .sort((a, b) => BYTES_PER_ELEMENT[b.entry.tensor.dtype] - BYTES_PER_ELEMENT[a.entry.tensor.dtype] || a.index - b.index)
    .map(({ entry }) => entry);
  let offset = 0;
  for (const { name, tensor, byteLength } of order) {
    header[name] = { dtype: FILE_DTYPE_OF[tensor.dtype], shape: tensor.shape, data_offsets: [offset, offset + byteLength] };
    offset += byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20); // spaces, as the reference pads
  padded.set(json);
  const headerBytes = new Uint8Array(8 + padded.length);
  new DataView(headerBytes.buffer).setBigUint64(0, BigInt(padded.length), true);
  headerBytes.set(padded, 8);
  return { header: headerBytes, tensors: order, dataBytes: offset };
}

/** The raw bytes of one tensor's data, after checking they match its dtype and shape. */
function tensorBytes(planned: PlannedTensor): Uint8Array {
  const { name, tensor, byteLength } = planned;
  const data = tensor.data;
  const expectedClass = ARRAY_CLASS_OF[tensor.dtype];
  if (!(data instanceof (ARRAY_OF_DTYPE[tensor.dtype] as unknown as typeof Uint8Array))) {
    const got = ArrayBuffer.isView(data) ? data.constructor.name : typeof data;
    throw new Error(`safetensors: tensor "${name}" has dtype ${tensor.dtype}, so its data must be a ${expectedClass} (got ${got})`);
  }
  if (data.byteLength !== byteLength) {
    throw new Error(
      `safetensors: tensor "${name}" has shape [${tensor.shape.join(', ')}] (${numel(tensor.shape)} elements) ` +
        `but its data holds ${data.byteLength / BYTES_PER_ELEMENT[tensor.dtype]}`,
    );
  }
  assertLittleEndianHost();
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/** The whole file in memory. Throws if a tensor's data does not match its dtype and shape. */
export function encodeSafetensors(tensors: Map<string, NamedTensor>, metadata?: Record<string, string>): Uint8Array {
  const plan = planLayout(tensors, metadata);
  const out = new Uint8Array(plan.header.length + plan.dataBytes);
  out.set(plan.header, 0);
  let offset = plan.header.length;
  for (const planned of plan.tensors) {
    out.set(tensorBytes(planned), offset);
    offset += planned.byteLength;
  }
  return out;
}

/**
 * Writes `path` atomically (runtime/io/atomic.ts): a crash or error at any point leaves either the previous file or
 * the new one. Tensors are streamed one by one (no second copy of a large state in memory).
 */
export function writeSafetensorsAtomic(path: string, tensors: Map<string, NamedTensor>, metadata?: Record<string, string>): void {
  writeFileAtomic(path, function* () {
    const plan = planLayout(tensors, metadata);
    yield plan.header;
    for (const planned of plan.tensors) yield tensorBytes(planned);
  }, 'checkpoint');
}

// ---------------------------------------------------------------------------------------------
// Reading

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Parses a safetensors file held in `bytes`; `fileName` names it in errors. Tensors are views over
 * `bytes` when aligned (keep `bytes` alive and unmodified), copies otherwise; F16 and BF16 become float32.
 */
export function decodeSafetensors(bytes: Uint8Array, fileName: string): SafetensorsContents {
  assertLittleEndianHost();
  const fail = (problem: string): never => {
    throw new Error(`${fileName}: ${problem}`);
  };
  if (bytes.length < 8) {
    fail(`the file is ${bytes.length} bytes, too short to hold the 8-byte header length; ${CORRUPT_REMEDY}`);
  }
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLength > BigInt(bytes.length - 8)) {
    fail(`the header length field says ${headerLength} bytes but only ${bytes.length - 8} follow it; ${CORRUPT_REMEDY}`);
  }
  if (headerLength > BigInt(MAX_HEADER_BYTES)) {
    fail(`the header length field says ${headerLength} bytes, above the ${MAX_HEADER_BYTES}-byte limit; ${CORRUPT_REMEDY}`);
  }
  const dataStart = 8 + Number(headerLength);
  const dataLength = bytes.length - dataStart;

  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, dataStart)));
  } catch (error) {
    fail(`the header is not valid UTF-8 JSON (${(error as Error).message}); ${CORRUPT_REMEDY}`);
  }
  if (!isPlainObject(header)) fail(`the header must be a JSON object; ${CORRUPT_REMEDY}`);
  const headerObject = header as Record<string, unknown>;

  const metadata: Record<string, string> = {};
  const rawMetadata = headerObject.__metadata__;
  if (rawMetadata !== undefined) {
    if (!isPlainObject(rawMetadata)) fail(`"__metadata__" must be an object of strings; ${CORRUPT_REMEDY}`);
    for (const [key, value] of Object.entries(rawMetadata as Record<string, unknown>)) {
      if (typeof value !== 'string') fail(`"__metadata__" entry "${key}" is not a string; ${CORRUPT_REMEDY}`);
      metadata[key] = value as string;
    }
  }

  type Entry = { name: string; fileDtype: string; shape: number[]; begin: number; end: number };
  const entries: Entry[] = [];
  for (const [name, raw] of Object.entries(headerObject)) {
    if (name === '__metadata__') continue;
    const where = `tensor "${name}"`;
    if (!isPlainObject(raw)) fail(`${where} has no {dtype, shape, data_offsets} entry; ${CORRUPT_REMEDY}`);
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in READ_DTYPES)) {
      fail(`${where} has dtype ${JSON.stringify(dtype)}; this reader supports ${Object.keys(READ_DTYPES).join(', ')}`);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`${where} has shape ${JSON.stringify(shape)}; dims must be non-negative integers; ${CORRUPT_REMEDY}`);
    }
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      fail(`${where} has data_offsets ${JSON.stringify(offsets)}; expected [begin, end] with 0 <= begin <= end; ${CORRUPT_REMEDY}`);
    }
    const [begin, end] = offsets as [number, number];
    const needed = numel(shape as number[]) * READ_DTYPES[dtype as string]!.fileBytes;
    if (needed !== end - begin) {
      fail(`${where} needs ${needed} bytes but its data_offsets span ${end - begin}; ${CORRUPT_REMEDY}`);
    }
    if (end > dataLength) {
      fail(`${where} has data_offsets [${begin}, ${end}] but the data section holds only ${dataLength} bytes; ${CORRUPT_REMEDY}`);
    }
    entries.push({ name, fileDtype: dtype as string, shape: shape as number[], begin, end });
  }

  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let previous: Entry | undefined;
  for (const entry of entries) {
    if (entry.begin === entry.end) continue; // empty tensors occupy no bytes
    if (previous !== undefined && entry.begin < previous.end) {
      fail(
        `tensors "${previous.name}" [${previous.begin}, ${previous.end}] and "${entry.name}" [${entry.begin}, ${entry.end}] ` +
          `have overlapping data_offsets; ${CORRUPT_REMEDY}`,
      );
    }
    previous = entry;
  }

  const tensors = new Map<string, NamedTensor>();
  for (const { name, fileDtype, shape, begin } of entries) {
    const { dtype } = READ_DTYPES[fileDtype]!;
    const count = numel(shape);
    const at = dataStart + begin;
    const data =
      fileDtype === 'F16'
        ? float16ToFloat32(bytes, at, count)
        : fileDtype === 'BF16'
          ? bfloat16ToFloat32(bytes, at, count)
          : typedArrayAt(bytes, at, count, dtype);
    tensors.set(name, { dtype, shape: [...shape], data });
  }
  return { tensors, metadata };
}

/**
 * The `__metadata__` block of a safetensors file, reading only its header (a training checkpoint's config and step
 * can be checked before its hundreds of megabytes of tensors are read).
 */
export function readSafetensorsMetadata(path: string): Record<string, string> {
  const fd = fs.openSync(path, 'r');
  try {
    const lengthBytes = new Uint8Array(8);
    if (fs.readSync(fd, lengthBytes, 0, 8, 0) !== 8) throw new Error(`${path}: too short to hold the 8-byte header length; ${CORRUPT_REMEDY}`);
    const headerLength = new DataView(lengthBytes.buffer).getBigUint64(0, true);
    if (headerLength > BigInt(MAX_HEADER_BYTES)) throw new Error(`${path}: the header length field says ${headerLength} bytes, above the ${MAX_HEADER_BYTES}-byte limit; ${CORRUPT_REMEDY}`);
    const header = new Uint8Array(Number(headerLength));
    if (fs.readSync(fd, header, 0, header.length, 8) !== header.length) throw new Error(`${path}: the header is cut short; ${CORRUPT_REMEDY}`);
    const parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(header)) as Record<string, unknown>;
    const md = parsed['__metadata__'];
    return isPlainObject(md) ? Object.fromEntries(Object.entries(md).filter(([, v]) => typeof v === 'string')) as Record<string, string> : {};
  } catch (e) {
    if (e instanceof SyntaxError) throw new Error(`${path}: the header is not valid JSON (${e.message}); ${CORRUPT_REMEDY}`);
    throw e;
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads a whole safetensors file; tensors are views over one file buffer where aligned. */
export function readSafetensors(path: string): SafetensorsContents {
  return decodeSafetensors(readFileBytes(path, 'safetensors file'), path);
}
