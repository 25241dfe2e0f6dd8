/** DINO's RGB training presets, --epochs, DINO's flag names, and the refusal of data that does not fit the preset. */
import { FolderIndex } from '../../../runtime/data/folder-index.ts';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { rejects } from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { getPreset, presetNames } from '../../../runtime/dino/config.ts';
import { warmupSteps } from '../../../runtime/dino/schedules.ts';
import { DINO_AUGMENT } from '../../../runtime/data/multicrop.ts';
import { withEpochs } from '../../../runtime/dino/vit-presets.ts';
import { newRunFromArgs } from '../../../cli/train.ts';
import { checkDataFits } from '../../../runtime/dino/data-fit.ts';
import { train } from '../../../runtime/dino/train.ts';
import { parameterTable } from '../../../models/inspect.ts';
import { getPreset as getModelPreset } from '../../../models/presets.ts';

const dirs: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'dino-vitp-')); dirs.push(d); return d; };
test.after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

test('vit_tiny|small|base at patch 16 and 8: RGB 224 px, DINO crops, head and optimisation defaults', () => {
  for (const name of ['vit_tiny', 'vit_small', 'vit_base', 'vit_tiny_p8', 'vit_small_p8', 'vit_base_p8']) assert.ok(presetNames().includes(name), name);
  const s = getPreset('vit_small');
  assert.equal([s.backbone.inChans, s.backbone.imgSize, s.backbone.patchSize, s.backbone.embedDim, s.backbone.numHeads, s.backbone.depth], [3, 224, 16, 384, 6, 12]);
  assert.is(getPreset('vit_small_p8').backbone.patchSize, 8);
  assert.is(getPreset('vit_base').backbone.embedDim, 768);
  assert.is(getPreset('vit_tiny').backbone.embedDim, 192);
  assert.equal(s.head, { outDim: 65536, hiddenDim: 2048, bottleneckDim: 256, nlayers: 3, useBn: false, normLastLayer: true });
  const a = s.augment;
  assert.equal([a.globalSize, a.localSize, a.localCrops], [224, 96, 8]);
  assert.equal([a.globalScale, a.localScale], [[0.4, 1], [0.05, 0.4]]);
  assert.equal(a.mean, [0.485, 0.456, 0.406]);
  assert.equal(a.std, [0.229, 0.224, 0.225]);
  assert.equal([a.colorJitterP, a.brightness, a.contrast, a.saturation, a.hue, a.grayscaleP], [0.8, 0.4, 0.4, 0.2, 0.1, 0.2]);
  assert.equal([a.blurP, a.blurSigma, a.solarizeP], [[1, 0.1, 0.5], [0.1, 2], 0.2]);
  assert.equal(
    [s.batch, s.lr, s.minLr, s.weightDecay, s.weightDecayEnd, s.momentumTeacher, s.warmupTeacherTemp, s.teacherTemp, s.warmupTeacherTempSteps, s.clipGrad, s.backbone.dropPathRate, s.studentTemp, s.centerMomentum],
    [64, 0.0005, 1e-6, 0.04, 0.4, 0.996, 0.04, 0.04, 0, 3.0, 0.1, 0.1, 0.9],
  );
  // 100 epochs of ImageNet-1k at batch 64 until a data folder says otherwise; warm-up 10 epochs, last layer 1 epoch.
  const perEpoch = Math.floor(1_281_167 / 64);
  assert.equal([s.epochs, s.steps, s.freezeLastLayerSteps], [100, 100 * perEpoch, perEpoch]);
  assert.is(warmupSteps(s), 10 * perEpoch);
});

test('the training presets use the model presets\' backbones (ViT-S/16: DINO\'s 21.67 M parameters)', () => {
  for (const name of ['vit_tiny', 'vit_small', 'vit_base', 'vit_small_p8']) assert.equal(getPreset(name).backbone, getModelPreset(name).backbone, name);
  assert.is(parameterTable('vit_small').backboneParams, 21_665_664);
});

test('withEpochs: steps = epochs x floor(images / batch), warm-ups converted from epochs; too little data is refused', () => {
  const base = getPreset('vit_tiny');
  const c = withEpochs(base, 30, 1000); // 15 full batches of 64 per epoch (the last 40 images are dropped)
  assert.equal([c.epochs, c.steps, c.freezeLastLayerSteps, c.warmupTeacherTempSteps], [30, 450, 15, 0]);
  assert.is(warmupSteps(c), 150);
  assert.is(warmupSteps(withEpochs(base, 5, 1000)), 75); // warm-up capped at the whole run
  assert.is(withEpochs(base, 2, 1000, { warmupTeacherTempEpochs: 1 }).warmupTeacherTempSteps, 15);
  assert.throws(() => withEpochs(base, 10, 63), /fewer than one batch of 64: lower the batch/);
  assert.throws(() => withEpochs(base, 0, 1000), /epochs must be a positive integer/);
});

