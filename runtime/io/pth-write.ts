// Writing a state dict (`OrderedDict[str, Tensor]`) as torch.save does (zip format, PyTorch >= 1.6), so that
// `torch.load(path, weights_only=True)` returns it and `model.load_state_dict(...)` takes it.
//
// Archive `<name>/`: `data.pkl` (pickle-write.ts), `byteorder` ("little"), one `data/<i>` per tensor (its raw
// little-endian bytes, 64-byte aligned), `version` ("3\n"), `.data/serialization_id`. Left out on purpose:
// `.format_version` and `.storage_alignment` (torch >= 2.5). With `.format_version` >= 1 a loader may compute
// storage offsets from torch's own header layout instead of reading them, and our headers differ from it.

import * as nodePath from 'node:path';
import * as zlib from 'node:zlib';
import { pickleStateDict, type PickledTensor, type TorchStorageType } from './pickle-write.ts';
import { ARRAY_OF_DTYPE, BYTES_PER_ELEMENT, assertLittleEndianHost, numel, type NamedTensor, type TensorDType } from './tensor.ts';
import { concatChunks, zipChunks, type ZipWriteOptions } from './zip-write.ts';
import { writeFileAtomic } from './atomic.ts';

const STORAGE_OF: Record<TensorDType, TorchStorageType> = {
  float32: 'FloatStorage',
  float64: 'DoubleStorage',
  int64: 'LongStorage',
  int32: 'IntStorage',
  uint8: 'ByteStorage',
  bool: 'BoolStorage',
};

export type PthWriteOptions = {
  /** The archive's top folder; torch names it after the file (without extension). Default "archive". */
  readonly archiveName?: string;
  /** Passed to the ZIP writer (tests force the ZIP64 layout with it). */
  readonly zip?: ZipWriteOptions;
};

/** Row-major strides as torch computes them (a dim of size 0 counts as 1). */
export function contiguousStrides(shape: readonly number[]): number[] {
  const stride = new Array<number>(shape.length);
  let step = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    stride[d] = step;
    step *= Math.max(shape[d]!, 1);
  }
  return stride;
}

/** The raw bytes of a tensor after checking dtype, shape and data agree; the error names the tensor. */
function tensorBytes(name: string, t: NamedTensor): Uint8Array {
  if (!(t.dtype in STORAGE_OF)) throw new Error(`.pth: tensor "${name}" has dtype "${String(t.dtype)}"; supported: ${Object.keys(STORAGE_OF).join(', ')}`);
  if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new Error(`.pth: tensor "${name}" has shape ${JSON.stringify(t.shape)}; dims must be non-negative integers`);
  }
  const Expected = ARRAY_OF_DTYPE[t.dtype] as unknown as typeof Uint8Array;
  if (!(t.data instanceof Expected)) {
    const got = ArrayBuffer.isView(t.data) ? (t.data as ArrayBufferView).constructor.name : typeof t.data;
    throw new Error(`.pth: tensor "${name}" has dtype ${t.dtype}, so its data must be a ${ARRAY_OF_DTYPE[t.dtype].name} (got ${got})`);
  }
  const count = numel(t.shape);
  if (t.data.length !== count) {
    throw new Error(`.pth: tensor "${name}" has shape [${t.shape.join(', ')}] (${count} elements) but its data holds ${t.data.length}`);
  }
  assertLittleEndianHost();
  return new Uint8Array(t.data.buffer, t.data.byteOffset, count * BYTES_PER_ELEMENT[t.dtype]);
}

/** An archive name torch would accept and the file system would not mind. */
export function archiveNameFor(path: string): string {
  const base = nodePath.basename(path).replace(/\.[^.]*$/, '');
  const clean = base.replace(/[^A-Za-z0-9_.-]/g, '_');
  return clean.length > 0 && clean !== '.' && clean !== '..' ? clean : 'archive';
}

/** The `.pth` file holding `tensors` (an OrderedDict in map order), as chunks in file order; tensor data is not copied. */
export function pthChunks(tensors: ReadonlyMap<string, NamedTensor>, options: PthWriteOptions = {}): Uint8Array[] {
  const archive = options.archiveName ?? 'archive';
  if (!/^[A-Za-z0-9_.-]+$/.test(archive)) throw new Error(`.pth: archive name "${archive}" must be letters, digits, "_", "-" or "."`);
  const pickled: PickledTensor[] = [];
  const storages: Uint8Array[] = [];
  for (const [name, t] of tensors) {
    const bytes = tensorBytes(name, t);
    pickled.push({
      name,
      storageType: STORAGE_OF[t.dtype],
      storageKey: String(storages.length),
      numel: numel(t.shape),
      shape: t.shape,
      stride: contiguousStrides(t.shape),
    });
    storages.push(bytes);
  }
  const text = (s: string) => new TextEncoder().encode(s);
  const records: { name: string; data: Uint8Array }[] = [
    { name: 'data.pkl', data: pickleStateDict(pickled) },
    { name: 'byteorder', data: text('little') },
    ...storages.map((data, i) => ({ name: `data/${i}`, data })),
    { name: 'version', data: text('3\n') },
  ];
  // torch >= 2.2 writes an id of the content (it only tells files apart); ours: CRC-32 of all records, then their count.
  let crc = 0;
  for (const r of records) crc = zlib.crc32(r.data, crc);
  records.push({ name: '.data/serialization_id', data: text(String(crc >>> 0).padStart(20, '0') + String(records.length).padStart(20, '0')) });
  return zipChunks(
    records.map((r) => ({ name: `${archive}/${r.name}`, data: r.data })),
    options.zip,
  );
}

/** The whole `.pth` file in one buffer. */
export function encodePth(tensors: ReadonlyMap<string, NamedTensor>, options: PthWriteOptions = {}): Uint8Array {
  return concatChunks(pthChunks(tensors, options));
}

/**
 * Writes `tensors` to `path` as torch.save would (archive named after the file), atomically (runtime/io/atomic.ts):
 * a failure leaves any previous file as it was.
 */
export function writePth(path: string, tensors: ReadonlyMap<string, NamedTensor>, options: PthWriteOptions = {}): void {
  writeFileAtomic(path, () => pthChunks(tensors, { archiveName: archiveNameFor(path), ...options }), 'weights');
}
