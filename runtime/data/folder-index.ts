/**
 * An image folder as a list of files, not of pixels: what the streaming loader reads from (each worker decodes
 * the files of its batch, per sample, per epoch; runtime/data/decode.ts). Memory grows with the file count only:
 * one string holding every relative path, and typed arrays for labels, byte sizes and mtimes (about 24 bytes per
 * file plus its path: ImageNet-1k's 1.28M files take about 80 MB).
 *
 * Layouts (hidden entries, names starting with ".", are ignored everywhere):
 * - `root/train/...` next to `root/val/...` or `root/test/...` (`test/` wins when both exist): those are the
 *   train and test splits; anything else directly in `root` is ignored.
 * - otherwise `root` itself holds the images and every one is in the train split (DINO trains on every image),
 *   unless `holdout` F > 0: then in each class (and in the unlabelled group), files in listing order, file k is
 *   held out for evaluation when floor((k + 1) F) > floor(k F): F = 0.1 holds out the 10th, 20th, ... file.
 * Inside a split folder each sub-folder is a class (its files, searched recursively, get its label); the classes
 * are the sorted (by code unit, as Python's `sorted`) union of the sub-folder names of both splits. Files lying
 * next to class folders, and all files of a folder without sub-folders, get label -1. Files are listed sorted by
 * path, so every listing of the same folder gives the same order.
 *
 * Bad files: indexing reads each file's first bytes (not the image) and refuses an empty file or one that does not
 * start as a JPEG, PNG or WebP; a file that passes but cannot be decoded (truncated, corrupt inside) is found when a
 * worker first reads it (runtime/data/loader.ts). Without `skipBadImages` the first bad file is an Error naming it;
 * with it, bad files are left out and listed in {@link FolderIndex.skipped}.
 *
 * The cache (`cacheFile`, e.g. the run folder's `data-index.tsv`; usable files first, in order, then the bad ones):
 * indexing again re-lists the folder and re-reads the header of only the files whose size or mtime changed. `frozen: true` takes the recorded list as
 * it is, without listing the folder: a resumed run and its evaluations see the same files in the same order even
 * if the folder has grown since.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { BadImageError, HEADER_BYTES, type ImageSource, headerProblem } from './decode.ts';

export { BadImageError, type ImageSource } from './decode.ts';

/** A file that was left out because it cannot be decoded as an image. */
export interface SkippedImage {
  /** Its absolute path. */
  readonly file: string;
  readonly reason: string;
}

export interface FolderIndexOptions {
  /** Leave out files that are not images instead of throwing (`--skip-bad-images`). Default false. */
  readonly skipBadImages?: boolean;
  /** Fraction of each class of a plain folder held out for evaluation (`--holdout F`), in [0, 1] (1: all). Default 0. */
  readonly holdout?: number;
  /** Where the index is kept: read to avoid re-reading unchanged files' headers, written when it changed. */
  readonly cacheFile?: string;
  /** Use `cacheFile`'s list as recorded, without listing the folder (a resumed run). Default false. */
  readonly frozen?: boolean;
  /** Headers read at the same time. Default 32. */
  readonly concurrency?: number;
}

const CACHE_FORMAT = 'dino-folder-index';
const CACHE_VERSION = 1;
/** Split codes in the table and the cache. */
const TRAIN = 0, TEST = 1;

/** The columns of every file of an index, shared by its views. */
interface FileTable {
  /** Relative paths joined by "\n" (a path never holds one: such names are refused when listing). */
  readonly paths: string;
  /** Start of path i in `paths`; entry count is its end. */
  readonly starts: Uint32Array;
  readonly labels: Int32Array;
  readonly bytes: Float64Array;
  readonly mtimes: Float64Array;
  readonly splits: Uint8Array;
  /** Tar shards (tar-shards.ts): the shard files, relative to the root, and per row its shard and data offset. */
  readonly shards?: { readonly files: readonly string[]; readonly shardOf: Uint32Array; readonly offsets: Float64Array };
}


