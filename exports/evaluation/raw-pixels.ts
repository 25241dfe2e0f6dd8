/**
 * The raw-pixel baseline: the images themselves, normalised, as the features of weighted k-NN (what a trained
 * backbone must beat).
 */
import type { Dataset, ImageSet } from '../../runtime/data/dataset.ts';
import { type FeatureSet, evenlySpaced } from './extract-features.ts';
import { type KnnOptions, type KnnResult, knnClassify } from './knn.ts';

/** Raw pixels as features: `limit` evenly spaced images of `set`, normalised with `mean` / `std` (one value or one per channel). */
export function rawPixelFeatures(data: Dataset, set: ImageSet, opts: { mean?: readonly number[]; std?: readonly number[]; limit?: number } = {}): FeatureSet {
  const mean = opts.mean ?? [0.286], std = opts.std ?? [0.353];
  const plane = data.height * data.width, per = data.channels * plane;
  const idx = evenlySpaced(set.count, opts.limit);
  const out = new Float32Array(idx.length * per);
  const labels = new Int32Array(idx.length);
  idx.forEach((src, i) => {
    labels[i] = set.labels[src]!;
    for (let c = 0; c < data.channels; c++) {
      const m = mean.length === 1 ? mean[0]! : mean[c]!, inv = 1 / (std.length === 1 ? std[0]! : std[c]!);
      for (let p = 0; p < plane; p++) out[i * per + c * plane + p] = (set.pixels[src * per + c * plane + p]! / 255 - m) * inv;
    }
  });
  return { count: idx.length, dim: per, data: out, labels };
}

/** The baseline: weighted k-NN on the raw pixels, normalised with `mean` / `std` (default Fashion-MNIST's). */
export async function rawPixelKnn(
  data: Dataset,
  opts: { mean?: readonly number[]; std?: readonly number[]; limitTrain?: number; limitTest?: number; ks?: readonly number[]; engine?: KnnOptions['engine'] } = {},
): Promise<KnnResult> {
  const norm = { ...(opts.mean ? { mean: opts.mean } : {}), ...(opts.std ? { std: opts.std } : {}) };
  return knnClassify(rawPixelFeatures(data, data.train, { ...norm, limit: opts.limitTrain }), rawPixelFeatures(data, data.test, { ...norm, limit: opts.limitTest }), {
    numClasses: data.classes.length || undefined, ...(opts.ks ? { ks: opts.ks } : {}), ...(opts.engine ? { engine: opts.engine } : {}),
  } as KnnOptions);
}
