/**
 * The feature file `dino features` writes and `knn` / `linear` read (exports/evaluation/features.ts describes the files): its
 * layout, allocation at full size with resumable row writes, and reading it back. Knows nothing of models.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../../runtime/io/atomic.ts';
import { readSafetensors } from '../../runtime/io/safetensors.ts';
import { EvalOptionError } from './eval-data.ts';

/** `count` rows of `dim` floats with their labels (-1: none); structurally `FeatureSet` of exports/evaluation/knn.ts. */
export interface FeatureRows {
  readonly count: number;
  readonly dim: number;
  readonly data: Float32Array;
  readonly labels: Int32Array;
}

// ---- the file -------------------------------------------------------------------------------------------

export type FeatureFormat = 'safetensors' | 'npy';

/** What a feature file holds, stored in it (safetensors metadata `dino.features`) or beside it (`OUT.json`). */
export interface FeatureFileInfo {
  readonly format: 'dino-ts-features/1';
  readonly count: number;
  readonly dim: number;
  readonly classes: readonly string[];
  /** Row ranges in order: the first `splits[0].count` rows are split 0, and so on. */
  readonly splits: readonly { readonly name: string; readonly count: number }[];
  /** The model file and the SHA-256 of its bytes. */
  readonly model: string;
  readonly modelSha256: string;
  readonly data: string;
  readonly transform: string;
  /** DINO's linear-evaluation feature, when the rows are that instead of the model's `features`. */
  readonly linear?: { readonly nLastBlocks: number; readonly avgpoolPatchtokens: boolean };
  /** The rows are L2-normalised (as `eval_knn.py` dumps them). */
  readonly normalized?: boolean;
  /** The name of the `files.txt` beside the file, when rows come from files. */
  readonly files?: string;
}

/** The format an output path asks for, from its extension; an error naming the path otherwise. */
export function featureFormat(out: string): FeatureFormat {
  const ext = path.extname(out).toLowerCase();
  if (ext === '.safetensors') return 'safetensors';
  if (ext === '.npy') return 'npy';
  throw new EvalOptionError('out', out, 'a file ending in .safetensors or .npy');
}

/** Every file a feature file of `out` consists of. */
export function featureFilePaths(out: string): { main: string; labels?: string; info?: string; files: string; progress: string } {
  const base = out.slice(0, out.length - path.extname(out).length);
  const npy = featureFormat(out) === 'npy';
  return {
    main: out,
    ...(npy ? { labels: `${base}.labels.npy`, info: `${base}.json` } : {}),
    files: `${base}.files.txt`,
    progress: `${out}.progress.json`,
  };
}

/** The 8-byte length + JSON header of a safetensors file holding `features` [count, dim] F32 and `labels` [count] I32. */
function safetensorsHeader(count: number, dim: number, info: FeatureFileInfo): Uint8Array {
  const featureBytes = count * dim * 4;
  const json = JSON.stringify({
    __metadata__: { 'dino.features': JSON.stringify(info) },
    features: { dtype: 'F32', shape: [count, dim], data_offsets: [0, featureBytes] },
    labels: { dtype: 'I32', shape: [count], data_offsets: [featureBytes, featureBytes + count * 4] },
  });
  const padded = json + ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8); // data starts 8-aligned
  const body = Buffer.from(padded, 'utf8');
  const header = new Uint8Array(8 + body.length);
  new DataView(header.buffer).setBigUint64(0, BigInt(body.length), true);
  header.set(body, 8);
  return header;
}

/** A NumPy `.npy` 1.0 header for a C-order array of `descr` ('<f4', '<i4') and `shape`, padded to 64 bytes. */
function npyHeader(descr: string, shape: readonly number[]): Uint8Array {
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = Math.ceil((10 + dict.length + 1) / 64) * 64;
  const text = dict + ' '.repeat(total - 10 - dict.length - 1) + '\n';
  const header = new Uint8Array(total);
  header.set([0x93, ...Buffer.from('NUMPY'), 1, 0], 0);
  new DataView(header.buffer).setUint16(8, text.length, true);
  header.set(Buffer.from(text, 'latin1'), 10);
  return header;
}

