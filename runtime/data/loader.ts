/**
 * The training batch iterator: shuffled batches of a dataset's train split, multi-cropped in worker threads while
 * the caller runs its training step. Two kinds of data, one iterator:
 * - a {@link Dataset} in memory (Fashion-MNIST): the workers read its pixels from shared memory;
 * - a {@link FolderIndex} (an image folder): each worker reads and decodes its batch's files itself, per sample and
 *   per epoch (decode.ts), and crops every view from the file at its own size (`multiCropImages`). Memory holds the
 *   index and the batches in flight, never the dataset.
 *
 * Determinism (one seeded PRNG, bit-identical resume: docs/ARCHITECTURE.md, "Runtime"):
 * - epoch e visits the train images in the order of a permutation drawn from `derivePrng(seed, shuffle, e)`;
 * - batch b of epoch e is permutation[b * B .. (b + 1) * B) (the last incomplete batch is dropped), and its global
 *   index is step = e * batchesPerEpoch + b;
 * - its crops come from `derivePrng(seed, augment, step)`, each image's from its own generator forked from that one
 *   in batch order, so they depend only on (seed, step) and the image's position in the batch, not on the number
 *   of workers or which one ran it;
 * - a data-parallel rank (`slice`) takes positions [rank · B/ranks, (rank + 1) · B/ranks) of each batch of B, with
 *   the crops those positions have in the whole batch (its generator skips the forks of the positions before its
 *   own): the ranks' slices, concatenated view by view, are the batch one process draws;
 * - the position (epoch, batch) of the next batch is a plain object: save it, pass it back as `start`, and the
 *   resumed loader yields exactly the batches the first one would have.
 *
 * Workers: `workers` threads (default 1; 0 = augment on the calling thread inside `next()`). Batch `step` goes to
 * worker `step % workers` as soon as it is requested; `workers + prefetch - 1` batches (default prefetch 2) are
 * requested ahead of the one being consumed, so every worker has a batch to make and the next one queued, and no
 * more (backpressure: memory holds at most that many batches). Each worker works through its jobs without waiting
 * for the main thread, which may be busy with a training step. Workers are unref'd while they have no job, so a
 * loader that is never closed does not keep the process alive; still, call `close()` when done.
 *
 * Unreadable files (a folder's file that passed the index's header check but does not decode): without
 * `skipBadImages` the batch fails with a {@link BadImageError} naming the file; with it, the file is reported once
 * (`onSkip`) and replaced, wherever it is drawn, by the next readable file of the index (index + 1, + 2, ...,
 * wrapping): which file that is depends only on the folder, so a resumed run sees the same batches.
 *
 * How the workers run TypeScript: `new Worker(new URL('./augment-worker.ts', import.meta.url))` does not work
 * under `node --import tsx` (nor under the `tsx` CLI, nor after tsx's `register()` as bin/dino.mjs does): node 20
 * does not give worker threads the parent's tsx loader hooks, and the worker fails with ERR_UNKNOWN_FILE_EXTENSION.
 * So each worker is started from a two-line `eval` bootstrap that imports `tsx/esm/api`, calls `register()`, then
 * imports augment-worker.ts. This works in all three launch modes.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { type Dataset, gatherImages } from './dataset.ts';
import { BadImageError, decodeImageSource } from './decode.ts';
import { FolderIndex, type FolderFiles, type ImageSource } from './folder-index.ts';
import { multiCrop, multiCropImages, type AugmentConfig, type MultiCropBatch, type SourceImage } from './multicrop.ts';
import { derivePrng, STREAM } from './seeds.ts';
import type { Prng } from '../../dsl/prng.ts';

/** Loader workers by default: one per core but one (left to the training step's own threads), at least 1. */
export function defaultLoaderWorkers(): number {
  return Math.max(1, availableParallelism() - 1);
}

/**
 * A note when `workers` loader workers would queue for libuv's thread pool, which runs every sharp decode of the
 * process: 4 threads unless UV_THREADPOOL_SIZE is set in the environment when node starts (setting it later has no
 * effect; `npx dino`, bin/dino.cjs, sets it to the core count). Undefined when there is nothing to say.
 */
