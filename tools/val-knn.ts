/**
 * Weighted k-NN (k=20, T=0.07) of a run's teacher, or of raw pixels, on the validation split (default: 5,000 val
 * images against the 55,000 train images; `loadFashionMnist({ split: 'val' })`) or, with `--split test`, on the
 * 10,000 test images against all 60,000 train images. `--limit-train N` uses an evenly spaced, class-balanced
 * memory bank of N images instead (cheaper; say so wherever a figure from it is quoted).
 *
 *   npx tsx tools/val-knn.ts --run runs/learn/a [--limit-train 11000] [--split val|test]
 *   npx tsx tools/val-knn.ts --pixels [--split val|test]
 *
 * Prints one JSON line: {what, split, knn20, n_train, n_test, seconds}.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { FASHION_MNIST_MEAN, FASHION_MNIST_STD, loadFashionMnist } from '../runtime/data/fashion-mnist.ts';
import { knnClassify } from '../exports/evaluation/knn.ts';
import { evenlySpaced, extractFeatures } from '../exports/evaluation/extract-features.ts';
import { rawPixelKnn } from '../exports/evaluation/raw-pixels.ts';
import { runModel } from '../exports/evaluation/run-model.ts';
import { createSession } from '../runtime/backend.ts';

const { values } = parseArgs({
  options: {
    run: { type: 'string' }, pixels: { type: 'boolean', default: false }, split: { type: 'string', default: 'val' },
    'limit-train': { type: 'string' }, 'limit-test': { type: 'string' },
  },
});
const split = values.split === 'test' ? 'test' : 'val';
const data = await loadFashionMnist({ split });
const limitTrain = values['limit-train'] === undefined ? undefined : Number(values['limit-train']);
const limitTest = values['limit-test'] === undefined ? undefined : Number(values['limit-test']);
const t0 = performance.now();
let result;
if (values.pixels) {
  result = await rawPixelKnn(data, { mean: [FASHION_MNIST_MEAN], std: [FASHION_MNIST_STD] }, { ks: [20], ...(limitTrain ? { limitTrain } : {}), ...(limitTest ? { limitTest } : {}) });
} else {
  const bytes = readFileSync(runModel({ run: values.run! }));
  const session = await createSession(bytes);
  const extract = (set: typeof data.train, limit: number | undefined) =>
    extractFeatures(bytes, { channels: 1, height: data.height, width: data.width, set, indices: evenlySpaced(set.count, limit) }, { session });
  const trainF = await extract(data.train, limitTrain);
  const testF = await extract(data.test, limitTest);
  await session.release();
  result = await knnClassify(trainF, testF, { ks: [20], numClasses: 10 });
}
console.log(JSON.stringify({
  what: values.pixels ? 'raw pixels' : values.run, split, knn20: result.top1['20'], n_train: result.n_train, n_test: result.n_test,
  seconds: +((performance.now() - t0) / 1000).toFixed(1),
}));
