/**
 * What the evaluations (k-NN, linear probe, report, demo) share: the typed errors of their options, and the data
 * they run on. By default that is the run's own data, as its `config.json` records it (runtime/data/source.ts):
 * - Fashion-MNIST: the train split is the memory bank / probe training set, the test split is evaluated (as before);
 * - an image folder with a validation folder: every image of the folder (its `train/` sub-folder when it has the
 *   train/test layout) against every image of the validation folder, classes matched by name;
 * - a run's image folder alone: the folder's own `test/` (or `val/`) sub-folder next to `train/`; for a plain folder,
 *   the files training held out (`--holdout F`, recorded in config.json as `holdout`); a run that trained on every
 *   image of a plain folder has no held-out images, and evaluating it without a validation folder is refused;
 * - an image folder given explicitly (`dataset`), not a run's: its `test/` (or `val/`) sub-folder, otherwise in each
 *   class every 10th file by sorted path (positions 10, 20, ...) is evaluated and the other 90% are the bank.
 * A folder is split here as lists of files ({@link evalFolder}); the evaluations stream its images batch by batch
 * through DINO's eval transform (exports/evaluation/features.ts `evalImages`), so only features are held in memory.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RunFolder } from '../../runtime/dino/run-folder.ts';
import { type FolderFiles, type FolderIndex, indexImageFolder } from '../../runtime/data/folder-index.ts';
import { type DataSource, parseDataSource } from '../../runtime/data/source.ts';
import { isShardPattern } from '../../runtime/data/tar-shards.ts';
import type { ExportInfo } from '../export/teacher.ts';

/** What the evaluation data needs of a model: its channels and input size (a ViT export's or a backbone export's info). */
export type EvalModelInfo = { readonly backbone: Pick<ExportInfo['backbone'], 'inChans' | 'imgSize'>; readonly imageSize: readonly [number, number] | null };

export type { DataSource } from '../../runtime/data/source.ts';

/** An evaluation option out of range; `option` is the library option's name (the CLI words it as its flag). */
export class EvalOptionError extends Error {
  constructor(readonly option: string, readonly value: unknown, readonly requirement: string) {
    super(`${option} must be ${requirement}, got ${JSON.stringify(value)}`);
    this.name = 'EvalOptionError';
  }
}

/** The evaluation data cannot be found or used; `kind` says why, the fields say which folder and run. */
export class EvalDataError extends Error {
  constructor(
    readonly problem:
      | { readonly kind: 'missing'; readonly folder: string; readonly role: 'data' | 'val'; readonly run?: string }
      | { readonly kind: 'no-held-out'; readonly folder: string }
      /** A run trained on every image of a plain folder: nothing is held out for it. */
      | { readonly kind: 'no-split'; readonly folder: string; readonly run: string }
      | { readonly kind: 'channels'; readonly channels: number; readonly run?: string }
      | { readonly kind: 'record'; readonly file: string; readonly detail: string },
  ) {
    super(evalDataMessage(problem));
    this.name = 'EvalDataError';
  }
}

function evalDataMessage(p: EvalDataError['problem']): string {
  switch (p.kind) {
    case 'missing':
      return p.run
        ? `${p.folder} not found: run ${p.run} was trained on it (its config.json records it as the ${p.role === 'val' ? 'validation folder' : 'data folder'}); restore it there, or pass the data to evaluate on (dataset: FOLDER${p.role === 'val' ? ', val: FOLDER' : ''})`
        : `${p.role === 'val' ? 'validation' : 'image'} folder ${p.folder} not found: check the path`;
    case 'no-held-out':
      return `${p.folder} has no held-out images (a class needs at least 10 images for every 10th to be held out, or the folder train/ and test/ sub-folders): pass a validation folder (val: FOLDER)`;
    case 'no-split':
      return `run ${p.run} trained on every image of ${p.folder}, so none is held out for evaluation: pass a validation folder (val: FOLDER), lay the data out as FOLDER/train + FOLDER/val, or train with a holdout (holdout: F, e.g. 0.1)`;
    case 'channels':
      return p.run
        ? `run ${p.run} records no data folder in its config.json (written before runs recorded their data) and its model takes ${p.channels}-channel images, so the Fashion-MNIST default cannot apply: pass the image folder it was trained on (dataset: FOLDER)`
        : `the model takes ${p.channels}-channel images and Fashion-MNIST is grayscale: pass an image folder (dataset: FOLDER)`;
    case 'record':
      return `${p.file}: ${p.detail}`;
  }
}

/** Where the evaluation data comes from; every field optional. */
export interface EvalDataOptions {
  /** The run folder: its recorded data is the default. */
  readonly run?: string;
  /** 'fmnist' or an image folder, instead of the run's data (the default without a run: 'fmnist'). */
  readonly dataset?: string;
  /** A folder of held-out images to evaluate on, instead of the run's or the folder's held-out split. */
  readonly val?: string;
  /** Leave out files that cannot be decoded instead of throwing. Default false. */
  readonly skipBadImages?: boolean;
  readonly log?: (msg: string) => void;
}

/** The data source `DIR/config.json` records (key `data`); config files without it mean Fashion-MNIST. */
export function runDataSource(runDir: string): DataSource {
  const cfg = new RunFolder(runDir).readConfig() as unknown as Record<string, unknown>; // any backbone's run
  const parsed = parseDataSource(cfg['data']);
  if (typeof parsed === 'string') throw new EvalDataError({ kind: 'record', file: new RunFolder(runDir).configFile, detail: parsed });
  // `dino train --holdout F` records the fraction next to the data path (TrainConfig.holdout).
  const holdout = cfg['holdout'];
  if (parsed.kind === 'folder' && parsed.holdout === undefined && typeof holdout === 'number') return { ...parsed, holdout };
  return parsed;
}