export function decodeThreadsNote(workers: number): string | undefined {
  const pool = Number(process.env['UV_THREADPOOL_SIZE'] ?? 4);
  if (workers <= pool) return undefined;
  return `note: ${workers} loader workers share libuv's ${pool} threads for JPEG/PNG decoding; to decode on more cores start with UV_THREADPOOL_SIZE=${workers + 1} in the environment`;
}

/** Where a loader stands: the epoch and the index within it of the batch `next()` returns next. JSON-serialisable. */
export interface LoaderPosition {
  readonly epoch: number;
  readonly batch: number;
}

export interface LoaderOptions {
  /** Its train split is iterated: images in memory, or an indexed folder whose files are decoded per sample. */
  dataset: Dataset | FolderIndex;
  /** A folder's images are decoded to this many channels (1: PIL's luma). Default 3; a Dataset has its own. */
  channels?: 1 | 3;
  /** A folder's file that cannot be decoded is replaced (see the module comment) instead of failing the batch. */
  skipBadImages?: boolean;
  /** Called once per file replaced under `skipBadImages`. */
  onSkip?: (file: string, reason: string) => void;
  /** Images per batch; each epoch's last incomplete batch is dropped. */
  batchSize: number;
  /** The run's seed (uint32): shuffling and augmentation derive from it. */
  seed: number;
  augment: AugmentConfig;
  /** Worker threads for augmentation; 0 augments on the calling thread. Default 1. */
  workers?: number;
  /** Batches requested ahead of the one being returned. Default 2. */
  prefetch?: number;
  /** Resume here (from {@link MultiCropLoader.position}). Default: epoch 0, batch 0. */
  start?: LoaderPosition;
  /**
   * Data-parallel: this rank's share of each batch. `batchSize` is then the global batch (epochs, positions and
   * shuffling are the global batch's) and the loader yields images [rank · b, (rank + 1) · b) of it, b = batchSize /
   * ranks, cropped as in the whole batch. Default: the whole batch (rank 0 of 1).
   */
  slice?: { readonly rank: number; readonly ranks: number };
}

/** One training batch: its multi-crop views plus where it came from. */
export interface LoaderBatch extends MultiCropBatch {
  readonly epoch: number;
  /** Index of the batch within its epoch. */
  readonly batch: number;
  /** Global batch index, epoch * batchesPerEpoch + batch: the augmentation stream index. */
  readonly step: number;
  /** Train-split indices of the batch's images, in batch order. */
  readonly indices: Uint32Array;
  /** Their labels (-1 when unknown); DINO does not use them, evaluation and debugging do. */
  readonly labels: Int32Array;
}

/** What a worker needs for a Dataset in memory, sent once at start (the pixels are shared memory, not copied). @internal */
export interface WorkerSetup {
  readonly kind?: 'memory';
  /** The train split's bytes (see ImageSet). */
  readonly pixels: Uint8Array;
  readonly count: number;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly config: AugmentConfig;
  readonly seed: number;
}

/** What a worker needs for a folder: how to decode and crop (the files come with each job). @internal */
export interface FilesSetup {
  readonly kind: 'files';
  readonly channels: 1 | 3;
  readonly config: AugmentConfig;
  readonly seed: number;
}

/** @internal */
export type WorkerInit = WorkerSetup | FilesSetup;

/** @internal */
export interface AugmentJob {
  readonly step: number;
  readonly indices: Uint32Array;
  /** The position of `indices[0]` in its whole batch (a data-parallel rank's slice starts there; else 0). */
  readonly first: number;
  /** For a folder: where the images `indices` name are (files, or ranges of tar shards). */
  readonly sources?: readonly ImageSource[];
}

/** A file of a job that did not decode: its position in the batch and why. @internal */
export interface BadSample {
  readonly position: number;
  readonly file: string;
  readonly reason: string;
}

/** @internal */
export type AugmentResult =
  | { readonly step: number; readonly globals: Float32Array; readonly locals: Float32Array }
  | { readonly step: number; readonly bad: readonly BadSample[] }
  | { readonly step: number; readonly error: string };