/** Where the rows and labels of a feature file go: file, its header, and the byte offsets of row 0. */
interface Region {
  readonly file: string;
  readonly header: Uint8Array;
  readonly size: number;
  /** Byte offset of row 0 and bytes per row. */
  readonly offset: number;
  readonly rowBytes: number;
}

function featureRegions(out: string, info: FeatureFileInfo): { features: Region; labels: Region } {
  const { count, dim } = info;
  const p = featureFilePaths(out);
  if (featureFormat(out) === 'safetensors') {
    const header = safetensorsHeader(count, dim, info);
    const size = header.length + count * (dim + 1) * 4;
    return {
      features: { file: out, header, size, offset: header.length, rowBytes: dim * 4 },
      labels: { file: out, header, size, offset: header.length + count * dim * 4, rowBytes: 4 },
    };
  }
  const fh = npyHeader('<f4', [count, dim]), lh = npyHeader('<i4', [count]);
  return {
    features: { file: out, header: fh, size: fh.length + count * dim * 4, offset: fh.length, rowBytes: dim * 4 },
    labels: { file: p.labels!, header: lh, size: lh.length + count * 4, offset: lh.length, rowBytes: 4 },
  };
}

function startsWith(file: string, prefix: Uint8Array, size: number): boolean {
  if (!fs.existsSync(file) || fs.statSync(file).size !== size) return false;
  const fd = fs.openSync(file, 'r');
  try {
    const head = new Uint8Array(prefix.length);
    fs.readSync(fd, head, 0, head.length, 0);
    return Buffer.compare(head, prefix) === 0;
  } finally {
    fs.closeSync(fd);
  }
}

export function writeAt(fd: number, bytes: Uint8Array, position: number): void {
  let done = 0;
  while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done, position + done);
}

/**
 * Opens the files of `out` for writing rows: created at full size (header written, rows zero) when absent, reopened
 * where an interrupted extraction of the same thing left them (same headers, sizes and sidecars), and refused
 * otherwise, naming the file. `completed` is the number of rows already written.
 */
export function openFeatureFile(out: string, info: FeatureFileInfo, files: readonly string[] | undefined, batch = 0) {
  const p = featureFilePaths(out);
  const regions = featureRegions(out, info);
  const infoText = JSON.stringify(info, null, 2) + '\n';
  const filesText = files ? files.join('\n') + '\n' : undefined;
  const uniqueRegions = regions.features.file === regions.labels.file ? [regions.features] : [regions.features, regions.labels];
  /** Why the files on disk are not the start of this very extraction, or undefined when they are. */
  const difference = (): string | undefined => {
    for (const r of uniqueRegions) if (!startsWith(r.file, r.header, r.size)) return `${r.file} has another header or size (another model, data, feature or format)`;
    if (p.info && !(fs.existsSync(p.info) && fs.readFileSync(p.info, 'utf8') === infoText)) return `${p.info} describes other features`;
    if (filesText !== undefined && !(fs.existsSync(p.files) && fs.readFileSync(p.files, 'utf8') === filesText)) return `${p.files} lists other files`;
    return undefined;
  };
  const other = `${out.slice(0, out.length - path.extname(out).length)}.${p.labels ? 'safetensors' : 'npy'}`;
  if (fs.existsSync(other)) throw new Error(`${other} lies beside ${out} and shares its side files (${path.basename(p.files)}): write to another name`);
  let completed = 0;
  if (fs.existsSync(out)) {
    const why = difference();
    if (why !== undefined) throw new Error(`${out} exists and is not this extraction (${why}): remove it${fs.existsSync(p.progress) ? ` and ${p.progress}` : ''}, or write to another file`);
    if (fs.existsSync(p.progress)) {
      const record = JSON.parse(fs.readFileSync(p.progress, 'utf8')) as { completed?: unknown; batch?: unknown };
      // ORT's kernels may round differently for another batch size: continuing with it would not give the same file.
      if (batch && record.batch !== batch) throw new Error(`${out} was started with batch ${JSON.stringify(record.batch)}: continue it with that batch (or remove it and ${p.progress})`);
      if (!(Number.isInteger(record.completed) && (record.completed as number) >= 0 && (record.completed as number) <= info.count)) {
        throw new Error(`${p.progress}: not a progress record (completed rows ${JSON.stringify(record.completed)}): remove it and ${out} to start again`);
      }
      completed = record.completed as number;
    } else {
      completed = info.count; // finished earlier
    }
  } else {
    fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true });
    if (filesText !== undefined) {
      if (files!.some((f) => f.includes('\n'))) throw new Error(`a file name holds a line break (${JSON.stringify(files!.find((f) => f.includes('\n')))}); ${p.files} lists one file per line: rename it`);
      writeFileAtomic(p.files, () => [Buffer.from(filesText, 'utf8')], 'file list');
    }
    if (p.info) writeFileAtomic(p.info, () => [Buffer.from(infoText, 'utf8')], 'feature metadata');
    writeProgress(p.progress, 0, batch);
    for (const r of uniqueRegions) {
      const fd = fs.openSync(r.file, 'w');
      try {
        writeAt(fd, r.header, 0);
        fs.ftruncateSync(fd, r.size);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
  }
  return { regions, completed, progress: p.progress };
}

