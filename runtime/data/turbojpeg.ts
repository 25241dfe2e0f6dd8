/**
 * JPEG decoding on the calling thread with the system's libjpeg-turbo (its TurboJPEG API, libturbojpeg.so.0; Debian:
 * `apt-get install libturbojpeg0`), called through koffi: what a loader worker uses for baseline JPEGs, where sharp
 * would hand each decode to libuv's thread pool and libvips' pipeline (measured ~2x the CPU per 500 x 375 file; see
 * bench/RESULTS.md). Same decoder settings as PIL's and libvips' (accurate integer IDCT, fancy upsampling), so the
 * same pixels: test/runtime/data/turbojpeg.test.ts compares with sharp.
 *
 * Only files whose pixels need nothing else go this way: RGB or grayscale, no EXIF rotation, no embedded ICC profile
 * ({@link plainJpeg}); the others, and every file the library reports a problem with, go through sharp, which
 * rotates, converts colour spaces and words the errors. Without the library everything goes through sharp.
 */
import koffi from 'koffi';

const LIBRARY = 'libturbojpeg.so.0';
/** TurboJPEG's pixel format for interleaved RGB (TJPF_RGB) and colour spaces that need sharp (TJCS_CMYK, TJCS_YCCK). */
const TJPF_RGB = 0;
const TJCS_CMYK = 3;
const TJCS_YCCK = 4;

interface TurboJpeg {
  readonly handle: unknown;
  readonly header: (handle: unknown, jpeg: Uint8Array, size: number, width: number[], height: number[], subsampling: number[], colorspace: number[]) => number;
  readonly decompress: (handle: unknown, jpeg: Uint8Array, size: number, out: Uint8Array, width: number, pitch: number, height: number, format: number, flags: number) => number;
}

let library: TurboJpeg | null | undefined;

/** This thread's TurboJPEG decompressor, or null when the library cannot be loaded (or `DINO_JPEG_DECODER=sharp`). */
function turboJpeg(): TurboJpeg | null {
  if (library !== undefined) return library;
  if (process.env['DINO_JPEG_DECODER'] === 'sharp') return (library = null);
  try {
    const lib = koffi.load(LIBRARY);
    const init = lib.func('void *tjInitDecompress()');
    const handle = init();
    if (handle === null) return (library = null);
    // Typed arrays passed for `void *` go as their data pointer: the library reads the file and writes the pixels in place.
    library = {
      handle,
      header: lib.func('int tjDecompressHeader3(void *handle, const void *jpeg, unsigned long size, _Out_ int *width, _Out_ int *height, _Out_ int *subsampling, _Out_ int *colorspace)'),
      decompress: lib.func('int tjDecompress2(void *handle, const void *jpeg, unsigned long size, void *out, int width, int pitch, int height, int format, int flags)'),
    };
  } catch {
    library = null;
  }
  return library;
}

/** Whether JPEGs can be decoded on the calling thread here. */
export function turboJpegAvailable(): boolean {
  return turboJpeg() !== null;
}

/**
 * Whether a JPEG's pixels are its decoded samples as they are: no EXIF orientation other than 1 and no ICC profile
 * (the segments before the first scan are read; anything unexpected counts as not plain).
 */
export function plainJpeg(bytes: Uint8Array): boolean {
  if (bytes[0] !== 0xff || bytes[1] !== 0xd8) return false;
  let at = 2;
  while (at + 4 <= bytes.length) {
    if (bytes[at] !== 0xff) return false;
    const marker = bytes[at + 1]!;
    if (marker === 0xda) return true; // start of scan: every header segment seen
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01 || marker === 0xff) { at += marker === 0xff ? 1 : 2; continue; }
    const length = (bytes[at + 2]! << 8) | bytes[at + 3]!;
    const body = at + 4, end = at + 2 + length;
    if (length < 2 || end > bytes.length) return false;
    if (marker === 0xe2 && startsWith(bytes, body, 'ICC_PROFILE\0')) return false;
    if (marker === 0xe1 && startsWith(bytes, body, 'Exif\0\0') && exifOrientation(bytes, body + 6, end) !== 1) return false;
    at = end;
  }
  return false;
}

function startsWith(bytes: Uint8Array, at: number, text: string): boolean {
  for (let k = 0; k < text.length; k++) if (bytes[at + k] !== text.charCodeAt(k)) return false;
  return true;
}

/** The Orientation tag (0x0112) of the TIFF structure at bytes[tiff .. end), 1 when absent; 0 when unreadable. */
function exifOrientation(bytes: Uint8Array, tiff: number, end: number): number {
  if (tiff + 8 > end) return 0;
  const little = bytes[tiff] === 0x49 && bytes[tiff + 1] === 0x49;
  if (!little && !(bytes[tiff] === 0x4d && bytes[tiff + 1] === 0x4d)) return 0;
  const u16 = (at: number) => (little ? bytes[at]! | (bytes[at + 1]! << 8) : (bytes[at]! << 8) | bytes[at + 1]!);
  const u32 = (at: number) => (little ? u16(at) + u16(at + 2) * 65536 : u16(at) * 65536 + u16(at + 2));
  const ifd = tiff + u32(tiff + 4);
  if (ifd + 2 > end) return 0;
  const entries = u16(ifd);
  for (let k = 0; k < entries; k++) {
    const entry = ifd + 2 + 12 * k;
    if (entry + 12 > end) return 0;
    if (u16(entry) === 0x0112) return u16(entry + 8);
  }
  return 1;
}

/**
 * Decodes a plain JPEG ({@link plainJpeg}) to interleaved RGB on the calling thread; null when it must go through sharp
 * instead: the library is missing, the file is CMYK, or the library reports any problem (a warning included: sharp
 * then names it, as it does for every file it refuses).
 */
export function decodeJpegHere(bytes: Uint8Array): { width: number; height: number; data: Uint8Array } | null {
  const tj = turboJpeg();
  if (tj === null || !plainJpeg(bytes)) return null;
  const width = [0], height = [0], subsampling = [0], colorspace = [0];
  if (tj.header(tj.handle, bytes, bytes.length, width, height, subsampling, colorspace) !== 0) return null;
  if (colorspace[0] === TJCS_CMYK || colorspace[0] === TJCS_YCCK) return null;
  const w = width[0]!, h = height[0]!;
  const data = new Uint8Array(w * h * 3);
  if (tj.decompress(tj.handle, bytes, bytes.length, data, w, 0, h, TJPF_RGB, 0) !== 0) return null;
  return { width: w, height: h, data };
}