/**
 * The augmentation generator of the images from position `first` of batch `step`: the batch's stream with the
 * per-image forks of positions 0 .. first - 1 drawn and dropped (multiCrop forks one generator per image, in batch
 * order), so a slice's images get the crops they have in the whole batch.
 */
export function augmentStream(seed: number, step: number, first = 0): Prng {
  const prng = derivePrng(seed, STREAM.augment, step);
  for (let i = 0; i < first; i++) prng.fork();
  return prng;
}

/** The crops of batch `step` made of in-memory train images `indices` (from position `first` of the batch). @internal */
export function augmentBatch(setup: WorkerSetup, step: number, indices: Uint32Array, first = 0): MultiCropBatch {
  const { channels, height, width } = setup;
  const images = { count: indices.length, channels, height, width, pixels: gatherImages(setup, setup, indices) };
  return multiCrop(images, setup.config, augmentStream(setup.seed, step, first));
}

/**
 * The crops of batch `step` made of the image files `files` (decoded here, at their own size), or the files that
 * could not be decoded. @internal
 */
export async function augmentFiles(setup: FilesSetup, step: number, sources: readonly ImageSource[], first = 0): Promise<MultiCropBatch | BadSample[]> {
  const decoded = await Promise.allSettled(sources.map((source) => decodeImageSource(source, setup.channels)));
  const bad: BadSample[] = [];
  decoded.forEach((d, position) => {
    if (d.status === 'rejected') {
      const e = d.reason as Error;
      bad.push({ position, file: sources[position]!.name, reason: e instanceof BadImageError ? e.reason : e.message });
    }
  });
  if (bad.length) return bad;
  const images = decoded.map((d) => (d as PromiseFulfilledResult<SourceImage>).value);
  return multiCropImages(images, setup.config, augmentStream(setup.seed, step, first));
}

/** The train-split indices of epoch `epoch`, in visiting order. */
export function epochPermutation(seed: number, epoch: number, count: number): Uint32Array {
  return derivePrng(seed, STREAM.shuffle, epoch).permutation(count);
}

/**
 * The visiting order of epoch `epoch` over images in tar shards: the shards in a random order, and inside each its
 * images in a random order, so a batch reads from one or two shards. Depends only on (seed, epoch) and the index.
 */
export function shardedEpochOrder(seed: number, epoch: number, files: FolderFiles): Uint32Array {
  const groups = new Map<number, number[]>();
  for (let i = 0; i < files.count; i++) {
    const shard = files.shard(i)!;
    let group = groups.get(shard);
    if (group === undefined) groups.set(shard, (group = []));
    group.push(i);
  }
  const shards = [...groups.keys()];
  const prng = derivePrng(seed, STREAM.shuffle, epoch);
  const order = new Uint32Array(files.count);
  let at = 0;
  for (const s of prng.permutation(shards.length)) {
    const group = groups.get(shards[s]!)!;
    for (const k of prng.permutation(group.length)) order[at++] = group[k]!;
  }
  return order;
}

interface Pending {
  readonly step: number;
  /** The batch's train indices; under skipBadImages, unreadable files are replaced here before it is resolved. */
  indices: Uint32Array;
  readonly promise: Promise<LoaderBatch>;
  resolve(batch: LoaderBatch): void;
  reject(error: Error): void;
}

/** Iterates multi-crop training batches forever (epoch after epoch); see the module comment. */
export class MultiCropLoader implements AsyncIterable<LoaderBatch> {
  /** Full batches per epoch: floor(train count / batch size). */
  readonly batchesPerEpoch: number;
  private readonly setup: WorkerInit;
  private readonly labels: Int32Array;
  /** The folder's train files (undefined for a Dataset in memory). */
  private readonly files: FolderIndex['train'] | undefined;
  private readonly skipBadImages: boolean;
  private readonly onSkip: ((file: string, reason: string) => void) | undefined;
  /** Train indices found unreadable (under skipBadImages), with why. */
  private readonly bad = new Map<number, string>();
  private readonly count: number;
  /** The global batch: epochs and positions count it. */
  private readonly batchSize: number;
  /** This rank's images of each batch: positions [first, first + rankBatch). */
  private readonly first: number;
  private readonly rankBatch: number;
  /** Batches requested beyond the one being returned. */
  private readonly ahead: number;
  private nextStep: number;
  private readonly permutations = new Map<number, Uint32Array>();
  /** Requested batches not yet returned by `next()`, by step. */
  private readonly requested = new Map<number, Pending>();
  /** Sent to a worker and not answered yet, by step (includes batches `next()` already returned a promise for). */
  private readonly inFlight = new Map<number, Pending>();
  private readonly workers: Worker[] = [];
  /** Jobs each worker has not answered yet: a worker is ref'd (keeps the process alive) only while it has some. */
  private readonly outstanding: number[] = [];
  private failure: Error | undefined;
  private closed = false;

