// PyTorch `.pth` files (torch.save, zip format, PyTorch >= 1.6) read in TypeScript, no Python.
//
// The archive holds `<archive>/data.pkl` (a pickle of the saved object whose tensors refer to
// storages by persistent id) and `<archive>/data/<key>` (each storage's raw bytes), plus
// `<archive>/byteorder` and `<archive>/version`. Tensors become NamedTensor (views over the file
// bytes when contiguous and aligned; copies otherwise), float16/bfloat16 widened to float32.

import { PickleError, PyGlobal, PyObject, unpickle } from './pickle.ts';
import {
  assertLittleEndianHost,
  bfloat16ToFloat32,
  float16ToFloat32,
  isNamedTensor,
  numel,
  typedArrayAt,
  ARRAY_OF_DTYPE,
  type NamedTensor,
  type TensorDType,
  readFileBytes,
} from './tensor.ts';
import { readZipDirectory, readZipEntry, ZIP_MAGIC, ZipError, type ZipEntry } from './zip.ts';

export { PyGlobal, PyObject } from './pickle.ts';
export type { NamedTensor } from './tensor.ts';

/** A tensor whose storage type this reader does not convert (int8, int16, complex, quantized...). */
export class UnsupportedTensor {
  constructor(
    readonly storageType: string,
    readonly shape: number[],
  ) {}
}

type StorageKind = { dtype: TensorDType; fileBytes: number; widen?: 'float16' | 'bfloat16' };

const STORAGE_KINDS: Record<string, StorageKind> = {
  'torch.FloatStorage': { dtype: 'float32', fileBytes: 4 },
  'torch.DoubleStorage': { dtype: 'float64', fileBytes: 8 },
  'torch.HalfStorage': { dtype: 'float32', fileBytes: 2, widen: 'float16' },
  'torch.BFloat16Storage': { dtype: 'float32', fileBytes: 2, widen: 'bfloat16' },
  'torch.LongStorage': { dtype: 'int64', fileBytes: 8 },
  'torch.IntStorage': { dtype: 'int32', fileBytes: 4 },
  'torch.ByteStorage': { dtype: 'uint8', fileBytes: 1 },
  'torch.BoolStorage': { dtype: 'bool', fileBytes: 1 },
};

type Storage = { type: string; key: string; kind: StorageKind | undefined; bytes: Uint8Array; elements: number };

/** A problem in the checkpoint's content; decodePth adds the file name and the remedy. */
class CheckpointFormatError extends Error {}

const CORRUPT_REMEDY = 'the file is truncated or corrupt — download it again or re-save it with torch.save';

function isIndexList(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((v) => Number.isSafeInteger(v) && v >= 0);
}

function isRowMajorContiguous(size: number[], stride: number[]): boolean {
  let expected = 1;
  for (let d = size.length - 1; d >= 0; d--) {
    if (size[d] !== 1 && stride[d] !== expected) return false;
    expected *= size[d]!;
  }
  return true;
}

/** Copies a strided view into row-major order; works on whole elements as 1-, 2- or 4-byte units. */
function gatherStrided(storage: Storage, fileBytes: number, offset: number, size: number[], stride: number[]): Uint8Array {
  const unitBytes = Math.min(fileBytes, 4);
  const unitsPerElement = fileBytes / unitBytes;
  const Units = unitBytes === 1 ? Uint8Array : unitBytes === 2 ? Uint16Array : Uint32Array;
  const source = new Units(storage.bytes.buffer as ArrayBuffer, storage.bytes.byteOffset, storage.bytes.byteLength / unitBytes);
  const count = numel(size);
  const out = new Units(count * unitsPerElement);
  const index = new Array<number>(size.length).fill(0);
  let element = offset;
  for (let i = 0; i < count; i++) {
    for (let u = 0; u < unitsPerElement; u++) out[i * unitsPerElement + u] = source[element * unitsPerElement + u]!;
    // Odometer over the output index, moving the source element along the strides.
    for (let d = size.length - 1; d >= 0; d--) {
      index[d]!++;
      element += stride[d]!;
      if (index[d]! < size[d]!) break;
      element -= stride[d]! * size[d]!;
      index[d] = 0;
    }
  }
  return new Uint8Array(out.buffer);
}

