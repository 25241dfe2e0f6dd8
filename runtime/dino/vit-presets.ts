/**
 * DINO's own training setups for real RGB images: `vit_tiny`, `vit_small`, `vit_base` at any patch size
 * (16 and 8 are DINO's), with main_dino.py's defaults (facebookresearch/dino, `get_args_parser`), and the
 * conversion of DINO's epoch-based schedule lengths into this project's step-based config.
 *
 * main_dino.py defaults used here: out_dim 65536, norm_last_layer true, use_bn_in_head false, momentum_teacher
 * 0.996, warmup_teacher_temp 0.04 -> teacher_temp 0.04 over 0 epochs, weight_decay 0.04 -> 0.4, clip_grad 3.0,
 * batch_size_per_gpu 64, epochs 100, freeze_last_layer 1 epoch, lr 0.0005 (x batch / 256), warmup_epochs 10,
 * min_lr 1e-6, drop_path_rate 0.1, global crops 2 x 224 at scale (0.4, 1), local_crops_number 8 x 96 at
 * (0.05, 0.4). DataAugmentationDINO's colour/blur/solarize settings and ImageNet mean/std are DINO_AUGMENT.
 */
import { type BackboneConfig, DINO_HEAD } from '../../models/presets.ts';
import { vitBase, vitSmall, vitTiny } from '../../models/presets.ts';
import type { ViTConfig } from '../../models/vit.ts';
import { DINO_AUGMENT, augmentConfig } from '../data/multicrop.ts';
import type { TrainConfig } from './config.ts';

/** The ViT sizes DINO trains (`--arch`). */
export const DINO_ARCHS = ['vit_tiny', 'vit_small', 'vit_base'] as const;
export type DinoArch = (typeof DINO_ARCHS)[number];

/** main_dino.py's schedule lengths in epochs. */
export const DINO_EPOCHS = Object.freeze({ epochs: 100, warmupEpochs: 10, freezeLastLayerEpochs: 1, warmupTeacherTempEpochs: 0 });

/** Images in ImageNet-1k's train split: the steps of a preset before a data folder gives the real count. */
export const IMAGENET_TRAIN_IMAGES = 1_281_167;

export interface DinoVitOptions {
  /** Default 16 (DINO also publishes 8); must divide the image size. */
  readonly patchSize?: number;
  /** Side of the global crops and of the model's input. Default 224. */
  readonly imageSize?: number;
  /** Number of 96 px local crops. Default 8 (main_dino.py `--local_crops_number`). */
  readonly localCropsNumber?: number;
}

const SIZES: Record<DinoArch, (o: { patchSize: number; imgSize: number }) => ViTConfig> = {
  vit_tiny: vitTiny, vit_small: vitSmall, vit_base: vitBase,
};

/**
 * The training config of `arch` with DINO's defaults. `steps` is for 100 epochs of ImageNet-1k at batch 64;
 * {@link withEpochs} recomputes it (and the warm-ups) from the real data.
 */
export function dinoVitConfig(arch: DinoArch, o: DinoVitOptions = {}): TrainConfig {
  const patchSize = o.patchSize ?? 16;
  const imageSize = o.imageSize ?? 224;
  if (!(Number.isInteger(patchSize) && patchSize > 0 && imageSize % patchSize === 0)) {
    throw new Error(`patchSize must be a positive integer dividing imageSize ${imageSize}, got ${patchSize}`);
  }
  const backbone = SIZES[arch]({ patchSize, imgSize: imageSize });
  // Local crops keep DINO's 96/224 ratio, rounded to whole patches so the student sees whole tokens.
  const localSize = imageSize === 224 ? 96 : Math.max(patchSize, Math.round((imageSize * 96) / 224 / patchSize) * patchSize);
  const augment = augmentConfig({
    ...DINO_AUGMENT,
    globalSize: imageSize,
    localSize,
    localCrops: o.localCropsNumber ?? DINO_AUGMENT.localCrops,
  });
  const batch = 64;
  const base: TrainConfig = {
    preset: patchSize === 16 ? arch : `${arch}_p${patchSize}`,
    backbone, head: DINO_HEAD, augment,
    batch, steps: 0, seed: 0,
    lr: 0.0005, minLr: 1e-6, warmupFraction: 0,
    weightDecay: 0.04, weightDecayEnd: 0.4,
    momentumTeacher: 0.996, warmupTeacherTemp: 0.04, teacherTemp: 0.04, warmupTeacherTempSteps: 0,
    studentTemp: 0.1, centerMomentum: 0.9, clipGrad: 3.0,
    freezeLastLayerSteps: 0,
  };
  return withEpochs(base, DINO_EPOCHS.epochs, IMAGENET_TRAIN_IMAGES);
}

