import * as fs from 'node:fs';
// A host tensor as it crosses a file boundary: dtype, row-major shape, flat little-endian data.
// Shared by the safetensors and .pth readers.

export type TensorDType = 'float32' | 'float64' | 'int64' | 'int32' | 'uint8' | 'bool';

export type TensorData = Float32Array | Float64Array | BigInt64Array | Int32Array | Uint8Array;

export type NamedTensor = {
  dtype: TensorDType;
  shape: number[];
  /** Row-major, `numel(shape)` elements. `bool` is a Uint8Array of 0/1. */
  data: TensorData;
};

export const TENSOR_DTYPES: readonly TensorDType[] = ['float32', 'float64', 'int64', 'int32', 'uint8', 'bool'];

export const BYTES_PER_ELEMENT: Record<TensorDType, number> = {
  float32: 4,
  float64: 8,
  int64: 8,
  int32: 4,
  uint8: 1,
  bool: 1,
};

/** The typed-array class that holds each dtype. */
export const ARRAY_OF_DTYPE: Record<TensorDType, { new (buffer: ArrayBufferLike, byteOffset: number, length: number): TensorData; name: string }> = {
  float32: Float32Array,
  float64: Float64Array,
  int64: BigInt64Array,
  int32: Int32Array,
  uint8: Uint8Array,
  bool: Uint8Array,
};

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function isNamedTensor(value: unknown): value is NamedTensor {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Partial<NamedTensor>;
  return (
    typeof v.dtype === 'string' &&
    (TENSOR_DTYPES as readonly string[]).includes(v.dtype) &&
    Array.isArray(v.shape) &&
    ArrayBuffer.isView(v.data)
  );
}

/** Typed-array code below reinterprets file bytes in host order; every file format here is little-endian. */
export const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function assertLittleEndianHost(): void {
  if (!HOST_IS_LITTLE_ENDIAN) {
    throw new Error('runtime/io: this host is big-endian; tensor files are little-endian and byte swapping is not implemented');
  }
}

/**
 * A typed array of `count` elements of `dtype` over `bytes[byteOffset ...]`.
 * A view (no copy) when the absolute offset is aligned to the element size, a copy otherwise.
 */
export function typedArrayAt(bytes: Uint8Array, byteOffset: number, count: number, dtype: TensorDType): TensorData {
  const Ctor = ARRAY_OF_DTYPE[dtype];
  const size = BYTES_PER_ELEMENT[dtype];
  const absolute = bytes.byteOffset + byteOffset;
  if (absolute % size === 0) return new Ctor(bytes.buffer, absolute, count);
  const copy = new Uint8Array(count * size);
  copy.set(bytes.subarray(byteOffset, byteOffset + count * size));
  return new Ctor(copy.buffer, 0, count);
}

/** IEEE binary16 (little-endian) to float32, exact (every half value is representable). */
export function float16ToFloat32(bytes: Uint8Array, byteOffset: number, count: number): Float32Array {
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const h = bytes[byteOffset + 2 * i]! | (bytes[byteOffset + 2 * i + 1]! << 8);
    const sign = h & 0x8000 ? -1 : 1;
    const exponent = (h >> 10) & 0x1f;
    const mantissa = h & 0x3ff;
    if (exponent === 0) out[i] = sign * mantissa * 2 ** -24; // zero and subnormals
    else if (exponent === 0x1f) out[i] = mantissa === 0 ? sign * Infinity : NaN;
    else out[i] = sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
  }
  return out;
}

/** bfloat16 (little-endian) to float32: bfloat16 is the upper half of a float32. */
export function bfloat16ToFloat32(bytes: Uint8Array, byteOffset: number, count: number): Float32Array {
  const bits = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    bits[i] = ((bytes[byteOffset + 2 * i]! | (bytes[byteOffset + 2 * i + 1]! << 8)) << 16) >>> 0;
  }
  return new Float32Array(bits.buffer);
}

/** The bytes of a whole file, as a Uint8Array view; a read failure names the file and what it was meant to be. */
export function readFileBytes(path: string, what: string): Uint8Array {
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'no such file; check the path' : (error as Error).message;
    throw new Error(`${path}: cannot read ${what}: ${reason}`, { cause: error });
  }
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