export function writeProgress(file: string, completed: number, batch: number): void {
  writeFileAtomic(file, () => [Buffer.from(JSON.stringify({ completed, batch }) + '\n')], 'progress record');
}

export /** Row-wise L2 normalisation in place (F.normalize(x, dim=1, p=2): a zero row stays zero). */
function normalizeRows(data: Float32Array, dim: number): void {
  for (let r = 0; r < data.length / dim; r++) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += data[r * dim + j]! ** 2;
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let j = 0; j < dim; j++) data[r * dim + j]! *= inv;
  }
}

/**
 * Writes a whole feature set held in memory to `out` (.safetensors or .npy, with sidecars as {@link featureFilePaths}),
 * replacing any file there: what `knn --dump-features` writes.
 */
export function saveFeatureRows(out: string, rows: FeatureRows, info: Omit<FeatureFileInfo, 'format' | 'count' | 'dim'>): FeatureFileInfo {
  const full: FeatureFileInfo = { format: 'dino-ts-features/1', count: rows.count, dim: rows.dim, ...info };
  const p = featureFilePaths(out);
  for (const f of [p.main, p.labels, p.info, p.progress]) if (f) fs.rmSync(f, { force: true });
  const { features, labels } = openFeatureFile(out, full, undefined).regions;
  const fd = fs.openSync(features.file, 'r+');
  const fdl = labels.file === features.file ? fd : fs.openSync(labels.file, 'r+');
  try {
    writeAt(fd, new Uint8Array(rows.data.buffer, rows.data.byteOffset, rows.count * rows.dim * 4), features.offset);
    writeAt(fdl, new Uint8Array(rows.labels.buffer, rows.labels.byteOffset, rows.count * 4), labels.offset);
    fs.fsyncSync(fd);
    if (fdl !== fd) fs.fsyncSync(fdl);
  } finally {
    fs.closeSync(fd);
    if (fdl !== fd) fs.closeSync(fdl);
  }
  fs.rmSync(p.progress, { force: true });
  return full;
}

// ---- reading --------------------------------------------------------------------------------------------

export interface FeatureFile extends FeatureRows {
  readonly info: FeatureFileInfo;
  /** Row i's file, when the file has a file list beside it. */
  readonly files?: readonly string[];
}