/** What to evaluate on: `dataset` (with `val`), else the run's data (with `val` replacing its own), else Fashion-MNIST. */
export function evalDataSource(opts: Pick<EvalDataOptions, 'run' | 'dataset' | 'val'>): DataSource & { readonly run?: string } {
  let src: DataSource & { readonly run?: string };
  if (opts.dataset !== undefined) {
    src = opts.dataset === 'fmnist' || opts.dataset === 'fashion-mnist' ? { kind: 'fmnist' } : { kind: 'folder', path: opts.dataset };
  } else if (opts.run !== undefined) {
    src = { ...runDataSource(opts.run), run: opts.run };
  } else {
    src = { kind: 'fmnist' };
  }
  if (opts.val !== undefined) {
    if (src.kind === 'fmnist') throw new EvalOptionError('val', opts.val, 'used with image-folder data (Fashion-MNIST has its own test split)');
    src = { ...src, val: opts.val };
  }
  return src;
}

/** One split of an indexed folder, or the files of a validation folder, as rows of a folder source. */
export interface FolderRows {
  readonly name: 'train' | 'test';
  readonly files: FolderFiles;
  /** Maps the list's labels into the source's classes (a validation folder's own class order differs). */
  readonly label?: (i: number) => number;
}

/**
 * An image folder split for evaluation (see the module comment) as lists of files, not pixels: `train` is the memory
 * bank / probe training set, `test` is evaluated (each a list of parts: a validation folder's train/ then val/).
 */
export interface EvalFolder {
  /** The data's name in tables: the folder's base name, with the validation folder's. */
  readonly name: string;
  /** The data folder (file names of feature files are relative to it). */
  readonly root: string;
  /** The bank's classes, then the validation folder's classes the bank lacks. */
  readonly classes: readonly string[];
  readonly train: readonly FolderRows[];
  readonly test: readonly FolderRows[];
}

/** An indexed folder's own splits as an {@link EvalFolder}: its train split is the bank, its test split is evaluated. */
export function indexEvalFolder(index: FolderIndex): EvalFolder {
  return { name: index.name, root: index.root, classes: index.classes, train: [{ name: 'train', files: index.train }], test: [{ name: 'test', files: index.test }] };
}

/**
 * The folder of `src` (evalDataSource's, a folder) split for evaluation: a run's own folder by the holdout its training
 * recorded (or its train/ + val/ layout), a folder given by every 10th file of each class (or its layout); with a
 * validation folder, every file of the data folder's train split against every file of the validation folder,
 * classes matched by name. Only the folder index is read (file headers), never the pixels.
 * @throws EvalDataError when a folder is missing, or (unless `use.needTest` is false) nothing is held out.
 */
export async function evalFolder(
  src: Extract<ReturnType<typeof evalDataSource>, { kind: 'folder' }>,
  opts: Pick<EvalDataOptions, 'dataset' | 'val' | 'skipBadImages' | 'log'>,
  use: { readonly needTest?: boolean } = {},
): Promise<EvalFolder> {
  const run = opts.dataset === undefined ? src.run : undefined;
  if (isShardPattern(src.path)) {
    throw new Error(`${src.path}: evaluation reads image folders, not tar shards (training streams those); pass an image folder to evaluate on (dataset: FOLDER, with val: FOLDER if it has no split)`);
  }
  const check = (folder: string, role: 'data' | 'val', recorded: boolean) => {
    if (!fs.existsSync(folder) || !fs.statSync(folder).isDirectory()) throw new EvalDataError({ kind: 'missing', folder, role, ...(recorded && run ? { run } : {}) });
  };
  check(src.path, 'data', true);
  if (src.val !== undefined) check(src.val, 'val', opts.val === undefined);
  const skipBadImages = opts.skipBadImages ?? false;
  const index = async (folder: string, holdout: number): Promise<FolderIndex> => {
    const r = await indexImageFolder(folder, { skipBadImages, holdout });
    if (r.skipped.length) opts.log?.(`skipped ${r.skipped.length} unreadable image(s) in ${folder}, e.g. ${r.skipped[0]!.file}: ${r.skipped[0]!.reason}`);
    return r;
  };
  if (src.val === undefined) {
    // A run's own folder: the files its training held out (none without a holdout); a folder given: every 10th.
    const data = await index(src.path, run !== undefined ? src.holdout ?? 0 : 0.1);
    if (data.test.count === 0 && use.needTest !== false) {
      throw new EvalDataError(run !== undefined && !src.holdout ? { kind: 'no-split', folder: src.path, run } : { kind: 'no-held-out', folder: src.path });
    }
    return indexEvalFolder(data);
  }
  // Every file of the data folder's train split is in the bank, every file of the validation folder is evaluated.
  const bank = await index(src.path, 0);
  const val = await index(src.val, 0);
  const extra = val.classes.filter((c) => !bank.classes.includes(c));
  if (extra.length) opts.log?.(`${src.val}: class(es) ${extra.join(', ')} have no images in ${src.path}; their images count as misclassified`);
  const classes = [...bank.classes, ...extra];
  const toBank = (files: FolderFiles) => (i: number) => (files.label(i) < 0 ? -1 : classes.indexOf(val.classes[files.label(i)]!));
  // The validation folder's files in order: its train/ (or all of it), then its val/ or test/.
  const test = [val.train, val.test].filter((f) => f.count > 0).map((files): FolderRows => ({ name: 'test', files, label: toBank(files) }));
  return { name: `${bank.name} (val: ${val.name})`, root: bank.root, classes, train: [{ name: 'train', files: bank.train }], test };
}
