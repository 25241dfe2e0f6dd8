/**
 * WebDataset-style tar shards as a training source: `--data 'shards/train-{000000..000146}.tar'`. For datasets of
 * millions of images, a few hundred large files are kinder to file systems than millions of small ones.
 *
 * A sample is the group of consecutive members sharing a key (the member path up to the first "." of its base
 * name, WebDataset's convention): its image is the `.jpg`, `.jpeg`, `.png` or `.webp` member, its class the integer in
 * the `.cls` member when there is one (else unlabelled). Members of other kinds (`.json`, `.txt`, ...) are ignored.
 *
 * Indexing reads each member's 512-byte tar header and the first bytes of image members (the same header check as
 * for files), never the images: the index holds each sample's shard, data offset and length. Workers then read a
 * sample's bytes by offset (runtime/data/decode.ts `decodeImageSource`). The loader visits an epoch shard by shard
 * (shards in a random order, samples in a random order inside each), so a batch's reads stay inside one or two
 * shards; the order depends only on (seed, epoch), never on the number of workers. Shards are not streamed: they
 * must be local files (read by offset), and they are indexed again at each start (no cache).
 *
 * Tar formats read: POSIX ustar (name + prefix), GNU long names (`L`), and pax headers (`x`, its `path` and `size`).
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { HEADER_BYTES, headerProblem } from './decode.ts';
import { type Entry, type FolderIndex, applyHoldout, buildIndex } from './folder-index.ts';

/** Whether `data` names tar shards rather than a folder: it ends in `.tar` (with or without a brace range). */
export function isShardPattern(data: string): boolean {
  return data.endsWith('.tar');
}

/**
 * The file names a shard pattern stands for: every `{A..B}` range expanded (numbers, zero-padded to the width of
 * `A` as written), in order; a pattern without braces is one file.
 * @throws Error naming the pattern when a range is malformed or runs backwards.
 */
export function expandShardPattern(pattern: string): string[] {
  const match = /\{([0-9]+)\.\.([0-9]+)\}/.exec(pattern);
  if (match === null) {
    if (/[{}]/.test(pattern)) throw new Error(`shard pattern ${pattern}: braces must hold a numeric range such as {000000..000146}`);
    return [pattern];
  }
  const [whole, from, to] = match as unknown as [string, string, string];
  const lo = Number(from), hi = Number(to);
  if (hi < lo) throw new Error(`shard pattern ${pattern}: the range ${whole} runs backwards`);
  const out: string[] = [];
  for (let n = lo; n <= hi; n++) {
    const name = pattern.slice(0, match.index) + String(n).padStart(from.length, '0') + pattern.slice(match.index + whole.length);
    out.push(...expandShardPattern(name));
  }
  return out;
}

const IMAGE_EXTENSIONS = new Set(['jpg', 'jpeg', 'png', 'webp']);

export interface TarShardOptions {
  /** Leave out samples whose image is not one instead of throwing. Default false. */
  readonly skipBadImages?: boolean;
  /** Fraction of each class held out for evaluation, as for a plain folder. Default 0. */
  readonly holdout?: number;
}

/** One member of a tar file: its path, and where its data starts and how long it is. */
interface TarMember {
  readonly name: string;
  readonly offset: number;
  readonly size: number;
  /** The first bytes of its data (up to HEADER_BYTES). */
  readonly head: Uint8Array;
}

/**
 * Indexes the shards `pattern` names (see the module comment). The index's root is the first shard's folder; each
 * sample's path reads `shard.tar#key.ext`.
 * @throws Error naming the shard when one is missing or is not a tar file; a BadImageError naming the member when
 * an image member is not an image and `skipBadImages` is not set.
 */
