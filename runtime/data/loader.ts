/**
 * The training batch iterator: shuffled batches of a dataset's train split, multi-cropped in worker threads while
 * the caller runs its training step.
 *
 * Determinism (one seeded PRNG, bit-identical resume: docs/ARCHITECTURE.md, "Runtime"):
 * - epoch e visits the train images in the order of a permutation drawn from `derivePrng(seed, shuffle, e)`;
 * - batch b of epoch e is permutation[b * B .. (b + 1) * B) (the last incomplete batch is dropped), and its global
 *   index is step = e * batchesPerEpoch + b;
 * - its crops come from `derivePrng(seed, augment, step)`, so they depend only on (seed, step), not on the number
 *   of workers or which one ran it;
 * - the position (epoch, batch) of the next batch is a plain object: save it, pass it back as `start`, and the
 *   resumed loader yields exactly the batches the first one would have.
 *
 * Workers: `workers` threads (default 1; 0 = augment on the calling thread inside `next()`). Batch `step` goes to
 * worker `step % workers` as soon as it is requested, up to `prefetch` batches (default 2) ahead of the one being
 * consumed; each worker works through its jobs in order without waiting for the main thread, which may be busy
 * with a training step. Workers are unref'd while they have no job, so a loader that is never closed does not keep
 * the process alive; still, call `close()` when done.
 *
 * How the workers run TypeScript: `new Worker(new URL('./augment-worker.ts', import.meta.url))` does not work
 * under `node --import tsx` (nor under the `tsx` CLI, nor after tsx's `register()` as bin/dino.mjs does): node 20
 * does not give worker threads the parent's tsx loader hooks, and the worker fails with ERR_UNKNOWN_FILE_EXTENSION.
 * So each worker is started from a two-line `eval` bootstrap that imports `tsx/esm/api`, calls `register()`, then
 * imports augment-worker.ts. This works in all three launch modes.
 */
import { Worker } from 'node:worker_threads';
import { type Dataset, gatherImages } from './dataset.ts';
import { multiCrop, type AugmentConfig, type MultiCropBatch } from './multicrop.ts';
import { derivePrng, STREAM } from './seeds.ts';

/** Where a loader stands: the epoch and the index within it of the batch `next()` returns next. JSON-serialisable. */
export interface LoaderPosition {
  readonly epoch: number;
  readonly batch: number;
}

