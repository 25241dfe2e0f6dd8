/**
 * The augmentation's pixel kernels in WebAssembly SIMD (runtime/data/wasm/augment.c, built by tools/build-wasm.ts,
 * the .wasm committed): the same arithmetic as the JS byte operations of image-ops.ts, so the same bytes as Pillow,
 * in 128-bit lanes. JS keeps what is cheap and shared: coefficients, tables, the order of the steps
 * (multicrop.ts `renderView`); the module does the per-pixel loops on images laid out in its own memory.
 *
 * Memory: per thread one instance. Its linear memory holds, above the C stack: a slot that byte tables are copied
 * into, then per image the source, then per view its scratch. Growing the memory detaches every view of the old buffer, so it grows
 * only in {@link WasmViewKernels.load}, by a bound on everything the image's views allocate; an allocation past
 * that bound is a bug and throws, it never reads a detached view.
 */
import { readFileSync } from 'node:fs';
import { boxBlurWeights, gaussianBlurBytes, hueStepOf, resizePlan, type ByteImage, type CropBox, type PixelColorOps } from './image-ops.ts';
import type { ByteSource, ResizeOptions, ViewKernels } from './view-kernels.ts';

/** The compiled module's exports (pointers are byte offsets into `memory`). */
interface AugmentExports {
  readonly memory: WebAssembly.Memory;
  readonly __heap_base: WebAssembly.Global;
  resize_horizontal(src: number, srcStride: number, srcPlane: number, lines: number, first: number, weights: number, taps: number,
    dst: number, dstStep: number, dstStride: number, dstPlane: number, outputs: number, channels: number, pixelStep: number): void;
  resize_vertical(src: number, width: number, first: number, weights: number, taps: number, dst: number, outputs: number): void;
  gaussian_blur_narrow(data: number, channels: number, width: number, height: number, radius: number, ww: number, fw: number, planes: number, lines: number): void;
  mean_luma(data: number, channels: number, plane: number, input: number): number;
  adjust_saturation_lanes(data: number, plane: number, alpha: number): void;
  to_grayscale(data: number, plane: number, input: number): void;
  adjust_hue_lanes(data: number, plane: number, hueStep: number): void;
  apply_table(data: number, length: number, table: number): void;
  normalize(data: number, channels: number, plane: number, tables: number, out: number): void;
}

export const WASM_FILE = new URL('./wasm/augment.wasm', import.meta.url);

/** Bytes past the end of a source or a scratch array that the SIMD loads may read (never use). */
const SLACK = 64;
const PAGE = 65536;

/** A bump allocator over the module's memory; offsets 16-aligned. */
class Arena {
  private top: number;
  private limit: number;
  constructor(private readonly memory: WebAssembly.Memory, base: number) {
    this.top = align(base);
    this.limit = memory.buffer.byteLength;
  }
  /** The current top, to come back to with {@link release}. */
  get mark(): number { return this.top; }
  release(mark: number): void { this.top = mark; }
  /** Grows the memory (detaching earlier views) so that `bytes` more can be allocated from the top. */
  reserve(bytes: number): void {
    const need = this.top + bytes;
    const have = this.memory.buffer.byteLength;
    if (need > have) this.memory.grow(Math.ceil((need - have) / PAGE));
    this.limit = need;
  }
  alloc(bytes: number): number {
    const at = this.top;
    const end = align(at + bytes + SLACK);
    if (end > this.limit) throw new Error(`wasm-kernels: allocating ${bytes} bytes passes the ${this.limit - at} reserved (a bound in reserve() is too small)`);
    this.top = end;
    return at;
  }
  u8(bytes: number): Uint8Array { return new Uint8Array(this.memory.buffer, this.alloc(bytes), bytes); }
  i32(count: number): Int32Array { return new Int32Array(this.memory.buffer, this.alloc(4 * count), count); }
  f32(count: number): Float32Array { return new Float32Array(this.memory.buffer, this.alloc(4 * count), count); }
  f64(count: number): Float64Array { return new Float64Array(this.memory.buffer, this.alloc(8 * count), count); }
}

const align = (n: number) => (n + 15) & ~15;

/** Whether `table` maps every byte to itself. */
function isIdentity(table: Uint8Array): boolean {
  for (let v = 0; v < 256; v++) if (table[v] !== v) return false;
  return true;
}

/**
 * {@link ViewKernels} on the WebAssembly module. Images they return live in the module's memory: valid until the
 * next {@link load} (the source) or `resize` (a view).
 */
