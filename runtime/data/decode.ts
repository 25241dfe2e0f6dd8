/**
 * One image file decoded to 8-bit pixels at its own size, RGB in the decoder's interleaved order (`interleaved:
 * true`, read in place by the resize: no channel-first copy): what the streaming loader's workers (and evaluation)
 * feed to the augmentation. DINO crops every view from the decoded file, so nothing is resized here.
 *
 * As PIL's `Image.open(f).convert('RGB')` in torchvision's ImageFolder: auto-rotated by the EXIF orientation,
 * converted to sRGB, alpha dropped. With `channels: 1` the gray level is PIL's `convert('L')` luma, 0.299 R +
 * 0.587 G + 0.114 B of the sRGB values in 16-bit fixed point (libvips' own grayscale would weigh linear light
 * instead: red would come out at 127, not 76).
 */
import { closeSync, openSync, promises as fs, readFileSync, readSync } from 'node:fs';
import sharp from 'sharp';
import type { SourceImage } from './multicrop.ts';
import { decodeJpegHere } from './turbojpeg.ts';

/** The formats an image folder may hold. */
export const ACCEPTED_FORMATS: ReadonlySet<string> = new Set(['jpeg', 'png', 'webp']);

/** An image that cannot be decoded; the CLI words the remedy with its flag (cli/errors.ts). */
export class BadImageError extends Error {
  constructor(readonly file: string, readonly reason: string) {
    super(`cannot load image ${file}: ${reason}. Fix or remove the file, or skip unreadable files (skipBadImages: true)`);
    this.name = 'BadImageError';
  }
}

/**
 * The first bytes of a JPEG, PNG or WebP file, checked without decoding: why `head` cannot start an accepted
 * image, or undefined when it can. `size` is the whole file's size.
 */
export function headerProblem(head: Uint8Array, size: number): string | undefined {
  if (size === 0) return 'the file is empty';
  const is = (offset: number, bytes: number[]) => bytes.every((b, k) => head[offset + k] === b);
  if (is(0, [0xff, 0xd8, 0xff])) return undefined; // JPEG SOI + first marker
  if (is(0, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return undefined; // PNG signature
  if (is(0, [0x52, 0x49, 0x46, 0x46]) && is(8, [0x57, 0x45, 0x42, 0x50])) return undefined; // RIFF....WEBP
  return 'not a JPEG, PNG or WebP image (its first bytes are no such header)';
}

/** Bytes of a file's header that {@link headerProblem} reads. */
export const HEADER_BYTES = 12;

/**
 * Decodes `bytes` (the contents of `file`, which names it in errors): RGB as interleaved (height, width, 3) bytes,
 * gray as (height, width).
 * @throws Error saying why the bytes are no readable image (the caller names the file: see {@link BadImageError}).
 */
export async function decodeImageBytes(bytes: Uint8Array, channels: 1 | 3, options: DecodeOptions = {}): Promise<SourceImage> {
  // The format from the magic bytes, not sharp's metadata(): one trip less through libuv's (small) thread pool.
  const problem = headerProblem(bytes.subarray(0, HEADER_BYTES), bytes.length);
  if (problem !== undefined) throw new Error(problem);
  if (options.callingThread) {
    const here = decodeJpegHere(bytes);
    if (here !== null) return pixelsOf(here.data, here.height, here.width, channels);
  }
  const { data, info } = await sharp(bytes, { failOn: 'warning' })
    .rotate()
    .removeAlpha()
    .toColourspace('srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true });
  const { width, height } = info;
  if (info.channels !== 3 || data.length !== width * height * 3) {
    throw new Error(`decoded to ${width}x${height}x${info.channels}, expected 3 channels`);
  }
  return pixelsOf(new Uint8Array(data.buffer, data.byteOffset, data.length), height, width, channels);
}

/** Interleaved RGB as a source image: RGB stays in the decoder's order (the augmentation reads it in place: no copy);
 * gray is PIL's luma. */
function pixelsOf(rgb: Uint8Array, height: number, width: number, channels: 1 | 3): SourceImage {
  if (channels === 3) return { channels, height, width, data: rgb, interleaved: true };
  return { channels, height, width, data: lumaOf(rgb, width * height) };
}

/** How to decode. */
export interface DecodeOptions {
  /**
   * Read and decode on the calling thread (for a loader worker, which has nothing else to do meanwhile): the file is
   * read synchronously, and a plain JPEG is decoded by libjpeg-turbo where its library is installed
   * (runtime/data/turbojpeg.ts), instead of through libuv's thread pool, which the whole process shares (4 threads
   * unless UV_THREADPOOL_SIZE says otherwise) and which sharp's decodes need.
   */
  readonly callingThread?: boolean;
}

/** Reads and decodes one image file; throws a {@link BadImageError} naming it when it cannot. */
export async function decodeImageFile(file: string, channels: 1 | 3, options: DecodeOptions = {}): Promise<SourceImage> {
  let bytes: Uint8Array;
  try {
    bytes = options.callingThread ? readFileSync(file) : await fs.readFile(file);
  } catch (error) {
    throw new BadImageError(file, `cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  try {
    return await decodeImageBytes(bytes, channels, options);
  } catch (error) {
    throw new BadImageError(file, (error as Error).message);
  }
}

/** Where one image's bytes are: a whole file, or `length` bytes at `offset` of a tar shard. */
export interface ImageSource {
  readonly file: string;
  readonly offset?: number;
  readonly length?: number;
  /** How errors name it: the file, or `shard.tar#member`. */
  readonly name: string;
}

/**
 * Reads and decodes one image: a whole file, or a byte range of a tar shard (tar-shards.ts), read on the calling
 * thread (see {@link DecodeOptions}'s `callingThread`). Throws a {@link BadImageError} with the source's name.
 */
export async function decodeImageSource(source: ImageSource, channels: 1 | 3): Promise<SourceImage> {
  if (source.offset === undefined) return decodeImageFile(source.file, channels, { callingThread: true });
  let bytes: Uint8Array;
  try {
    bytes = readRange(source.file, source.offset, source.length ?? 0);
  } catch (error) {
    throw new BadImageError(source.name, `cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  try {
    return await decodeImageBytes(bytes, channels, { callingThread: true });
  } catch (error) {
    throw new BadImageError(source.name, (error as Error).message);
  }
}

function readRange(file: string, offset: number, length: number): Uint8Array {
  const fd = openSync(file, 'r');
  try {
    const bytes = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, bytes, done, length - done, offset + done);
      if (n === 0) throw new Error(`the file ends before byte ${offset + length}`);
      done += n;
    }
    return bytes;
  } finally {
    closeSync(fd);
  }
}

/** PIL's luma of interleaved RGB bytes (ITU-R 601-2 in 16-bit fixed point, as convert('L')). */
function lumaOf(rgb: Uint8Array, pixels: number): Uint8Array {
  const out = new Uint8Array(pixels);
  for (let p = 0; p < pixels; p++) out[p] = (rgb[3 * p]! * 19595 + rgb[3 * p + 1]! * 38470 + rgb[3 * p + 2]! * 7471 + 0x8000) >> 16;
  return out;
}