/** A list of files of an image folder (the whole folder, or one split of it): count, paths, labels. */
export class FolderFiles {
  constructor(
    /** Absolute path of the folder the relative paths start from. */
    readonly root: string,
    /** Class names that labels index into (shared by both splits). */
    readonly classes: readonly string[],
    protected readonly table: FileTable,
    /** Rows of `table` in this list, in order; undefined = every row. */
    private readonly rows: Uint32Array | undefined,
  ) {}

  get count(): number {
    return this.rows ? this.rows.length : this.table.labels.length;
  }

  /** Path of file `i` relative to {@link root}, with "/" separators. */
  path(i: number): string {
    const r = this.row(i);
    return this.table.paths.slice(this.table.starts[r]!, this.table.starts[r + 1]! - 1);
  }

  /** Absolute path of file `i` (for a tar shard's member: `shard.tar#member`, which names it in messages). */
  file(i: number): string {
    return path.join(this.root, this.path(i));
  }

  /** Where image `i`'s bytes are (a file, or a range of a tar shard). */
  source(i: number): ImageSource {
    const shards = this.table.shards;
    if (shards === undefined) {
      const file = this.file(i);
      return { file, name: file };
    }
    const r = this.row(i);
    return { file: path.join(this.root, shards.files[shards.shardOf[r]!]!), offset: shards.offsets[r]!, length: this.table.bytes[r]!, name: this.file(i) };
  }

  /** The tar shard image `i` is in, or undefined for a folder of files. */
  shard(i: number): number | undefined {
    return this.table.shards?.shardOf[this.row(i)];
  }

  /** Class index of file `i` in {@link classes}, or -1 when it has no class. */
  label(i: number): number {
    return this.table.labels[this.row(i)]!;
  }

  /** Size in bytes of file `i` when indexed. */
  byteSize(i: number): number {
    return this.table.bytes[this.row(i)]!;
  }

  /** Modification time (ms since the epoch) of file `i` when indexed. */
  mtimeMs(i: number): number {
    return this.table.mtimes[this.row(i)]!;
  }

  /** The labels of every file, in order. */
  labels(): Int32Array {
    return Int32Array.from({ length: this.count }, (_, i) => this.label(i));
  }

  private row(i: number): number {
    if (!(Number.isInteger(i) && i >= 0 && i < this.count)) throw new RangeError(`file index ${i} is outside [0, ${this.count})`);
    return this.rows ? this.rows[i]! : i;
  }
}

/** An indexed image folder: every usable file, and its train and test splits (see the module comment). */
export class FolderIndex extends FolderFiles {
  /** What training iterates: `train/`, or the plain folder less its holdout. */
  readonly train: FolderFiles;
  /** What evaluation scores: `val/` or `test/`, or the plain folder's holdout (empty without one). */
  readonly test: FolderFiles;

  constructor(
    root: string,
    classes: readonly string[],
    table: FileTable,
    /** `splits`: train/ + val/ (or test/) folders; `plain`: the folder itself holds the images. */
    readonly layout: 'splits' | 'plain',
    /** The holdout fraction the plain layout's test split was drawn with (0: none). */
    readonly holdout: number,
    /** Files left out under `skipBadImages`, in listing order. */
    readonly skipped: readonly SkippedImage[],
    /** The bad files' own entries, recorded with the index so a frozen index leaves out the same ones. */
    private readonly badEntries: readonly Entry[],
  ) {
    super(root, classes, table, undefined);
    const rowsOf = (split: number) => {
      const rows: number[] = [];
      table.splits.forEach((s, r) => s === split && rows.push(r));
      return rows.length === table.splits.length ? undefined : Uint32Array.from(rows); // undefined: every row
    };
    this.train = new FolderFiles(root, classes, table, rowsOf(TRAIN));
    this.test = new FolderFiles(root, classes, table, rowsOf(TEST));
  }

  /** The folder's base name, as datasets are named. */
  get name(): string {
    return path.basename(this.root);
  }

