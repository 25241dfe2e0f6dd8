/**
 * exports/evaluation/raw-pixels.ts: the raw-pixel baseline normalises with the normalisation it is given (a run's,
 * a data module's constants, or the dataset's own, measured per channel), and refuses one that does not fit.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Dataset } from '../../../runtime/data/dataset.ts';
import { FASHION_MNIST_MEAN, FASHION_MNIST_STD, loadFashionMnist } from '../../../runtime/data/fashion-mnist.ts';
import { datasetNormalization, rawPixelFeatures, runNormalization } from '../../../exports/evaluation/raw-pixels.ts';

/** Two 2-channel 1x2 images: channel 0 holds 0 and 255 in every image, channel 1 holds 51 (0.2) everywhere. */
const twoChannels: Dataset = {
  name: 'two-channels', channels: 2, height: 1, width: 2, classes: ['a', 'b'],
  train: { count: 2, pixels: Uint8Array.from([0, 255, 51, 51, 0, 255, 51, 51]), labels: Int32Array.from([0, 1]) },
  test: { count: 1, pixels: Uint8Array.from([255, 0, 51, 51]), labels: Int32Array.from([1]) },
};

test('datasetNormalization: the per-channel mean and std of the train pixels', () => {
  const n = datasetNormalization(twoChannels);
  assert.equal(n.mean.map((v) => +v.toFixed(6)), [0.5, 0.2]);
  assert.equal(n.std.map((v) => +v.toFixed(6)), [0.5, 0]);
});

test('rawPixelFeatures: (pixel / 255 - mean) / std per channel; a normalisation that does not fit is refused', () => {
  const f = rawPixelFeatures(twoChannels, twoChannels.test, { mean: [0.5, 0.1], std: [0.5, 0.2] });
  assert.equal([...f.data].map((v) => +v.toFixed(5)), [1, -1, 0.5, 0.5]);
  assert.equal([f.count, f.dim, [...f.labels]], [1, 4, [1]]);
  assert.throws(() => rawPixelFeatures(twoChannels, twoChannels.test, { mean: [0.5, 0.1, 0], std: [1] }), /1 or 2 mean values/);
  assert.throws(() => rawPixelFeatures(twoChannels, twoChannels.test, { mean: [0.5], std: [0] }), /positive std/);
});

test('Fashion-MNIST: its measured normalisation is the data module\'s constants; a run\'s is its augment config', async () => {
  const data = await loadFashionMnist({ limitPerClass: 600 });
  const n = datasetNormalization(data);
  assert.ok(Math.abs(n.mean[0]! - FASHION_MNIST_MEAN) < 0.01 && Math.abs(n.std[0]! - FASHION_MNIST_STD) < 0.01, JSON.stringify(n));
  assert.equal(runNormalization({ augment: { mean: [0.1, 0.2, 0.3], std: [0.4, 0.5, 0.6] } }), { mean: [0.1, 0.2, 0.3], std: [0.4, 0.5, 0.6] });
});

test.run();