function rebuildTensor(storage: unknown, storageOffset: unknown, size: unknown, stride: unknown): NamedTensor | UnsupportedTensor {
  if (typeof storage !== 'object' || storage === null || !('bytes' in storage)) {
    throw new CheckpointFormatError('a tensor is rebuilt from something that is not a storage');
  }
  const s = storage as Storage;
  if (!Number.isSafeInteger(storageOffset) || (storageOffset as number) < 0 || !isIndexList(size) || !isIndexList(stride) || size.length !== stride.length) {
    throw new CheckpointFormatError(
      `a tensor in storage data/${s.key} has offset ${String(storageOffset)}, size ${JSON.stringify(size)}, stride ${JSON.stringify(stride)}`,
    );
  }
  const offset = storageOffset as number;
  if (s.kind === undefined) return new UnsupportedTensor(s.type, [...size]);
  const count = numel(size);
  if (count > 0) {
    let last = offset;
    for (let d = 0; d < size.length; d++) last += (size[d]! - 1) * stride[d]!;
    if (last >= s.elements) {
      throw new CheckpointFormatError(
        `a tensor of size [${size.join(', ')}] at offset ${offset} with strides [${stride.join(', ')}] reaches element ${last} ` +
          `of storage data/${s.key}, which holds ${s.elements}`,
      );
    }
  }
  const { dtype, fileBytes, widen } = s.kind;
  let data: NamedTensor['data'];
  if (isRowMajorContiguous(size, stride)) {
    const at = offset * fileBytes;
    if (widen === 'float16') data = float16ToFloat32(s.bytes, at, count);
    else if (widen === 'bfloat16') data = bfloat16ToFloat32(s.bytes, at, count);
    else data = typedArrayAt(s.bytes, at, count, dtype); // a view over the file when aligned
  } else {
    const packed = gatherStrided(s, fileBytes, offset, size, stride);
    if (widen === 'float16') data = float16ToFloat32(packed, 0, count);
    else if (widen === 'bfloat16') data = bfloat16ToFloat32(packed, 0, count);
    else data = new ARRAY_OF_DTYPE[dtype](packed.buffer, 0, count);
  }
  return { dtype, shape: [...size], data };
}

function swapBytes(bytes: Uint8Array, width: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i += width) for (let j = 0; j < width; j++) out[i + j] = bytes[i + width - 1 - j]!;
  return out;
}

function startsWith(bytes: Uint8Array, magic: number[]): boolean {
  return magic.every((b, i) => bytes[i] === b);
}