/**
 * `cfg` lengthened to `epochs` passes over `trainImages` images: steps = epochs x floor(images / batch) (the
 * loader drops each epoch's last incomplete batch, as DINO's `drop_last=True`), and DINO's epoch-based warm-ups
 * converted to steps: lr warm-up 10 epochs (`warmupFraction` = 10 / epochs, capped at 1), last layer frozen 1 epoch,
 * teacher-temperature warm-up 0 epochs. The epoch count is recorded in the config as `epochs`.
 * @throws Error when there is not one full batch of images, or `epochs` is not a positive integer.
 */
export function withEpochs<B extends BackboneConfig = ViTConfig>(
  cfg: TrainConfig<B>,
  epochs: number,
  trainImages: number,
  schedule: { warmupEpochs?: number; freezeLastLayerEpochs?: number; warmupTeacherTempEpochs?: number } = {},
): TrainConfig<B> {
  if (!(Number.isInteger(epochs) && epochs > 0)) throw new Error(`epochs must be a positive integer, got ${epochs}`);
  const perEpoch = Math.floor(trainImages / cfg.batch);
  if (perEpoch < 1) {
    throw new Error(`the training split has ${trainImages} images, fewer than one batch of ${cfg.batch}: lower the batch, or give the length in steps instead of epochs`);
  }
  const warmupEpochs = schedule.warmupEpochs ?? DINO_EPOCHS.warmupEpochs;
  const { epochSteps: _stale, ...rest } = cfg;
  return {
    ...rest,
    epochs,
    steps: epochs * perEpoch,
    warmupFraction: Math.min(1, warmupEpochs / epochs),
    freezeLastLayerSteps: (schedule.freezeLastLayerEpochs ?? DINO_EPOCHS.freezeLastLayerEpochs) * perEpoch,
    warmupTeacherTempSteps: (schedule.warmupTeacherTempEpochs ?? DINO_EPOCHS.warmupTeacherTempEpochs) * perEpoch,
  };
}

/**
 * `cfg` with its length kept at `cfg.steps` (`--steps N`) and DINO's epoch-based schedules converted to steps of
 * the real data's epoch, floor(`trainImages` / batch), instead of the preset's ImageNet epoch: last layer frozen
 * 1 epoch, teacher-temperature warm-up 0 epochs, lr warm-up 10 epochs as a fraction of the run (capped at 1). The
 * epoch's length is recorded as `epochSteps`; `epochs` is dropped (the length is given in steps).
 * @throws Error when there is not one full batch of images.
 */
export function withEpochSteps<B extends BackboneConfig = ViTConfig>(
  cfg: TrainConfig<B>,
  trainImages: number,
  schedule: { warmupEpochs?: number; freezeLastLayerEpochs?: number; warmupTeacherTempEpochs?: number } = {},
): TrainConfig<B> {
  const epochSteps = Math.floor(trainImages / cfg.batch);
  if (epochSteps < 1) throw new Error(`the training split has ${trainImages} images, fewer than one batch of ${cfg.batch}: lower the batch`);
  const { epochs: _epochs, ...rest } = cfg;
  return {
    ...rest,
    epochSteps,
    warmupFraction: Math.min(1, ((schedule.warmupEpochs ?? DINO_EPOCHS.warmupEpochs) * epochSteps) / cfg.steps),
    freezeLastLayerSteps: (schedule.freezeLastLayerEpochs ?? DINO_EPOCHS.freezeLastLayerEpochs) * epochSteps,
    warmupTeacherTempSteps: (schedule.warmupTeacherTempEpochs ?? DINO_EPOCHS.warmupTeacherTempEpochs) * epochSteps,
  };
}

/** The training presets this module adds to `runtime/dino/presets.ts`: each arch at patch 16 and 8. */
export function dinoVitPresets(): Record<string, TrainConfig> {
  const out: Record<string, TrainConfig> = {};
  for (const arch of DINO_ARCHS) {
    for (const patchSize of [16, 8]) {
      const cfg = dinoVitConfig(arch, { patchSize });
      out[cfg.preset] = cfg;
    }
  }
  return out;
}