export class WasmViewKernels implements ViewKernels {
  readonly name = 'wasm';
  private readonly exports: AugmentExports;
  private readonly arena: Arena;
  /** Static part of the memory, below every image: the slot a byte table is copied into for the per-pixel ops. */
  private readonly input: number;
  /** The arena's top after the static part, and after the loaded source. */
  private readonly staticMark: number;
  private sourceMark: number;
  /** Allocations one view makes at most (each costs its slack and alignment in the bound). */
  private static readonly VIEW_ALLOCATIONS = 16;

  constructor(module: WebAssembly.Module) {
    this.exports = new WebAssembly.Instance(module, {}).exports as unknown as AugmentExports;
    const arena = (this.arena = new Arena(this.exports.memory, this.exports.__heap_base.value as number));
    arena.reserve(align(256 + SLACK));
    this.input = arena.alloc(256);
    this.staticMark = this.sourceMark = arena.mark;
  }

  load(source: ByteSource, maxSize: number): ByteSource {
    this.arena.release(this.staticMark);
    const { channels, height, width } = source;
    // Everything one view allocates (resize, blur, normalize), at most maxSize square: per axis, outputs x taps
    // coefficients (taps <= 4 ceil(in / out) + 2, padded to 8: at most 4 in + 16 out in all) and `first`; the
    // horizontal pass's rows (the crop's height plus taps); the view; 2 blur planes and 2 lines; float32 output and
    // tables; each allocation with its slack and alignment.
    const coefficients = 4 * (4 * width + 17 * maxSize) + 4 * (4 * height + 17 * maxSize);
    const rows = channels * (height * maxSize + 4 * height + 8 * maxSize);
    const square = maxSize * maxSize;
    const viewBound = coefficients + rows + channels * square + 2 * square + 2 * (maxSize + 12) + 4 * channels * square + 4 * 256 * channels + WasmViewKernels.VIEW_ALLOCATIONS * (SLACK + 16);
    // The source's slack also covers the zero-weight taps the horizontal pass reads past a row: 7 pixels.
    const sourceBytes = channels * height * width + 8 * channels;
    try {
      this.arena.reserve(sourceBytes + SLACK + 16 + viewBound);
    } catch (error) {
      throw new Error(`the augmentation's WebAssembly memory cannot hold a ${width} x ${height} x ${channels} image and its views (${(error as Error).message}); DINO_AUGMENT_KERNELS=js runs the JS kernels, which have no such limit`);
    }
    const data = this.arena.u8(sourceBytes).subarray(0, source.data.length);
    data.set(source.data);
    this.sourceMark = this.arena.mark;
    return { channels, height, width, data, ...(source.interleaved === true ? { interleaved: true } : {}) };
  }

  resize(source: ByteSource, box: CropBox, outHeight: number, outWidth: number, options: ResizeOptions = {}): ByteImage {
    const arena = this.arena;
    arena.release(this.sourceMark);
    const { channels, width: inWidth } = source;
    if (source.data.buffer !== this.exports.memory.buffer) throw new Error('wasm-kernels: resize of a source that load() did not place');
    const flip = options.flip ?? false;
    const { window, rowFirst, rows, horizontal: h, vertical: v } = resizePlan(box, outHeight, outWidth, options.window);
    const interleaved = source.interleaved === true && channels > 1;
    const pixelStep = interleaved ? channels : 1;
    // Interleaved RGB(A) reads a pixel's channels as one vector, taps as they are; other layouts read 8 taps at a
    // time, the weights padded with zeros to a multiple of 8.
    const pixelPath = interleaved && channels >= 3 && channels <= 4;
    const hTaps = pixelPath ? h.taps : Math.ceil(h.taps / 8) * 8;
    const hFirst = arena.i32(window.width);
    hFirst.set(h.first);
    const hWeights = arena.i32(window.width * hTaps);
    if (hTaps === h.taps) hWeights.set(h.weights);
    else {
      hWeights.fill(0); // the padding taps: arena memory holds earlier views' bytes
      for (let o = 0; o < window.width; o++) hWeights.set(h.weights.subarray(o * h.taps, (o + 1) * h.taps), o * hTaps);
    }
    const vFirst = arena.i32(window.height);
    vFirst.set(v.first);
    const vWeights = arena.i32(v.weights.length);
    vWeights.set(v.weights);
    const midWidth = window.width, midPlane = rows * midWidth;
    const mid = arena.u8(channels * midPlane);
    const outPlane = window.height * window.width;
    const out = arena.u8(channels * outPlane);
    const inPlane = interleaved ? 1 : source.height * inWidth;
    const rowStride = inWidth * pixelStep;
    const src = source.data.byteOffset + (box.top + rowFirst) * rowStride + box.left * pixelStep;
    const e = this.exports;
    e.resize_horizontal(src, rowStride, inPlane, rows, hFirst.byteOffset, hWeights.byteOffset, hTaps,
      mid.byteOffset + (flip ? midWidth - 1 : 0), flip ? -1 : 1, midWidth, midPlane, midWidth, channels, pixelStep);
    for (let c = 0; c < channels; c++) {
      e.resize_vertical(mid.byteOffset + c * midPlane, midWidth, vFirst.byteOffset, vWeights.byteOffset, v.taps, out.byteOffset + c * outPlane, window.height);
    }
    return { channels, height: window.height, width: window.width, data: out };
  }