  constructor(options: LoaderOptions) {
    const { dataset, batchSize, seed } = options;
    const train = dataset.train;
    const isFolder = dataset instanceof FolderIndex;
    const channels = isFolder ? (options.channels ?? 3) : dataset.channels;
    if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new Error(`batch size must be a positive integer, got ${batchSize}`);
    if (train.count < batchSize) throw new Error(`${dataset.name}: the train split has ${train.count} images, fewer than one batch of ${batchSize}`);
    const workers = options.workers ?? 1;
    const prefetch = options.prefetch ?? 2;
    if (!(Number.isInteger(workers) && workers >= 0)) throw new Error(`workers must be a non-negative integer, got ${workers}`);
    if (!(Number.isInteger(prefetch) && prefetch >= 0)) throw new Error(`prefetch must be a non-negative integer, got ${prefetch}`);
    if (channels !== 1 && channels !== 3) throw new Error(`channels must be 1 or 3, got ${String(channels)}`);
    const { mean, std } = options.augment;
    if (![1, channels].includes(mean.length) || std.length !== mean.length) {
      throw new Error(`augmentation mean/std have ${mean.length}/${std.length} values for ${channels}-channel images: give 1 or ${channels}`);
    }
    const slice = options.slice ?? { rank: 0, ranks: 1 };
    if (!(Number.isInteger(slice.ranks) && slice.ranks >= 1 && Number.isInteger(slice.rank) && slice.rank >= 0 && slice.rank < slice.ranks)) {
      throw new Error(`slice: rank ${slice.rank} of ${slice.ranks} ranks does not exist`);
    }
    if (batchSize % slice.ranks !== 0) throw new Error(`the batch of ${batchSize} images does not split into ${slice.ranks} equal rank slices: give a multiple of ${slice.ranks}`);
    this.rankBatch = batchSize / slice.ranks;
    this.first = slice.rank * this.rankBatch;
    this.batchesPerEpoch = Math.floor(train.count / batchSize);
    const start = options.start ?? { epoch: 0, batch: 0 };
    if (!(Number.isInteger(start.epoch) && start.epoch >= 0 && Number.isInteger(start.batch) && start.batch >= 0 && start.batch < this.batchesPerEpoch)) {
      throw new Error(`cannot resume at ${JSON.stringify(start)}: an epoch has batches 0..${this.batchesPerEpoch - 1} of ${batchSize}`);
    }
    this.nextStep = start.epoch * this.batchesPerEpoch + start.batch;
    this.batchSize = batchSize;
    this.count = train.count;
    this.ahead = Math.max(0, prefetch + workers - 1);
    this.skipBadImages = options.skipBadImages ?? false;
    this.onSkip = options.onSkip;
    if (isFolder) {
      this.files = dataset.train;
      this.labels = dataset.train.labels();
      this.setup = { kind: 'files', channels, config: options.augment, seed: seed >>> 0 };
    } else {
      this.files = undefined;
      this.labels = dataset.train.labels;
      // Workers read the pixels from shared memory; copy them there once if the dataset did not put them there.
      let pixels = dataset.train.pixels;
      if (!(pixels.buffer instanceof SharedArrayBuffer)) {
        pixels = new Uint8Array(new SharedArrayBuffer(dataset.train.pixels.byteLength));
        pixels.set(dataset.train.pixels);
      }
      this.setup = { kind: 'memory', pixels, count: train.count, channels, height: dataset.height, width: dataset.width, config: options.augment, seed: seed >>> 0 };
    }
    for (let i = 0; i < workers; i++) this.startWorker();
  }