export async function indexTarShards(pattern: string, options: TarShardOptions = {}): Promise<FolderIndex> {
  const shards = expandShardPattern(path.resolve(pattern));
  const root = path.dirname(shards[0]!);
  const shardFiles = shards.map((s) => path.relative(root, s).split(path.sep).join('/'));
  const entries: Entry[] = [];
  for (const [shard, file] of shards.entries()) {
    let sample: { key: string; image?: TarMember; label?: string } | undefined;
    const flush = () => {
      if (sample?.image === undefined) return;
      const image = sample.image;
      entries.push({
        rel: `${shardFiles[shard]}#${image.name}`, className: sample.label, split: 0, size: image.size, mtime: 0,
        problem: headerProblem(image.head, image.size), shard, offset: image.offset,
      });
    };
    for await (const member of tarMembers(file)) {
      const base = member.name.slice(member.name.lastIndexOf('/') + 1);
      const dot = base.indexOf('.');
      if (dot <= 0) continue;
      const key = member.name.slice(0, member.name.length - base.length + dot);
      const extension = base.slice(dot + 1).toLowerCase();
      if (sample === undefined || sample.key !== key) {
        flush();
        sample = { key };
      }
      if (IMAGE_EXTENSIONS.has(extension)) sample.image = member;
      else if (extension === 'cls') sample.label = await readClass(file, member);
    }
    flush();
  }
  if (entries.length === 0) throw new Error(`no image samples in ${pattern}: expected tar shards of key.jpg / key.png / key.webp members (and optional key.cls)`);
  applyHoldout(entries, options.holdout ?? 0);
  return buildIndex(root, entries, 'plain', options.holdout ?? 0, options.skipBadImages ?? false, shardFiles);
}

/** The class in a `.cls` member: a non-negative integer, as text. */
async function readClass(file: string, member: TarMember): Promise<string> {
  const handle = await fs.open(file, 'r');
  try {
    const bytes = new Uint8Array(Math.min(member.size, 64));
    await handle.read(bytes, 0, bytes.length, member.offset);
    const text = new TextDecoder().decode(bytes).trim();
    if (!/^[0-9]+$/.test(text)) throw new Error(`${file}#${member.name}: a .cls member must hold a non-negative integer, got ${JSON.stringify(text)}`);
    return String(Number(text));
  } finally {
    await handle.close();
  }
}

/** The regular-file members of the tar file `file`, in order, reading only headers and the data's first bytes. */
async function* tarMembers(file: string): AsyncGenerator<TarMember> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (error) {
    throw new Error(`cannot open tar shard ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}): check the pattern`);
  }
  try {
    const { size: fileSize } = await handle.stat();
    const block = new Uint8Array(512 + HEADER_BYTES);
    let position = 0;
    let longName: string | undefined;
    let pax: Record<string, string> = {};
    while (position + 512 <= fileSize) {
      const { bytesRead } = await handle.read(block, 0, block.length, position);
      if (bytesRead < 512) break;
      const header = block.subarray(0, 512);
      if (header.every((b) => b === 0)) break; // end-of-archive marker
      if (!checksumOk(header)) throw new Error(`${file}: not a tar file (bad header checksum at byte ${position})`);
      const type = String.fromCharCode(header[156]!);
      const size = pax['size'] !== undefined ? Number(pax['size']) : readSize(header);
      const dataAt = position + 512;
      if (type === 'L' || type === 'x' || type === 'g') {
        const data = new Uint8Array(size);
        await handle.read(data, 0, size, dataAt);
        if (type === 'L') longName = cString(data);
        else if (type === 'x') pax = parsePax(data);
      } else {
        if (type === '0' || type === '\0') {
          const ustarName = cString(header.subarray(0, 100));
          const prefix = cString(header.subarray(345, 500));
          const name = pax['path'] ?? longName ?? (prefix ? `${prefix}/${ustarName}` : ustarName);
          yield { name, offset: dataAt, size, head: block.slice(512, 512 + Math.min(HEADER_BYTES, size)) };
        }
        longName = undefined;
        pax = {};
      }
      position = dataAt + Math.ceil(size / 512) * 512;
    }
  } finally {
    await handle.close();
  }
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
}

/** The size field: octal text, or GNU's base-256 for sizes of 8 GiB and more (high bit set). */
function readSize(header: Uint8Array): number {
  const field = header.subarray(124, 136);
  if (field[0]! & 0x80) {
    let n = 0;
    for (let i = 1; i < 12; i++) n = n * 256 + field[i]!;
    return n;
  }
  return parseInt(cString(field).trim() || '0', 8);
}

/** The header checksum: the byte sum with the checksum field counted as spaces. */
function checksumOk(header: Uint8Array): boolean {
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : header[i]!;
  return sum === parseInt(cString(header.subarray(148, 156)).trim() || '-1', 8);
}

/** pax extended header records: "LEN key=value\n". */
function parsePax(data: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  const decoder = new TextDecoder();
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    if (space < 0) break;
    const length = Number(decoder.decode(data.subarray(at, space)));
    if (!(length > 0)) break;
    const record = decoder.decode(data.subarray(space + 1, at + length - 1)); // LEN counts bytes, the "\n" included
    const eq = record.indexOf('=');
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1);
    at += length;
  }
  return out;
}
