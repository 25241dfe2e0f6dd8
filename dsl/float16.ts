/**
 * IEEE 754 binary16 (ONNX float16) as bits, for constants in graphs and for ONNX Runtime tensors, which hold
 * float16 data as a Uint16Array of bits where the JS engine has no Float16Array (Node 20); and bfloat16 (the upper
 * half of a float32: its 8 exponent bits, 7 stored significand bits), for constants and as the reference that
 * bfloat16 rounding in graphs is checked against.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The float16 bits of `x`, rounded to nearest, ties to even (as ONNX Cast and numpy); overflow gives ±Inf. */
export function float16Bits(x: number): number {
  f32[0] = x; // the value is first rounded to float32, as a float32 tensor cast to float16 would be
  const b = u32[0]!;
  const sign = (b >>> 16) & 0x8000;
  const e = (b >>> 23) & 0xff;
  const m = b & 0x7fffff;
  if (e === 0xff) return sign | 0x7c00 | (m ? 0x200 : 0); // Inf, or a quiet NaN
  const exp = e - 127 + 15;
  if (exp >= 0x1f) return sign | 0x7c00;
  // Keep the top bits of the significand; round on the dropped ones. A carry out of the significand correctly
  // moves into the exponent (up to Inf).
  const round = (kept: number, dropped: number, half: number) => kept + (dropped > half || (dropped === half && kept & 1) ? 1 : 0);
  if (exp <= 0) {
    if (exp < -10) return sign; // below half the smallest subnormal: ±0
    const full = m | 0x800000, shift = 14 - exp;
    return sign | round(full >>> shift, full & ((1 << shift) - 1), 1 << (shift - 1));
  }
  return sign | round((exp << 10) | (m >>> 13), m & 0x1fff, 0x1000);
}

/** The number that float16 bits `h` stand for. */
export function float16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/** float16 bits of each value. */
export function toFloat16(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float16Bits(values[i]!);
  return out;
}

/** The values of float16 bits, widened to float32 (exactly: every float16 is a float32). */
export function fromFloat16(bits: ArrayLike<number>): Float32Array {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = float16Value(bits[i]!);
  return out;
}

/**
 * The bfloat16 bits of `x`, rounded to nearest, ties to even on the 16 dropped bits of its float32 (as ONNX's
 * reference Cast, PyTorch and numpy's ml_dtypes). bfloat16 has float32's exponent range, so the subnormals of
 * float32 round the same way and overflow happens only past the largest finite value (to ±Inf by carry).
 */
export function bfloat16Bits(x: number): number {
  f32[0] = x; // first rounded to float32, as a float32 tensor cast to bfloat16 would be
  const b = u32[0]!;
  if ((b & 0x7f800000) === 0x7f800000 && b & 0x7fffff) return ((b >>> 16) & 0x8000) | 0x7fc0; // a quiet NaN
  const kept = b >>> 16, dropped = b & 0xffff;
  return (kept + (dropped > 0x8000 || (dropped === 0x8000 && kept & 1) ? 1 : 0)) & 0xffff;
}

/** The number that bfloat16 bits `h` stand for (exactly: a bfloat16 is a float32 with 16 zero low bits). */
export function bfloat16Value(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0]!;
}

/** bfloat16 bits of each value. */
export function toBfloat16(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = bfloat16Bits(values[i]!);
  return out;
}