async function writeFolder(root: string, colour: (i: number) => [number, number, number]): Promise<void> {
  mkdirSync(join(root, 'a'), { recursive: true });
  for (let i = 0; i < 4; i++) {
    const [r, g, b] = colour(i);
    await sharp({ create: { width: 20, height: 20, channels: 3, background: { r, g, b } } }).png().toFile(join(root, 'a', `${i}.png`));
  }
}

test('a 1-channel 28 px preset on colour images, or an RGB preset on Fashion-MNIST, is refused naming the right option', async () => {
  const rgb = tmp(), gray = tmp();
  await writeFolder(rgb, (i) => (i < 3 ? [90, 90, 90] : [200, 30, 40])); // one colour image among gray ones is enough
  await writeFolder(gray, (i) => [40 * i, 40 * i, 40 * i]);
  const fm = getPreset('fmnist-quick');
  await rejects(() => checkDataFits(fm, rgb), /holds colour images.*preset fmnist-quick takes 1-channel 28 px.*choose a ViT preset/);
  await checkDataFits(fm, gray); // gray images train the 1-channel preset
  await checkDataFits(getPreset('vit_tiny'), gray); // and an RGB preset (gray replicated, as PIL's convert('RGB'))
  await checkDataFits(getPreset('vit_tiny'), rgb);
  await rejects(() => checkDataFits(getPreset('vit_small'), undefined), /without an image folder \(config\.data\) it would train on Fashion-MNIST/);
  const oneChannel = { name: 'fmnist', channels: 1, height: 28, width: 28, classes: [], train: { count: 0, pixels: new Uint8Array(0), labels: new Int32Array(0) }, test: { count: 0, pixels: new Uint8Array(0), labels: new Int32Array(0) } };
  await rejects(() => checkDataFits(getPreset('vit_small'), undefined, oneChannel), /has 1 channel\(s\): choose a 1-channel preset/);
  // train() refuses before it compiles or writes anything
  const out = join(tmp(), 'run');
  await rejects(() => train({ config: { ...fm, data: rgb }, out, progress: 'none', log: () => {} }), /holds colour images/);
  assert.not.ok(existsSync(out));
});

test('a reduced RGB run trains end to end on an image folder, its length given in epochs', async () => {
  const root = tmp();
  for (const cls of ['red', 'blue']) mkdirSync(join(root, cls));
  for (let i = 0; i < 10; i++) {
    const cls = i % 2 ? 'red' : 'blue';
    const v = 20 * i;
    const background = cls === 'red' ? { r: 180 + v / 4, g: v, b: 30 } : { r: 30, g: v, b: 180 + v / 4 };
    await sharp({ create: { width: 24, height: 24, channels: 3, background } }).png().toFile(join(root, cls, `${i}.png`));
  }
  const sets = ['backbone.embedDim=32', 'backbone.depth=2', 'backbone.numHeads=2', 'head.outDim=64', 'head.hiddenDim=64', 'head.bottleneckDim=16', 'batch=4', 'augment.blurSigma=[0.01,0.3]'];
  const { config, dataset } = await newRunFromArgs(['--arch', 'vit_tiny', '--patch-size', '8', '--image-size', '32', '--local-crops-number', '2', '--data', root, '--epochs', '2', ...sets.flatMap((x) => ['--set', x])]);
  if (!dataset) throw new Error('a length in epochs loads the data');
  assert.is(config.data, root);
  assert.equal([dataset instanceof FolderIndex, dataset.train.count, config.steps, config.freezeLastLayerSteps], [true, 10, 4, 2]); // the folder indexed, not decoded: 10 train images, 2 full batches of 4 per epoch
  const out = join(tmp(), 'run');
  const r = await train({ config, out, dataset, progress: 'none', log: () => {}, threads: 1 });
  assert.is(r.steps, 4);
  assert.ok(Number.isFinite(r.lastMetrics['loss']), JSON.stringify(r.lastMetrics));
  assert.ok(existsSync(join(out, 'checkpoint.safetensors')));
});

test('DINO_AUGMENT is what the RGB presets use', () => {
  const a = getPreset('vit_base').augment;
  for (const k of ['flipP', 'colorJitterP', 'grayscaleP', 'solarizeP', 'solarizeThreshold'] as const) assert.is(a[k], DINO_AUGMENT[k]);
});

test.run();