/** Parses the bytes of a torch.save zip file; `fileName` names it in errors. */
export function decodePth(bytes: Uint8Array, fileName: string): unknown {
  assertLittleEndianHost();
  const fail = (problem: string): never => {
    throw new Error(`${fileName}: ${problem}`);
  };
  if (bytes.length >= 2 && bytes[0] === 0x80 && bytes[1]! <= 5) {
    fail(
      'this is a legacy (pre-1.6, non-zip) torch.save file, which this reader does not support; ' +
        're-save it with a recent PyTorch: torch.save(torch.load(path, map_location="cpu"), new_path)',
    );
  }
  if (bytes.length > 262 && new TextDecoder('latin1').decode(bytes.subarray(257, 262)) === 'ustar') {
    fail('this is a legacy tar-format torch.save file (PyTorch < 0.4); re-save it with a recent PyTorch: torch.save(torch.load(path), new_path)');
  }
  if (!startsWith(bytes, ZIP_MAGIC)) {
    fail(`not a PyTorch checkpoint: a torch.save file is a ZIP archive starting with "PK\\x03\\x04", this one starts with ${
      [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ') || 'nothing (empty file)'
    }; check the path`);
  }

  try {
    let entries: Map<string, ZipEntry>;
    try {
      entries = readZipDirectory(bytes);
    } catch (error) {
      if (error instanceof ZipError) fail(`not a complete ZIP archive (${error.message}); ${CORRUPT_REMEDY}`);
      throw error;
    }
    const pickleEntry = [...entries.values()].find((e) => /^[^/]+\/data\.pkl$/.test(e.name));
    if (pickleEntry === undefined) {
      fail(`the ZIP archive has no <archive>/data.pkl, so it was not written by torch.save (entries: ${[...entries.keys()].slice(0, 5).join(', ')})`);
    }
    const prefix = pickleEntry!.name.slice(0, -'data.pkl'.length);
    const entryContent = (name: string): Uint8Array => {
      const entry = entries.get(prefix + name);
      if (entry === undefined) throw new CheckpointFormatError(`the archive has no entry ${prefix}${name}`);
      return readZipEntry(bytes, entry);
    };
    const byteorderEntry = entries.get(prefix + 'byteorder');
    const bigEndianFile = byteorderEntry !== undefined && new TextDecoder().decode(readZipEntry(bytes, byteorderEntry)).trim() === 'big';

    const storages = new Map<string, Storage>();
    const persistentLoad = (pid: unknown): Storage => {
      if (!Array.isArray(pid) || pid[0] !== 'storage' || !(pid[1] instanceof PyGlobal) || typeof pid[2] !== 'string') {
        throw new CheckpointFormatError(`unknown persistent id ${JSON.stringify(pid, (_k, v) => (typeof v === 'bigint' ? String(v) : v))}`);
      }
      const [, storageType, key, , declaredElements] = pid as [string, PyGlobal, string, unknown, unknown];
      const cached = storages.get(key);
      if (cached !== undefined) return cached;
      const type = storageType.qualifiedName;
      const kind = STORAGE_KINDS[type];
      let content = entryContent(`data/${key}`);
      let elements = 0;
      if (kind !== undefined) {
        if (content.length % kind.fileBytes !== 0 || (typeof declaredElements === 'number' && declaredElements * kind.fileBytes !== content.length)) {
          throw new CheckpointFormatError(
            `storage data/${key} (${type}) holds ${content.length} bytes but is declared as ${String(declaredElements)} elements of ${kind.fileBytes} bytes`,
          );
        }
        elements = content.length / kind.fileBytes;
        if (bigEndianFile && kind.fileBytes > 1) content = swapBytes(content, kind.fileBytes);
        if (content.byteOffset % 8 !== 0) content = content.slice(); // strided gathers read whole aligned units
      }
      const storage: Storage = { type, key, kind, bytes: content, elements };
      storages.set(key, storage);
      return storage;
    };
    const call = (callable: PyGlobal, args: unknown[]): unknown => {
      switch (callable.qualifiedName) {
        case 'torch._utils._rebuild_tensor':
        case 'torch._utils._rebuild_tensor_v2':
          return rebuildTensor(args[0], args[1], args[2], args[3]);
        case 'torch._utils._rebuild_parameter':
        case 'torch._utils._rebuild_parameter_with_state':
          return args[0]; // a Parameter is its data here; requires_grad and hooks do not matter
        case 'torch._tensor._rebuild_from_type_v2': // tensor subclasses: (func, type, args, state)
          if (args[0] instanceof PyGlobal && Array.isArray(args[2])) return call(args[0], args[2]);
          return undefined;
      }
      return undefined;
    };

    try {
      return unpickle(entryContent('data.pkl'), { call, persistentLoad });
    } catch (error) {
      if (error instanceof PickleError) fail(`${prefix}data.pkl is not a valid pickle (${error.message}); ${CORRUPT_REMEDY}`);
      throw error;
    }
  } catch (error) {
    if (error instanceof ZipError || error instanceof CheckpointFormatError) fail(`${error.message}; ${CORRUPT_REMEDY}`);
    throw error;
  }
}

/** Reads a torch.save (zip format) file: the unpickled object tree, tensors as NamedTensor. */
export function readPth(path: string): unknown {
  return decodePth(readFileBytes(path, 'PyTorch checkpoint'), path);
}

// ---------------------------------------------------------------------------------------------
// Finding the DINO weights in what torch.save wrote

