/**
 * `dino bench --data FOLDER --loader-only`: the training data pipeline alone (index, then workers that read,
 * decode and multi-crop each batch's files, runtime/data/loader.ts), without a model.
 *
 * Figures, over the timed batches (after warm-up batches that also absorb the workers' start-up):
 * - images/s delivered to the caller (wall clock);
 * - CPU-ms per image: the whole process's CPU time (every thread: workers, libvips, main) per delivered image;
 * - the per-core rate 1000 / CPU-ms, and the cores this pipeline needs to feed `targetImagesPerSecond` (DINO's
 *   ViT-S/16 step on one GPU: about 700 images/s) at that rate;
 * - peak RSS of the process (the OS's high-water mark since the process started).
 */
import { indexImageFolder } from '../runtime/data/folder-index.ts';
import { MultiCropLoader, decodeThreadsNote, defaultLoaderWorkers } from '../runtime/data/loader.ts';
import { DINO_AUGMENT, type AugmentConfig, augmentConfig } from '../runtime/data/multicrop.ts';

export interface LoaderBenchOptions {
  /** The image folder (its train split is iterated). */
  readonly data: string;
  /** Loader workers. Default: runtime/data/loader.ts `defaultLoaderWorkers()` (cores - 1). */
  readonly workers?: number;
  /** Images per batch. Default 64 (DINO's batch per GPU). */
  readonly batch?: number;
  /** Timed batches. Default 8. */
  readonly batches?: number;
  /** Untimed batches first. Default: one per worker, at least 1. */
  readonly warmup?: number;
  /** The crops: default DINO's (2 x 224 + 8 x 96, RGB). */
  readonly augment?: AugmentConfig;
  readonly channels?: 1 | 3;
  /** The rate the projection is made for. Default 700 images/s. */
  readonly targetImagesPerSecond?: number;
  readonly skipBadImages?: boolean;
}

export interface LoaderBenchResult {
  readonly folder: string;
  readonly files: number;
  readonly indexSeconds: number;
  readonly workers: number;
  readonly batch: number;
  readonly images: number;
  readonly crops: string;
  readonly seconds: number;
  readonly imagesPerSecond: number;
  readonly cpuMsPerImage: number;
  readonly imagesPerSecondPerCore: number;
  readonly targetImagesPerSecond: number;
  readonly coresForTarget: number;
  readonly peakRssMb: number;
  /** libuv's thread pool (sharp's decodes) in this process. */
  readonly uvThreadpoolSize: number;
}

export async function runLoaderBench(o: LoaderBenchOptions): Promise<LoaderBenchResult> {
  const workers = o.workers ?? defaultLoaderWorkers();
  const batch = o.batch ?? 64;
  const batches = o.batches ?? 8;
  const warmup = o.warmup ?? Math.max(1, workers);
  const augment = o.augment ?? augmentConfig(DINO_AUGMENT);
  const target = o.targetImagesPerSecond ?? 700;
  const indexStart = performance.now();
  const index = await indexImageFolder(o.data, { skipBadImages: o.skipBadImages ?? false });
  const indexSeconds = (performance.now() - indexStart) / 1000;
  const loader = new MultiCropLoader({ dataset: index, batchSize: batch, seed: 0, augment, workers, channels: o.channels ?? 3, skipBadImages: o.skipBadImages ?? false });
  try {
    for (let i = 0; i < warmup; i++) await loader.next();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < batches; i++) await loader.next();
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const images = batches * batch;
    const cpuMsPerImage = (cpu.user + cpu.system) / 1000 / images;
    const perCore = 1000 / cpuMsPerImage;
    return {
      folder: index.root, files: index.train.count, indexSeconds, workers, batch, images,
      crops: `2 x ${augment.globalSize} + ${augment.localCrops} x ${augment.localSize}`,
      seconds, imagesPerSecond: images / seconds, cpuMsPerImage, imagesPerSecondPerCore: perCore,
      targetImagesPerSecond: target, coresForTarget: target / perCore,
      peakRssMb: process.resourceUsage().maxRSS / 1024,
      uvThreadpoolSize: Number(process.env['UV_THREADPOOL_SIZE'] ?? 4),
    };
  } finally {
    await loader.close();
  }
}

export function formatLoaderBench(r: LoaderBenchResult): string {
  return [
    `loader on ${r.folder}: ${r.files} train files indexed in ${r.indexSeconds.toFixed(2)} s`,
    `${r.workers} worker(s), batch ${r.batch}, crops ${r.crops}: ${r.images} images in ${r.seconds.toFixed(2)} s`,
    `  ${r.imagesPerSecond.toFixed(1)} images/s, ${r.cpuMsPerImage.toFixed(1)} CPU-ms per image (${r.imagesPerSecondPerCore.toFixed(1)} images/s per core)`,
    `  ${r.targetImagesPerSecond} images/s needs about ${Math.ceil(r.coresForTarget)} cores of this kind (${r.coresForTarget.toFixed(1)})`,
    `  peak RSS ${r.peakRssMb.toFixed(0)} MB; libuv thread pool ${r.uvThreadpoolSize}`,
    ...(decodeThreadsNote(r.workers) ? [`  ${decodeThreadsNote(r.workers)}`] : []),
  ].join('\n');
}