  /** Whether the images are members of tar shards (tar-shards.ts) rather than files. */
  get sharded(): boolean {
    return this.table.shards !== undefined;
  }

  /** Writes the index (as `cacheFile` holds it) to `file`, atomically; `frozen` indexing reads it back. */
  async save(file: string): Promise<void> {
    await fs.mkdir(path.dirname(file), { recursive: true });
    const tmp = `${file}.tmp-${process.pid}`;
    await fs.writeFile(tmp, this.cacheText());
    await fs.rename(tmp, file);
  }

  /** The cache file's text: made when written, not kept (it would double the index's memory). */
  cacheText(): string {
    const t = this.table;
    if (t.shards) throw new Error(`${this.root}: an index of tar shards is not cached (the shards are indexed again)`);
    const entries: Entry[] = Array.from({ length: this.count }, (_, i) => {
      const label = t.labels[i]!;
      return { rel: this.path(i), className: label < 0 ? undefined : this.classes[label], split: t.splits[i]!, size: t.bytes[i]!, mtime: t.mtimes[i]!, problem: undefined };
    });
    return formatCache({ format: CACHE_FORMAT, version: CACHE_VERSION, root: this.root, layout: this.layout, holdout: this.holdout }, [...entries, ...this.badEntries]);
  }
}

/** One listed file while indexing. */
/** @internal */
export interface Entry {
  readonly rel: string;
  readonly className: string | undefined;
  split: number;
  size: number;
  mtime: number;
  problem: string | undefined;
  /** For a tar shard's member: its shard (index into the shard list) and the offset of its data. */
  readonly shard?: number;
  readonly offset?: number;
}

const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Indexes the images under `root` (layouts, splits, bad files and the cache: see the module comment).
 * @throws Error naming the folder when it is missing or holds no image file; a {@link BadImageError} naming the
 * first bad file without `skipBadImages`; an Error naming the cache file when `frozen` and it is missing or not
 * an index of `root`.
 */
export async function indexImageFolder(root: string, options: FolderIndexOptions = {}): Promise<FolderIndex> {
  const absRoot = path.resolve(root);
  const holdout = options.holdout ?? 0;
  if (!(holdout >= 0 && holdout <= 1)) throw new Error(`holdout must be a fraction in [0, 1], got ${holdout}`);
  let layout: 'splits' | 'plain';
  let entries: Entry[];
  if (options.frozen) {
    if (options.cacheFile === undefined) throw new Error('a frozen folder index needs the cacheFile it was recorded in');
    const recorded = await readCache(options.cacheFile);
    if (recorded === undefined) throw new Error(`${options.cacheFile}: no folder index there (the run's record of its files); index the folder again without frozen`);
    if (recorded.header.root !== absRoot) throw new Error(`${options.cacheFile} indexes ${recorded.header.root}, not ${absRoot}`);
    ({ layout, entries } = { layout: recorded.header.layout, entries: recorded.entries });
  } else {
    ({ layout, entries } = await listFolder(absRoot, holdout));
    const cached = options.cacheFile !== undefined ? await readCache(options.cacheFile) : undefined;
    const known = new Map((cached?.header.root === absRoot ? cached.entries : []).map((e) => [e.rel, e]));
    await statAndProbe(absRoot, entries, known, options.concurrency ?? 32);
  }
  if (entries.length === 0) {
    throw new Error(`no image files in ${absRoot}: expected JPEG/PNG/WebP files, in class sub-folders or directly in the folder`);
  }
  const index = buildIndex(absRoot, entries, layout, holdout, options.skipBadImages ?? false);
  if (options.cacheFile !== undefined && !options.frozen) {
    const before = await fs.readFile(options.cacheFile, 'utf8').catch(() => undefined);
    if (before !== index.cacheText()) await index.save(options.cacheFile);
  }
  return index;
}

/** The sorted class names of `entries`. */
function classesOf(entries: readonly Entry[], order: (a: string, b: string) => number): string[] {
  return [...new Set(entries.flatMap((e) => (e.className === undefined ? [] : [e.className])))].sort(order);
}