  /** `table` copied into the module's memory (one slot, reused: every op reads it before the next copy). */
  private tableIn(table: Uint8Array): number {
    new Uint8Array(this.exports.memory.buffer, this.input, 256).set(table);
    return this.input;
  }

  private pointerOf(image: ByteImage): number {
    if (image.data.buffer !== this.exports.memory.buffer) throw new Error('wasm-kernels: an image outside the module memory');
    return image.data.byteOffset;
  }

  readonly color: PixelColorOps = {
    meanLuma: (image, input) => this.exports.mean_luma(this.pointerOf(image), image.channels, image.height * image.width, this.tableIn(input)),
    saturation: (image, factor, input) => {
      this.applyPending(image, input);
      this.exports.adjust_saturation_lanes(this.pointerOf(image), image.height * image.width, Math.fround(factor));
    },
    grayscale: (image, input) => this.exports.to_grayscale(this.pointerOf(image), image.height * image.width, this.tableIn(input)),
    hue: (image, shift, input) => {
      this.applyPending(image, input);
      this.exports.adjust_hue_lanes(this.pointerOf(image), image.height * image.width, hueStepOf(shift));
    },
  };

  /** A pending table applied to every byte first, for the ops that work in lanes: they read each byte once and
   * rewrite every channel, so mapping beforehand is the same as reading through the table. */
  private applyPending(image: ByteImage, input: Uint8Array): void {
    if (!isIdentity(input)) this.exports.apply_table(this.pointerOf(image), image.data.length, this.tableIn(input));
  }

  applyTable(image: ByteImage, table: Uint8Array): void {
    this.exports.apply_table(this.pointerOf(image), image.data.length, this.tableIn(table));
  }

  blur(image: ByteImage, sigma: number): void {
    const weights = boxBlurWeights(sigma);
    if (weights === null) return;
    // Whole radius 2 and above (sigmas beyond about 2, past DINO's range): the JS kernels, on the same bytes.
    if (weights.radius > 1) return gaussianBlurBytes(image, sigma);
    const { width, height, channels } = image;
    const mark = this.arena.mark;
    const planes = this.arena.u8(2 * width * height);
    const lines = this.arena.u8(2 * (width + 12));
    this.exports.gaussian_blur_narrow(this.pointerOf(image), channels, width, height, weights.radius, weights.ww, weights.fw, planes.byteOffset, lines.byteOffset);
    this.arena.release(mark);
  }

  normalize(image: ByteImage, tables: readonly Float32Array[], out: Float32Array, offset: number): void {
    const { channels } = image;
    const plane = image.height * image.width;
    const mark = this.arena.mark;
    const tableMemory = this.arena.f32(256 * channels);
    for (let c = 0; c < channels; c++) tableMemory.set(tables[c]!, 256 * c);
    const result = this.arena.f32(channels * plane);
    this.exports.normalize(this.pointerOf(image), channels, plane, tableMemory.byteOffset, result.byteOffset);
    out.set(result, offset);
    this.arena.release(mark);
  }
}

let compiled: WebAssembly.Module | null | undefined;
let kernels: WasmViewKernels | null = null;

/**
 * This thread's WebAssembly kernels, or null where they cannot run: no WebAssembly SIMD (checked by compiling the
 * module), or the module file missing. `DINO_AUGMENT_KERNELS=js` chooses the JS kernels instead (the reference).
 */
export function wasmViewKernels(): WasmViewKernels | null {
  if (kernels !== null) return kernels;
  if (compiled === undefined) {
    try {
      compiled = new WebAssembly.Module(readFileSync(WASM_FILE));
    } catch {
      compiled = null;
    }
  }
  if (compiled === null) return null;
  return (kernels = new WasmViewKernels(compiled));
}
