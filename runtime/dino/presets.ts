/**
 * The training presets (model + crops + hyper-parameters), one registry: Fashion-MNIST's below, DINO's RGB ViT setups
 * generated in runtime/dino/vit-presets.ts. Why each departs from DINO's defaults, with the measurements behind it:
 * docs/fmnist-quick.md ("The presets") and bench/RESULTS.md.
 */
import type { DinoHeadConfig } from '../../models/head.ts';
import { getPreset as getModelPreset } from '../../models/presets.ts';
import type { ViTConfig } from '../../models/vit.ts';
import { augmentConfig } from '../data/multicrop.ts';
import { FASHION_MNIST_MEAN, FASHION_MNIST_STD } from '../data/fashion-mnist.ts';
import type { TrainConfig } from './config.ts';
import { dinoVitPresets } from './vit-presets.ts';

function vitPreset(name: string): { backbone: ViTConfig; head: DinoHeadConfig } {
  const p = getModelPreset(name);
  if (p.backbone.kind !== 'vit') throw new Error(`preset ${name} is not a ViT`);
  return { backbone: p.backbone, head: p.head };
}
const FMNIST_MODEL = vitPreset('fmnist-tiny6');
const FMNIST_AUGMENT = augmentConfig({
  globalSize: 28, localSize: 12, localCrops: 6, mean: [FASHION_MNIST_MEAN], std: [FASHION_MNIST_STD],
});

/** `fmnist-tiny6`: DINO's defaults exactly (docs/ARCHITECTURE.md, "DINO reference"). */
const FMNIST_TINY6: TrainConfig = {
  preset: 'fmnist-tiny6',
  backbone: FMNIST_MODEL.backbone,
  head: FMNIST_MODEL.head,
  augment: FMNIST_AUGMENT,
  batch: 64, steps: 600, seed: 0,
  lr: 0.0005, minLr: 1e-6, warmupFraction: 0.1,
  weightDecay: 0.04, weightDecayEnd: 0.4,
  momentumTeacher: 0.996, warmupTeacherTemp: 0.04, teacherTemp: 0.04, warmupTeacherTempSteps: 0,
  studentTemp: 0.1, centerMomentum: 0.9, clipGrad: 3.0,
  freezeLastLayerSteps: Math.ceil(60000 / 64),
};

/**
 * `fmnist-quick`: the `npm start` default, chosen for the most k-NN accuracy per CPU-minute on a 2-core CPU
 * (≤ 10 minutes of training), on a validation split carved from the train images. Departures from DINO's defaults
 * (`fmnist-tiny6`): patch 7 with 14 px local crops, a convolutional stem, a smaller head (K = 1024), a 4x base
 * learning rate, a faster and sharper teacher, the last layer trained from the second step, batch 32, blur sigmas
 * scaled by 28/224, KoLeo at weight 0.3; 957 steps. The reasons and the numbers: docs/fmnist-quick.md, "The presets".
 */
const FMNIST_QUICK: TrainConfig = {
  ...FMNIST_TINY6,
  preset: 'fmnist-quick',
  backbone: { ...FMNIST_MODEL.backbone, patchSize: 7, convStem: [16, 16] },
  head: { ...FMNIST_MODEL.head, hiddenDim: 512, bottleneckDim: 128, outDim: 1024 },
  augment: augmentConfig({ ...FMNIST_AUGMENT, localSize: 14, blurSigma: [0.1 * 28 / 224, 2.0 * 28 / 224] }),
  batch: 32,
  steps: 957,
  lr: 0.002,
  momentumTeacher: 0.99,
  warmupTeacherTemp: 0.02,
  teacherTemp: 0.02,
  freezeLastLayerSteps: 1,
  koleoWeight: 0.3,
};

/** `fmnist-long`: fmnist-quick's settings for up to an hour of training on a quiet 2-core CPU (docs/fmnist-quick.md). */
const FMNIST_LONG: TrainConfig = { ...FMNIST_QUICK, preset: 'fmnist-long', steps: 6800 };

export const PRESETS: Readonly<Record<string, TrainConfig>> = {
  'fmnist-quick': FMNIST_QUICK,
  'fmnist-long': FMNIST_LONG,
  'fmnist-tiny6': FMNIST_TINY6,
  'fmnist-tiny12': { ...FMNIST_TINY6, preset: 'fmnist-tiny12', backbone: vitPreset('fmnist-tiny12').backbone },
  // DINO's RGB setups: vit_tiny|vit_small|vit_base (patch 16) and <arch>_p8.
  ...dinoVitPresets(),
};

export function presetNames(): string[] {
  return Object.keys(PRESETS);
}

/** The presets made for Fashion-MNIST's 1-channel 28 px images (`fmnist-quick` first, the default). */
export function fashionMnistPresetNames(): string[] {
  return presetNames().filter((name) => PRESETS[name]!.backbone.inChans === 1 && PRESETS[name]!.augment.globalSize === 28);
}

export function getPreset(name: string): TrainConfig {
  const p = PRESETS[name];
  if (!p) throw new Error(`unknown preset "${name}"; available: ${presetNames().join(', ')}`);
  return p;
}
