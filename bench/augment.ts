/**
 * Multi-crop augmentation timed on its own (the training step is timed without it): DINO's crops of one batch
 * of Fashion-MNIST train images on the calling thread, as one loader worker computes them.
 */
import type { Dataset } from '../runtime/data/dataset.ts';
import { type WorkerSetup, augmentBatch, epochPermutation } from '../runtime/data/loader.ts';
import type { AugmentConfig, MultiCropBatch } from '../runtime/data/multicrop.ts';
import { timeRepeated } from './measure.ts';

export interface AugmentBenchResult {
  /** Median wall time to crop one batch, ms (one thread). */
  readonly msPerBatch: number;
  readonly batches: number;
  /** The first timed batch's crops, to feed the training step. */
  readonly crops: MultiCropBatch;
}

export async function benchAugment(dataset: Dataset, augment: AugmentConfig, batch: number, opts: { seed?: number; warmup?: number; reps?: number } = {}): Promise<AugmentBenchResult> {
  const seed = opts.seed ?? 0;
  const train = dataset.train;
  if (train.count < batch) throw new Error(`${dataset.name}: ${train.count} train images, fewer than one batch of ${batch}`);
  const setup: WorkerSetup = {
    pixels: train.pixels, count: train.count, channels: dataset.channels, height: dataset.height, width: dataset.width, config: augment, seed,
  };
  const order = epochPermutation(seed, 0, train.count);
  const perEpoch = Math.floor(train.count / batch);
  const indicesOf = (step: number) => order.slice((step % perEpoch) * batch, ((step % perEpoch) + 1) * batch);
  let crops: MultiCropBatch | undefined;
  const reps = opts.reps ?? 5;
  const t = await timeRepeated((rep) => {
    const step = rep < 0 ? -rep : reps + rep; // warm-up and timed batches are distinct batches
    const out = augmentBatch(setup, step, indicesOf(step));
    crops ??= out;
  }, opts.warmup ?? 1, reps);
  return { msPerBatch: t.medianMs, batches: reps, crops: crops! };
}
