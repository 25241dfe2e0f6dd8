/** cli/start.ts: the default job's summary, the full-split table above the curve table; the presets it offers. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { CurveFile, KnnResult } from '../../exports/index.ts';
import { startSummary } from '../../cli/start.ts';
import { fashionMnistPresetNames, getPreset } from '../../runtime/dino/presets.ts';

const knn = (top1: number): KnnResult => ({ top1: { '10': top1 + 1, '20': top1 }, top5: { '10': 99, '20': 99 }, n_train: 60000, n_test: 10000 });
const curve: CurveFile = {
  yardstick: { n_train: 10000, n_test: 5000, k: 20, temperature: 0.07, probe: { epochs: 30, lr: 0.3 } },
  points: [
    { step: 0, train_seconds: 0, knn_top1: 66.5, linear_top1: 70.25, n_train: 10000, n_test: 5000, loss: null, teacher_entropy: null, teacher_kl: null, eval_seconds: 11 },
    { step: 1119, train_seconds: 451.2, knn_top1: 70, linear_top1: 74.5, n_train: 10000, n_test: 5000, loss: 5.1, teacher_entropy: 3, teacher_kl: 1, eval_seconds: 11 },
  ],
  raw_pixels: { knn_top1: 84.1, linear_top1: 81.2, n_train: 10000, n_test: 5000 },
};

test('startSummary: full-split k-NN and linear for the teacher, random init and raw pixels, then the curve and the k table', () => {
  const text = startSummary({
    steps: 1119, curve, knnTable: 'weighted k-NN ...',
    trained: { knn: knn(74.7), linear: 78.126 }, random: { knn: knn(70.6), linear: 75 }, raw: { knn: knn(85.92), linear: 82.5 },
  });
  assert.is(text, [
    'top-1 on the full splits: 10000 test images; weighted k-NN (k=20, T=0.07) against 60000 train images, linear probe trained on their features:',
    '                                k-NN  linear',
    '  DINO teacher, 1119 steps    74.70%  78.13%',
    '  random-init teacher         70.60%  75.00%',
    '  raw pixels                  85.92%  82.50%',
    '',
    'during training, on 10000 evenly spaced train images (k-NN bank, probe training set) / 5000 test images:',
    '    step  minutes     k-NN   linear',
    '       0      0.0   66.50%   70.25%  random-init teacher',
    '    1119      7.5   70.00%   74.50%',
    '  raw pixels        84.10%   81.20%',
    '',
    'weighted k-NN ...',
  ].join('\n'));
});

test('start offers the 1-channel 28 px presets, the default first; fmnist-long is fmnist-quick (conv stem included) over more steps', () => {
  assert.equal(fashionMnistPresetNames(), ['fmnist-quick', 'fmnist-long', 'fmnist-tiny6', 'fmnist-tiny12']);
  const { steps: longSteps, preset: _l, ...long } = getPreset('fmnist-long');
  const { steps: quickSteps, preset: _q, ...quick } = getPreset('fmnist-quick');
  assert.equal(long, quick, 'same model and training settings');
  assert.equal(quick.backbone.convStem, [16, 16]);
  assert.ok(longSteps > 6 * quickSteps, `${longSteps} steps`);
});

test.run();
