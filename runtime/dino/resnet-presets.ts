/**
 * DINO's ResNet setups for RGB image folders (`--arch resnet50`, and `resnet18` for a CPU): main_dino.py's
 * defaults (facebookresearch/dino, `get_args_parser`) with the settings DINO's README gives for ResNet-50:
 * `--optimizer sgd --lr 0.03 --weight_decay 1e-4 --weight_decay_end 1e-4 --global_crops_scale 0.14 1
 * --local_crops_scale 0.05 0.14`, and a head with BatchNorm (`use_bn_in_head`, as DINO's released ResNet-50
 * checkpoint has it; main_dino.py's default is false, for the ViTs).
 *
 * What differs from DINO's recipe: the step is compiled with AdamW only (dsl/train), so these presets train with
 * AdamW at main_dino.py's AdamW learning rate (0.0005 x batch / 256) instead of SGD (momentum 0.9) at 0.03 or LARS;
 * weight decay, crop scales, head, temperatures, teacher momentum, clipping and schedules are DINO's. BatchNorm is
 * torchvision's (batch statistics per step); DINO's SyncBatchNorm is its data-parallel counterpart (statistics over
 * all GPUs' batches), which one process on one device does not need.
 */
import { DINO_HEAD, resnet18, resnet50 } from '../../models/presets.ts';
import type { ResNetConfig } from '../../models/resnet.ts';
import { DINO_AUGMENT, augmentConfig } from '../data/multicrop.ts';
import type { TrainConfig } from './config.ts';
import { DINO_EPOCHS, IMAGENET_TRAIN_IMAGES, withEpochs } from './vit-presets.ts';

/** The ResNets `dino train --arch` trains: DINO's ResNet-50, and ResNet-18 (512-wide features) for small runs. */
export const DINO_RESNET_ARCHS = ['resnet50', 'resnet18'] as const;
export type DinoResNetArch = (typeof DINO_RESNET_ARCHS)[number];

export const isDinoResNetArch = (arch: string): arch is DinoResNetArch => (DINO_RESNET_ARCHS as readonly string[]).includes(arch);

export interface DinoResNetOptions {
  /** Side of the global crops and of the model's input. Default 224. */
  readonly imageSize?: number;
  /** Number of local crops. Default 8 (main_dino.py `--local_crops_number`). */
  readonly localCropsNumber?: number;
}

const BUILD: Record<DinoResNetArch, (inChans: number) => ResNetConfig> = { resnet50, resnet18 };

/**
 * The training config of `arch` with DINO's ResNet-50 settings (see the module comment for what differs: AdamW).
 * `steps` is for 100 epochs of ImageNet-1k at batch 64; `withEpochs` recomputes it from the real data.
 */
export function dinoResNetConfig(arch: DinoResNetArch, o: DinoResNetOptions = {}): TrainConfig<ResNetConfig> {
  const imageSize = o.imageSize ?? 224;
  if (!(Number.isInteger(imageSize) && imageSize >= 32)) {
    throw new Error(`imageSize must be an integer of at least 32 (a ResNet downsamples by 32), got ${imageSize}`);
  }
  // Local crops keep DINO's 96/224 ratio.
  const localSize = Math.max(16, Math.round((imageSize * 96) / 224));
  const augment = augmentConfig({
    ...DINO_AUGMENT,
    globalSize: imageSize,
    localSize,
    localCrops: o.localCropsNumber ?? DINO_AUGMENT.localCrops,
    globalScale: [0.14, 1],
    localScale: [0.05, 0.14],
  });
  const base: TrainConfig<ResNetConfig> = {
    preset: imageSize === 224 ? arch : `${arch}_${imageSize}px`,
    backbone: { ...BUILD[arch](3), imgSize: imageSize },
    head: { ...DINO_HEAD, useBn: true },
    augment,
    batch: 64, steps: 0, seed: 0,
    lr: 0.0005, minLr: 1e-6, warmupFraction: 0,
    weightDecay: 1e-4, weightDecayEnd: 1e-4,
    momentumTeacher: 0.996, warmupTeacherTemp: 0.04, teacherTemp: 0.04, warmupTeacherTempSteps: 0,
    studentTemp: 0.1, centerMomentum: 0.9, clipGrad: 3.0,
    freezeLastLayerSteps: 0,
  };
  return withEpochs(base, DINO_EPOCHS.epochs, IMAGENET_TRAIN_IMAGES);
}
