/**
 * The pixel work of one augmented view, behind one interface so that the same pipeline (multicrop.ts `renderView`)
 * runs on either implementation: the JS byte operations of image-ops.ts ({@link JS_VIEW_KERNELS}, the reference), or
 * the WebAssembly SIMD kernels of runtime/data/wasm-kernels.ts (faster, the same bytes). Both give Pillow's bytes
 * (test/runtime/data/augment-fidelity.test.ts runs its fixtures through each).
 */
import {
  applyTableBytes, gaussianBlurBytes, JS_PIXEL_COLOR_OPS, resizeBytes, type ByteImage, type CropBox, type PixelColorOps,
} from './image-ops.ts';

/** An 8-bit source image (multicrop.ts `SourceImage`): channel-first, or interleaved in a decoder's pixel order. */
export type ByteSource = ByteImage & { readonly interleaved?: boolean };

export interface ResizeOptions {
  readonly flip?: boolean;
  readonly window?: CropBox;
}

export interface ViewKernels {
  /** Which implementation: 'js' or 'wasm'. */
  readonly name: 'js' | 'wasm';
  /**
   * Makes `source` readable by the kernels for the views of one image, each at most `maxSize` pixels square
   * (WebAssembly: copies it into the module's memory, which the views' scratch then follows). Call once per image.
   */
  load(source: ByteSource, maxSize: number): ByteSource;
  /** The crop `box` of a loaded source resized to `outHeight` x `outWidth` (PIL bicubic), mirrored when `flip`, only
   * its `window` computed when given (image-ops.ts `resizeBytes`); the returned image is scratch, valid until the next
   * `resize`. */
  resize(source: ByteSource, box: CropBox, outHeight: number, outWidth: number, options?: ResizeOptions): ByteImage;
  /** ColorJitter's and RandomGrayscale's per-pixel steps, for image-ops.ts `colorJitterDeferred`. */
  readonly color: PixelColorOps;
  applyTable(image: ByteImage, table: Uint8Array): void;
  /** PIL's GaussianBlur, in place. */
  blur(image: ByteImage, sigma: number): void;
  /** ToTensor + Normalize through per-channel byte -> float32 tables, into `out` at `offset`. */
  normalize(image: ByteImage, tables: readonly Float32Array[], out: Float32Array, offset: number): void;
}

/** One view's bytes, reused from view to view (each worker thread has its own module instance). */
let viewBytes = new Uint8Array(0);
function viewScratch(length: number): Uint8Array {
  if (viewBytes.length < length) viewBytes = new Uint8Array(length);
  return viewBytes.subarray(0, length);
}

/** Per channel, out[offset + c * plane + p] = tables[c][data[c * plane + p]]. */
function normalizeBytesInto(view: ByteImage, tables: readonly Float32Array[], out: Float32Array, offset: number): void {
  const plane = view.height * view.width;
  const data = view.data;
  for (let c = 0; c < view.channels; c++) {
    const table = tables[c]!;
    const base = c * plane;
    for (let p = 0; p < plane; p++) out[offset + base + p] = table[data[base + p]!]!;
  }
}

/** The JS byte operations of image-ops.ts. */
export const JS_VIEW_KERNELS: ViewKernels = {
  name: 'js',
  load: (source) => source,
  resize: (source, box, outHeight, outWidth, options = {}) => {
    const window = options.window ?? { top: 0, left: 0, height: outHeight, width: outWidth };
    return resizeBytes(source, box, outHeight, outWidth, { ...options, window, out: viewScratch(source.channels * window.height * window.width) });
  },
  color: JS_PIXEL_COLOR_OPS,
  applyTable: (image, table) => applyTableBytes(image.data, table),
  blur: gaussianBlurBytes,
  normalize: normalizeBytesInto,
};