/**
 * The index of listed `entries` (in listing order, splits set): bad ones refused or left out, the rest packed into
 * the table. `shardFiles`: the entries are members of these tar shards (relative to `absRoot`). @internal
 */
export function buildIndex(absRoot: string, entries: readonly Entry[], layout: 'splits' | 'plain', holdout: number, skipBadImages: boolean, shardFiles?: readonly string[]): FolderIndex {
  // Classes come from every listed file, good or bad: a class whose files are all bad keeps its index.
  const classes = shardFiles ? classesOf(entries, (a, b) => Number(a) - Number(b)) : classesOf(entries, byCodeUnit);
  const skipped: SkippedImage[] = [];
  for (const e of entries) {
    if (e.problem === undefined) continue;
    const file = path.join(absRoot, e.rel);
    if (!skipBadImages) throw new BadImageError(file, e.problem);
    skipped.push({ file, reason: e.problem });
  }
  const good = entries.filter((e) => e.problem === undefined);
  if (good.length === 0) throw new Error(`no readable image in ${absRoot}: all ${skipped.length} files were skipped`);
  const classIndex = new Map(classes.map((c, i) => [c, i]));
  const starts = new Uint32Array(good.length + 1);
  let offset = 0;
  good.forEach((e, i) => { starts[i] = offset; offset += e.rel.length + 1; });
  starts[good.length] = offset;
  const table: FileTable = {
    paths: good.map((e) => e.rel + '\n').join(''),
    starts,
    labels: Int32Array.from(good, (e) => (e.className === undefined ? -1 : classIndex.get(e.className)!)),
    bytes: Float64Array.from(good, (e) => e.size),
    mtimes: Float64Array.from(good, (e) => e.mtime),
    splits: Uint8Array.from(good, (e) => e.split),
    ...(shardFiles ? { shards: { files: shardFiles, shardOf: Uint32Array.from(good, (e) => e.shard!), offsets: Float64Array.from(good, (e) => e.offset!) } } : {}),
  };
  return new FolderIndex(absRoot, classes, table, layout, holdout, skipped, entries.filter((e) => e.problem !== undefined));
}

async function listDir(dir: string) {
  try {
    const entries = await fs.readdir(dir, { withFileTypes: true });
    return entries.filter((e) => !e.name.startsWith('.')).sort((a, b) => byCodeUnit(a.name, b.name));
  } catch (error) {
    throw new Error(`cannot read image folder ${dir} (${(error as Error).message}): check the path`);
  }
}

/** The files under `root` in listing order, with their layout and splits (sizes not read yet). */
async function listFolder(root: string, holdout: number): Promise<{ layout: 'splits' | 'plain'; entries: Entry[] }> {
  const dirNames = new Set((await listDir(root)).filter((e) => e.isDirectory()).map((e) => e.name));
  const testDir = dirNames.has('test') ? 'test' : dirNames.has('val') ? 'val' : undefined;
  if (dirNames.has('train') && testDir !== undefined) {
    const train = await listSplit(root, 'train', TRAIN);
    const test = await listSplit(root, testDir, TEST);
    return { layout: 'splits', entries: [...train, ...test] };
  }
  const entries = await listSplit(root, '', TRAIN);
  applyHoldout(entries, holdout);
  return { layout: 'plain', entries };
}

/**
 * Marks the held-out entries of a plain listing: per class (and the unlabelled group), in listing order, entry k
 * when floor((k + 1) F) > floor(k F). @internal
 */
export function applyHoldout(entries: Entry[], holdout: number): void {
  if (!(holdout > 0)) return;
  const positionInGroup = new Map<string | undefined, number>();
  // The epsilon keeps F = 1/N exact: floor((k + 1) / N) steps up on every N-th file despite rounding of F.
  const step = (k: number) => Math.floor(k * holdout + 1e-9);
  for (const e of entries) {
    const k = positionInGroup.get(e.className) ?? 0;
    positionInGroup.set(e.className, k + 1);
    if (step(k + 1) > step(k)) e.split = TEST;
  }
}