/** Reads a finished feature file (either format, with its sidecars); errors name the file and what is wrong. */
export function readFeatureFile(file: string): FeatureFile {
  const p = featureFilePaths(file);
  if (!fs.existsSync(file)) throw new Error(`${file}: no such feature file; write one with npx dino features --out ${file}`);
  if (fs.existsSync(p.progress)) throw new Error(`${file} is not finished (${p.progress} records the rows done): run the dino features command that wrote it again to finish it`);
  let info: FeatureFileInfo, data: Float32Array, labels: Int32Array;
  if (featureFormat(file) === 'safetensors') {
    const st = readSafetensors(file);
    const raw = st.metadata['dino.features'];
    if (raw === undefined) throw new Error(`${file}: no dino.features metadata; it was not written by dino features`);
    info = JSON.parse(raw) as FeatureFileInfo;
    const f = st.tensors.get('features'), l = st.tensors.get('labels');
    if (!f || !l || f.dtype !== 'float32' || l.dtype !== 'int32') throw new Error(`${file}: expected tensors features (F32) and labels (I32)`);
    [data, labels] = [f.data as Float32Array, l.data as Int32Array];
  } else {
    if (!fs.existsSync(p.info!) || !fs.existsSync(p.labels!)) throw new Error(`${file}: ${p.info} and ${p.labels} must lie beside it (dino features writes them)`);
    info = JSON.parse(fs.readFileSync(p.info!, 'utf8')) as FeatureFileInfo;
    data = readNpy(file, '<f4', [info.count, info.dim]) as Float32Array;
    labels = readNpy(p.labels!, '<i4', [info.count]) as Int32Array;
  }
  if (info.format !== 'dino-ts-features/1' || data.length !== info.count * info.dim || labels.length !== info.count) {
    throw new Error(`${file}: its metadata (${info.count} rows of ${info.dim}) does not match its tensors (${data.length} values, ${labels.length} labels)`);
  }
  const files = info.files && fs.existsSync(p.files) ? fs.readFileSync(p.files, 'utf8').split('\n').slice(0, info.count) : undefined;
  return { count: info.count, dim: info.dim, data, labels, info, ...(files ? { files } : {}) };
}

/** Reads a `.npy` that `npyHeader` wrote (C order, the expected dtype and shape). */
function readNpy(file: string, descr: string, shape: readonly number[]): Float32Array | Int32Array {
  const bytes = fs.readFileSync(file);
  const expect = npyHeader(descr, shape);
  if (Buffer.compare(bytes.subarray(0, expect.length), expect) !== 0) throw new Error(`${file}: expected a ${descr} array of shape (${shape.join(', ')}) as dino features writes it`);
  const body = bytes.subarray(expect.length);
  const copy = new Uint8Array(body); // aligned
  return descr === '<f4' ? new Float32Array(copy.buffer, 0, copy.length / 4) : new Int32Array(copy.buffer, 0, copy.length / 4);
}

/** The rows of split `name` of a feature file (e.g. 'train' as the k-NN bank, 'test' evaluated). */
export function featureSplit(file: FeatureFile, name: string, what = 'the feature file'): FeatureRows {
  let first = 0;
  for (const s of file.info.splits) {
    if (s.name === name) {
      return { count: s.count, dim: file.dim, data: file.data.subarray(first * file.dim, (first + s.count) * file.dim), labels: file.labels.subarray(first, first + s.count) };
    }
    first += s.count;
  }
  throw new Error(`${what} has no ${name} split (it holds ${file.info.splits.map((s) => `${s.name}: ${s.count}`).join(', ')}): write it with dino features --split all`);
}


/**
 * The train and test rows of precomputed features: `source` is a feature file holding both splits (`dino features
 * --split all`), or a folder holding train.safetensors and test.safetensors (what `knn --dump-features` writes).
 */
export function readFeatureSplits(source: string): { train: FeatureRows; test: FeatureRows; classes: readonly string[]; name: string; model: string } {
  if (fs.existsSync(source) && fs.statSync(source).isDirectory()) {
    const [train, test] = ['train', 'test'].map((s) => {
      const file = path.join(source, `${s}.safetensors`);
      if (!fs.existsSync(file)) throw new Error(`${source} holds no ${s}.safetensors: pass a folder written by dino knn --dump-features, or a feature file of dino features`);
      return readFeatureFile(file);
    }) as [FeatureFile, FeatureFile];
    if (train.dim !== test.dim) throw new Error(`${source}: train features have ${train.dim} dims, test features ${test.dim}`);
    const classes = train.info.classes.length >= test.info.classes.length ? train.info.classes : test.info.classes;
    return { train, test, classes, name: train.info.data.replace(/ \(train\)$/, ''), model: train.info.model };
  }
  const file = readFeatureFile(source);
  return { train: featureSplit(file, 'train', source), test: featureSplit(file, 'test', source), classes: file.info.classes, name: file.info.data, model: file.info.model };
}