  /**
   * Batches requested beyond those `next()` returned (being made, or made and waiting): `workers + prefetch - 1`
   * once the loader runs, never more; this bounds the loader's memory (backpressure).
   */
  batchesAhead(): number {
    return this.requested.size;
  }

  /** Files replaced so far under skipBadImages, with why. */
  skipped(): { file: string; reason: string }[] {
    return [...this.bad].map(([i, reason]) => ({ file: this.files!.file(i), reason }));
  }

  /** The position of the batch the next `next()` returns; pass it as `start` to resume there. */
  position(): LoaderPosition {
    return { epoch: Math.floor(this.nextStep / this.batchesPerEpoch), batch: this.nextStep % this.batchesPerEpoch };
  }

  /** The next batch; also requests the following `prefetch` batches so workers stay busy. */
  next(): Promise<LoaderBatch> {
    if (this.closed) return Promise.reject(new Error('the loader is closed'));
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const step = this.nextStep++;
    if (this.workers.length === 0) return this.inThread(step);
    for (let s = step; s <= step + this.ahead; s++) this.request(s);
    const pending = this.requested.get(step)!;
    this.requested.delete(step);
    return pending.promise;
  }

  /** Batch `step` made on this thread (no workers). */
  private async inThread(step: number): Promise<LoaderBatch> {
    let indices = this.indicesOf(step);
    if (this.setup.kind !== 'files') return this.toBatch(step, indices, augmentBatch(this.setup, step, indices, this.first));
    for (;;) {
      const crops = await augmentFiles(this.setup, step, this.sourcesOf(indices), this.first);
      if (!Array.isArray(crops)) return this.toBatch(step, indices, crops);
      indices = this.replaceBad(indices, crops);
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<LoaderBatch> {
    for (;;) yield await this.next();
  }

  /** Stops the workers; batches still being computed are abandoned. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const abandoned = new Error('the loader was closed');
    for (const pending of new Set([...this.requested.values(), ...this.inFlight.values()])) pending.reject(abandoned);
    this.requested.clear();
    this.inFlight.clear();
    // An unref'd worker's exit does not keep the event loop alive: ref them, or awaiting terminate() can end the
    // process (exit code 13, unsettled top-level await).
    await Promise.all(this.workers.map((w) => { w.ref(); return w.terminate(); }));
  }

  private indicesOf(step: number): Uint32Array {
    const epoch = Math.floor(step / this.batchesPerEpoch);
    const batch = step % this.batchesPerEpoch;
    let permutation = this.permutations.get(epoch);
    if (permutation === undefined) {
      permutation = this.files?.shard(0) !== undefined ? shardedEpochOrder(this.setup.seed, epoch, this.files) : epochPermutation(this.setup.seed, epoch, this.count);
      this.permutations.set(epoch, permutation);
      // Keep only the epochs still reachable: the current one and what prefetch reaches.
      const oldest = Math.floor(this.nextStep / this.batchesPerEpoch) - 1;
      for (const e of this.permutations.keys()) if (e < oldest) this.permutations.delete(e);
    }
    const from = batch * this.batchSize + this.first;
    return this.withoutKnownBad(permutation.slice(from, from + this.rankBatch));
  }

  private sourcesOf(indices: Uint32Array): ImageSource[] {
    return Array.from(indices, (i) => this.files!.source(i));
  }

  /** `indices` with every file known to be unreadable replaced by the next index not known to be. */
  private withoutKnownBad(indices: Uint32Array): Uint32Array {
    if (this.bad.size === 0) return indices;
    return indices.map((i) => {
      let j = i;
      for (let tries = 0; this.bad.has(j); tries++) {
        if (tries >= this.count) throw new Error('every file of the folder is unreadable');
        j = (j + 1) % this.count;
      }
      return j;
    });
  }

  /**
   * Records the `bad` samples of a batch (or throws a BadImageError naming the first, without skipBadImages) and
   * returns the batch's indices with them replaced.
   */
  private replaceBad(indices: Uint32Array, bad: readonly BadSample[]): Uint32Array {
    if (!this.skipBadImages) throw new BadImageError(bad[0]!.file, bad[0]!.reason);
    for (const b of bad) {
      const index = indices[b.position]!;
      if (this.bad.has(index)) continue;
      this.bad.set(index, b.reason);
      this.onSkip?.(b.file, b.reason);
    }
    return this.withoutKnownBad(indices);
  }

  private toBatch(step: number, indices: Uint32Array, crops: MultiCropBatch): LoaderBatch {
    const labels = Int32Array.from(indices, (i) => this.labels[i]!);
    return {
      ...crops,
      epoch: Math.floor(step / this.batchesPerEpoch),
      batch: step % this.batchesPerEpoch,
      step,
      indices,
      labels,
    };
  }

  private request(step: number): void {
    if (this.requested.has(step) || step < this.nextStep - 1) return;
    let resolve!: (batch: LoaderBatch) => void;
    let reject!: (error: Error) => void;
    const promise = new Promise<LoaderBatch>((res, rej) => { resolve = res; reject = rej; });
    promise.catch(() => undefined); // a prefetched batch may fail before anyone awaits it
    const pending: Pending = { step, indices: this.indicesOf(step), promise, resolve, reject };
    this.requested.set(step, pending);
    this.inFlight.set(step, pending);
    const w = step % this.workers.length;
    if (this.outstanding[w]!++ === 0) this.workers[w]!.ref(); // keep the process alive while a batch is computed
    this.post(w, pending);
  }

  private post(w: number, pending: Pending): void {
    const job: AugmentJob = { step: pending.step, indices: pending.indices, first: this.first, ...(this.files ? { sources: this.sourcesOf(pending.indices) } : {}) };
    this.workers[w]!.postMessage(job);
  }

  private startWorker(): void {
    const workerUrl = new URL('./augment-worker.ts', import.meta.url).href;
    const tsxApiUrl = import.meta.resolve('tsx/esm/api');
    const bootstrap =
      `import(${JSON.stringify(tsxApiUrl)}).then(({ register }) => { register(); return import(${JSON.stringify(workerUrl)}); });`;
    const worker = new Worker(bootstrap, { eval: true, workerData: this.setup });
    worker.unref();
    const w = this.workers.length;
    worker.on('message', (result: AugmentResult) => this.onResult(w, result));
    worker.on('error', (error) => this.fail(new Error(`augmentation worker failed: ${error.stack ?? error.message}`)));
    worker.on('exit', (code) => {
      if (!this.closed) this.fail(new Error(`augmentation worker exited with code ${code}`));
    });
    this.workers.push(worker);
    this.outstanding.push(0);
  }

  private onResult(w: number, result: AugmentResult): void {
    if (this.closed) return; // a result that was already queued when close() ref'd the workers to await their exit
    const pending = this.inFlight.get(result.step);
    if (pending !== undefined && 'bad' in result) {
      // Replace the unreadable files and send the batch again to the same worker (still outstanding there).
      try {
        pending.indices = this.replaceBad(pending.indices, result.bad);
      } catch (error) {
        this.inFlight.delete(result.step);
        if (--this.outstanding[w]! === 0) this.workers[w]!.unref();
        pending.reject(error as Error);
        return;
      }
      this.post(w, pending);
      return;
    }
    if (--this.outstanding[w]! === 0) this.workers[w]!.unref();
    this.inFlight.delete(result.step);
    if (pending === undefined || 'bad' in result) return; // not expected: every job posted is in flight until answered
    if ('error' in result) {
      pending.reject(new Error(`augmenting batch ${result.step} failed in a worker: ${result.error}`));
      return;
    }
    const c = this.setup.config;
    const crops: MultiCropBatch = {
      batchSize: pending.indices.length, channels: this.setup.channels, globalSize: c.globalSize, localSize: c.localSize,
      localCrops: c.localCrops, globals: result.globals, locals: result.locals,
    };
    pending.resolve(this.toBatch(pending.step, pending.indices, crops));
  }

  private fail(error: Error): void {
    if (this.closed || this.failure !== undefined) return;
    this.failure = error;
    for (const pending of new Set([...this.requested.values(), ...this.inFlight.values()])) pending.reject(error);
    this.requested.clear();
    this.inFlight.clear();
    void Promise.all(this.workers.map((w) => w.terminate()));
  }
}
