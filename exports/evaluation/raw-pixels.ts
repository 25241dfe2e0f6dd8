/**
 * The raw-pixel baseline: the images themselves, normalised, as the features of weighted k-NN (what a trained
 * backbone must beat). The normalisation is the caller's, never a dataset's constants assumed here: a run's own
 * (`runNormalization`, what its teacher saw), a data module's constants (e.g. Fashion-MNIST's), or one measured on
 * the dataset (`datasetNormalization`).
 *
 * It takes an in-memory {@link Dataset} (Fashion-MNIST, `npm start`): the pixels themselves are the features, so the
 * data's size bounds its memory (features of C x H x W floats per image, four times the bytes); the model
 * evaluations stream image folders instead (features.ts `evalImages`).
 */
import type { Dataset, ImageSet } from '../../runtime/data/dataset.ts';
import { type FeatureSet, evenlySpaced } from './extract-features.ts';
import { type KnnOptions, type KnnResult, knnClassify } from './knn.ts';

/** Mean and standard deviation of pixels in [0, 1]: one value for every channel, or one per channel. */
export interface PixelNormalization {
  readonly mean: readonly number[];
  readonly std: readonly number[];
}

/** The normalisation a run trained with: its augment config's mean / std (the one its teacher's inputs had). */
export const runNormalization = (config: { readonly augment: PixelNormalization }): PixelNormalization => ({ mean: config.augment.mean, std: config.augment.std });

/** The dataset's own normalisation: the per-channel mean and standard deviation of its train split's pixels in [0, 1]. */
export function datasetNormalization(data: Dataset): PixelNormalization {
  const plane = data.height * data.width, per = data.channels * plane, pixels = data.train.pixels;
  if (data.train.count === 0) throw new Error(`${data.name}: no train images to measure a normalisation on`);
  const mean: number[] = [], std: number[] = [];
  for (let c = 0; c < data.channels; c++) {
    let sum = 0, sumSq = 0;
    for (let i = 0; i < data.train.count; i++) {
      for (let p = i * per + c * plane, end = p + plane; p < end; p++) {
        const x = pixels[p]! / 255;
        sum += x;
        sumSq += x * x;
      }
    }
    const n = data.train.count * plane, m = sum / n;
    mean.push(m);
    std.push(Math.sqrt(Math.max(sumSq / n - m * m, 0)));
  }
  return { mean, std };
}

function checkNormalization(norm: PixelNormalization, channels: number): void {
  const fits = (v: readonly number[]) => v.length === 1 || v.length === channels;
  if (!fits(norm.mean) || !fits(norm.std) || norm.std.some((s) => !(s > 0))) {
    throw new Error(`raw-pixel normalisation needs 1 or ${channels} mean values and positive std values, got mean ${JSON.stringify(norm.mean)} and std ${JSON.stringify(norm.std)}`);
  }
}

/** Raw pixels as features: `limit` evenly spaced images of `set`, normalised with `mean` / `std`. */
export function rawPixelFeatures(data: Dataset, set: ImageSet, opts: PixelNormalization & { readonly limit?: number | undefined }): FeatureSet {
  checkNormalization(opts, data.channels);
  const { mean, std } = opts;
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

/** The baseline: weighted k-NN on the raw pixels of `data`, normalised with `norm`. */
export async function rawPixelKnn(
  data: Dataset,
  norm: PixelNormalization,
  opts: { limitTrain?: number; limitTest?: number; ks?: readonly number[]; engine?: KnnOptions['engine'] } = {},
): Promise<KnnResult> {
  const { mean, std } = norm;
  return knnClassify(rawPixelFeatures(data, data.train, { mean, std, limit: opts.limitTrain }), rawPixelFeatures(data, data.test, { mean, std, limit: opts.limitTest }), {
    numClasses: data.classes.length || undefined, ...(opts.ks ? { ks: opts.ks } : {}), ...(opts.engine ? { engine: opts.engine } : {}),
  } as KnnOptions);
}