export interface LoaderOptions {
  /** Its train split is iterated. */
  dataset: Dataset;
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

/** What a worker needs, sent once at start (the pixels are shared memory, not copied). @internal */
export interface WorkerSetup {
  /** The train split's bytes (see ImageSet). */
  readonly pixels: Uint8Array;
  readonly count: number;
  readonly channels: number;
  readonly height: number;
  readonly width: number;
  readonly config: AugmentConfig;
  readonly seed: number;
}

/** @internal */
export interface AugmentJob {
  readonly step: number;
  readonly indices: Uint32Array;
}

/** @internal */
export type AugmentResult =
  | { readonly step: number; readonly globals: Float32Array; readonly locals: Float32Array }
  | { readonly step: number; readonly error: string };

/** The crops of batch `step` made of train images `indices`: the one function both threads run. @internal */
export function augmentBatch(setup: WorkerSetup, step: number, indices: Uint32Array): MultiCropBatch {
  const { channels, height, width } = setup;
  const images = { count: indices.length, channels, height, width, pixels: gatherImages(setup, setup, indices) };
  return multiCrop(images, setup.config, derivePrng(setup.seed, STREAM.augment, step));
}

/** The train-split indices of epoch `epoch`, in visiting order. */
export function epochPermutation(seed: number, epoch: number, count: number): Uint32Array {
  return derivePrng(seed, STREAM.shuffle, epoch).permutation(count);
}

interface Pending {
  readonly step: number;
  readonly indices: Uint32Array;
  readonly promise: Promise<LoaderBatch>;
  resolve(batch: LoaderBatch): void;
  reject(error: Error): void;
}

/** Iterates multi-crop training batches forever (epoch after epoch); see the module comment. */
export class MultiCropLoader implements AsyncIterable<LoaderBatch> {
  /** Full batches per epoch: floor(train count / batch size). */
  readonly batchesPerEpoch: number;
  private readonly setup: WorkerSetup;
  private readonly labels: Int32Array;
  private readonly batchSize: number;
  private readonly prefetch: number;
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
    if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new Error(`batch size must be a positive integer, got ${batchSize}`);
    if (train.count < batchSize) throw new Error(`${dataset.name}: the train split has ${train.count} images, fewer than one batch of ${batchSize}`);
    const workers = options.workers ?? 1;
    const prefetch = options.prefetch ?? 2;
    if (!(Number.isInteger(workers) && workers >= 0)) throw new Error(`workers must be a non-negative integer, got ${workers}`);
    if (!(Number.isInteger(prefetch) && prefetch >= 0)) throw new Error(`prefetch must be a non-negative integer, got ${prefetch}`);
    const { mean, std } = options.augment;
    if (![1, dataset.channels].includes(mean.length) || std.length !== mean.length) {
      throw new Error(`augmentation mean/std have ${mean.length}/${std.length} values for ${dataset.channels}-channel images: give 1 or ${dataset.channels}`);
    }
    this.batchesPerEpoch = Math.floor(train.count / batchSize);
    const start = options.start ?? { epoch: 0, batch: 0 };
    if (!(Number.isInteger(start.epoch) && start.epoch >= 0 && Number.isInteger(start.batch) && start.batch >= 0 && start.batch < this.batchesPerEpoch)) {
      throw new Error(`cannot resume at ${JSON.stringify(start)}: an epoch has batches 0..${this.batchesPerEpoch - 1} of ${batchSize}`);
    }
    this.nextStep = start.epoch * this.batchesPerEpoch + start.batch;
    this.batchSize = batchSize;
    this.prefetch = prefetch;
    this.labels = train.labels;
    // Workers read the pixels from shared memory; copy them there once if the dataset did not put them there.
    let pixels = train.pixels;
    if (!(pixels.buffer instanceof SharedArrayBuffer)) {
      pixels = new Uint8Array(new SharedArrayBuffer(train.pixels.byteLength));
      pixels.set(train.pixels);
    }
    this.setup = { pixels, count: train.count, channels: dataset.channels, height: dataset.height, width: dataset.width, config: options.augment, seed: seed >>> 0 };
    for (let i = 0; i < workers; i++) this.startWorker();
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
    if (this.workers.length === 0) {
      try {
        const indices = this.indicesOf(step);
        return Promise.resolve(this.toBatch(step, indices, augmentBatch(this.setup, step, indices)));
      } catch (error) {
        return Promise.reject(error as Error);
      }
    }
    for (let s = step; s <= step + this.prefetch; s++) this.request(s);
    const pending = this.requested.get(step)!;
    this.requested.delete(step);
    return pending.promise;
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
      permutation = epochPermutation(this.setup.seed, epoch, this.setup.count);
      this.permutations.set(epoch, permutation);
      // Keep only the epochs still reachable: the current one and what prefetch reaches.
      const oldest = Math.floor(this.nextStep / this.batchesPerEpoch) - 1;
      for (const e of this.permutations.keys()) if (e < oldest) this.permutations.delete(e);
    }
    return permutation.slice(batch * this.batchSize, (batch + 1) * this.batchSize);
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
    const job: AugmentJob = { step, indices: pending.indices };
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
    if (--this.outstanding[w]! === 0) this.workers[w]!.unref();
    const pending = this.inFlight.get(result.step);
    this.inFlight.delete(result.step);
    if (pending === undefined) return; // not expected: every job posted is in flight until answered
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