export type DinoStateDict = {
  /** Backbone tensors by DINO name: `cls_token`, `pos_embed`, `blocks.0.attn.qkv.weight`, ... */
  backbone: Map<string, NamedTensor>;
  /** Head tensors by DINO name: `mlp.0.weight`, `last_layer.weight_v`, ... (empty for backbone-only files). */
  head: Map<string, NamedTensor>;
};

export type ExtractStateDictOptions = {
  /** Which network of a full DINO training checkpoint to take; the teacher is the one DINO evaluates. Default 'teacher'. */
  prefer?: 'teacher' | 'student';
};

function describe(value: unknown): string {
  if (value === null) return 'None';
  if (value instanceof Map) return 'a dict';
  if (Array.isArray(value)) return 'a list/tuple';
  if (value instanceof PyObject) return `a ${value.className}`;
  if (value instanceof UnsupportedTensor) return `a tensor of unsupported storage type ${value.storageType}`;
  return `a ${typeof value}`;
}

/**
 * Finds the model weights in a loaded `.pth`: a full DINO training checkpoint (`teacher` / `student`
 * dicts with `module.`, `backbone.` and `head.` prefixes), a `{state_dict: ...}` / `{model: ...}`
 * wrapper, or a plain state dict (like `dino_deitsmall16_pretrain.pth`). Strips `module.` and splits
 * `backbone.` / `head.`; keys with neither prefix belong to the backbone.
 */
export function extractStateDict(obj: unknown, fileName: string, options: ExtractStateDictOptions = {}): DinoStateDict {
  const prefer = options.prefer ?? 'teacher';
  if (!(obj instanceof Map)) {
    throw new Error(`${fileName}: expected a dict of tensors (a state dict or a DINO checkpoint) at the top level, found ${describe(obj)}`);
  }
  let stateDict: Map<unknown, unknown> = obj;
  let where = 'the top-level dict';
  if (obj.has('teacher') || obj.has('student')) {
    const chosen = obj.get(prefer);
    if (!(chosen instanceof Map)) {
      const other = prefer === 'teacher' ? 'student' : 'teacher';
      throw new Error(
        `${fileName}: this DINO checkpoint has no "${prefer}" state dict (it has "${other}"); pass prefer: '${other}' to use it`,
      );
    }
    stateDict = chosen;
    where = `"${prefer}"`;
  } else {
    for (const wrapper of ['state_dict', 'model']) {
      const inner = obj.get(wrapper);
      if (inner instanceof Map) {
        stateDict = inner;
        where = `"${wrapper}"`;
        break;
      }
    }
  }

  const backbone = new Map<string, NamedTensor>();
  const head = new Map<string, NamedTensor>();
  for (const [rawKey, value] of stateDict) {
    if (typeof rawKey !== 'string') {
      throw new Error(`${fileName}: ${where} has a non-string key ${String(rawKey)}, so it is not a state dict`);
    }
    if (!isNamedTensor(value)) {
      throw new Error(
        `${fileName}: entry "${rawKey}" of ${where} is ${describe(value)}, not a float/int/bool tensor; ` +
          (value instanceof UnsupportedTensor ? 're-save it as float32 (tensor.float())' : 'this is not a model state dict'),
      );
    }
    let key = rawKey;
    while (key.startsWith('module.')) key = key.slice('module.'.length); // DistributedDataParallel wrapper
    let target = backbone;
    if (key.startsWith('backbone.')) key = key.slice('backbone.'.length);
    else if (key.startsWith('head.')) {
      key = key.slice('head.'.length);
      target = head;
    }
    if (target.has(key)) throw new Error(`${fileName}: "${rawKey}" and another key of ${where} both map to "${key}"`);
    target.set(key, value);
  }
  if (backbone.size === 0 && head.size === 0) {
    const keys = [...obj.keys()].map(String).slice(0, 10).join(', ');
    throw new Error(`${fileName}: no tensors found in ${where} (top-level keys: ${keys}); is this a model checkpoint?`);
  }
  return { backbone, head };
}