/** Files of the split folder `root/sub`: class sub-folders (recursively) and loose files (no class). */
async function listSplit(root: string, sub: string, split: number): Promise<Entry[]> {
  const listed: Entry[] = [];
  const add = (rel: string, className: string | undefined) => {
    if (/[\n\r\t]/.test(rel)) throw new Error(`${path.join(root, rel)}: a file name with a tab or line break cannot be indexed; rename it`);
    listed.push({ rel, className, split, size: 0, mtime: 0, problem: undefined });
  };
  const walk = async (relDir: string, className: string | undefined): Promise<void> => {
    for (const entry of await listDir(path.join(root, relDir))) {
      const rel = relDir === '' ? entry.name : `${relDir}/${entry.name}`;
      if (entry.isDirectory()) await walk(rel, className);
      else if (entry.isFile()) add(rel, className);
    }
  };
  for (const entry of await listDir(path.join(root, sub))) {
    const rel = sub === '' ? entry.name : `${sub}/${entry.name}`;
    if (entry.isDirectory()) await walk(rel, entry.name);
    else if (entry.isFile()) add(rel, undefined);
  }
  return listed;
}

/** Fills in size and mtime, and the header verdict: from `known` when size and mtime are unchanged, else read. */
async function statAndProbe(root: string, entries: Entry[], known: Map<string, Entry>, concurrency: number): Promise<void> {
  let next = 0;
  const work = async () => {
    const buffer = new Uint8Array(HEADER_BYTES);
    while (next < entries.length) {
      const e = entries[next++]!;
      let handle: fs.FileHandle;
      try {
        handle = await fs.open(path.join(root, e.rel), 'r');
      } catch (error) {
        e.problem = `cannot open it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`;
        continue;
      }
      try {
        const stat = await handle.stat();
        e.size = stat.size;
        e.mtime = stat.mtimeMs;
        const before = known.get(e.rel);
        // mtimes compare to the microsecond: setting one (utimes, copies) may round off the nanoseconds.
        if (before !== undefined && before.size === e.size && Math.abs(before.mtime - e.mtime) < 1e-3) {
          e.problem = before.problem;
          continue;
        }
        buffer.fill(0);
        const { bytesRead } = await handle.read(buffer, 0, HEADER_BYTES, 0);
        e.problem = headerProblem(buffer.subarray(0, bytesRead), e.size);
      } finally {
        await handle.close();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, concurrency) }, work));
}

interface CacheHeader {
  readonly format: string;
  readonly version: number;
  readonly root: string;
  readonly layout: 'splits' | 'plain';
  readonly holdout: number;
}

/** The cache: a JSON header line, then one line per listed file: split, class, size, mtime, problem, path (tabs). */
function formatCache(header: CacheHeader, entries: readonly Entry[]): string {
  const lines = [JSON.stringify(header)];
  for (const e of entries) lines.push([e.split, e.className ?? '', e.size, e.mtime, e.problem ?? '', e.rel].join('\t'));
  return lines.join('\n') + '\n';
}

/** The cache at `file`, or undefined when there is none or it is not one (then it is rebuilt). */
async function readCache(file: string): Promise<{ header: CacheHeader; entries: Entry[] } | undefined> {
  const text = await fs.readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const lines = text.split('\n');
  let header: CacheHeader;
  try {
    header = JSON.parse(lines[0]!) as CacheHeader;
  } catch {
    return undefined;
  }
  if (header.format !== CACHE_FORMAT || header.version !== CACHE_VERSION) return undefined;
  const entries: Entry[] = [];
  for (const line of lines.slice(1)) {
    if (line === '') continue;
    const cols = line.split('\t');
    if (cols.length !== 6) return undefined;
    const [split, className, size, mtime, problem, rel] = cols as [string, string, string, string, string, string];
    entries.push({ split: Number(split), className: className === '' ? undefined : className, size: Number(size), mtime: Number(mtime), problem: problem === '' ? undefined : problem, rel });
  }
  return { header, entries };
}
