/**
 * ResNet-18 / ResNet-50 (torchvision `resnet.py` layout) as DINO uses them: `fc` replaced by Identity,
 * so the feature is the global-average-pooled output of `layer4`. Parameter names are torchvision's
 * state_dict keys (`conv1.weight`, `bn1.running_mean`, `layer1.0.conv1.weight`,
 * `layer1.0.downsample.0.weight`, `layer1.0.downsample.1.weight`, ...).
 */
import { type Scope, type Tensor, add, conv2d, globalAveragePool, maxPool2d, relu, reshape } from '../dsl/index.ts';
import { batchNorm } from './batchnorm.ts';
import { floatType } from './layers.ts';

export interface ResNetConfig {
  readonly kind: 'resnet';
  /** `basic` (two 3x3 convs, ResNet-18/34) or `bottleneck` (1x1, 3x3, 1x1 with expansion 4, ResNet-50+). */
  readonly block: 'basic' | 'bottleneck';
  /** Blocks per stage (ResNet-18: [2, 2, 2, 2], ResNet-50: [3, 4, 6, 3]). */
  readonly layers: readonly [number, number, number, number];
  /** Channels of the stem and of the first stage (64 in torchvision); stage i has width * 2^i. */
  readonly width: number;
  /** Input channels (3 for RGB). */
  readonly inChans: number;
  /** Nominal training crop side (224); any size works, the features are globally pooled. */
  readonly imgSize: number;
}

export const expansionOf = (cfg: ResNetConfig): number => (cfg.block === 'basic' ? 1 : 4);

/** Width of the pooled feature: 512 for ResNet-18, 2048 for ResNet-50. */
export function resnetFeatureDim(cfg: ResNetConfig): number {
  return cfg.width * 8 * expansionOf(cfg);
}

export interface ResNetOptions {
  /** BatchNorm in training mode (batch statistics, running-stat updates) or inference mode. */
  readonly train: boolean;
}

export interface ResNetOutputs {
  /** Global-average-pooled features [B, featureDim]. */
  readonly features: Tensor;
}

/**
 * `nn.Conv2d(inC, outC, k, stride, padding=k//2 or given, bias=False)` with torchvision's init,
 * kaiming_normal(mode='fan_out', nonlinearity='relu'): N(0, 2 / (outC k^2)).
 */
export function conv(s: Scope, x: Tensor, inC: number, outC: number, kernel: number, stride: number, padding: number): Tensor {
  return s.run(() => {
    const weight = s.param('weight', [outC, inC, kernel, kernel], { kind: 'normal', std: Math.sqrt(2 / (outC * kernel * kernel)) }, { dtype: floatType(x) });
    return conv2d(x, weight, null, { strides: [stride, stride], pads: [padding, padding, padding, padding] });
  });
}

/** torchvision `BasicBlock` (ResNet-18/34): 3x3 conv, BN, ReLU, 3x3 conv, BN, + shortcut, ReLU. */
export function basicBlock(s: Scope, x: Tensor, inC: number, planes: number, stride: number, train: boolean): Tensor {
  return s.run(() => {
    let out = relu(batchNorm(s.child('bn1'), conv(s.child('conv1'), x, inC, planes, 3, stride, 1), planes, { train }));
    out = batchNorm(s.child('bn2'), conv(s.child('conv2'), out, planes, planes, 3, 1, 1), planes, { train });
    return relu(add(out, shortcut(s, x, inC, planes, stride, train)));
  });
}

/**
 * torchvision `Bottleneck` (ResNet-50+, "v1.5": the stride sits on the 3x3 conv): 1x1 conv to `planes`,
 * 3x3 conv, 1x1 conv to 4 planes, each followed by BN (ReLU after the first two), + shortcut, ReLU.
 */
export function bottleneckBlock(s: Scope, x: Tensor, inC: number, planes: number, stride: number, train: boolean): Tensor {
  return s.run(() => {
    const outC = planes * 4;
    let out = relu(batchNorm(s.child('bn1'), conv(s.child('conv1'), x, inC, planes, 1, 1, 0), planes, { train }));
    out = relu(batchNorm(s.child('bn2'), conv(s.child('conv2'), out, planes, planes, 3, stride, 1), planes, { train }));
    out = batchNorm(s.child('bn3'), conv(s.child('conv3'), out, planes, outC, 1, 1, 0), outC, { train });
    return relu(add(out, shortcut(s, x, inC, outC, stride, train)));
  });
}

/** The identity, or `downsample` = Sequential(1x1 conv with the block's stride, BN) when the shape changes. */
function shortcut(s: Scope, x: Tensor, inC: number, outC: number, stride: number, train: boolean): Tensor {
  if (stride === 1 && inC === outC) return x;
  const ds = s.child('downsample');
  return ds.run(() => batchNorm(ds.child(1), conv(ds.child(0), x, inC, outC, 1, stride, 0), outC, { train }));
}

/**
 * The ResNet trunk on `images` [B, C, H, W]: stem (7x7/2 conv, BN, ReLU, 3x3/2 max pool), four stages
 * `layer1..layer4`, global average pool. `train` selects BatchNorm's batch statistics (and records
 * running-stat updates, see `Scope.updateBuffer`) or its running statistics.
 */
export function resnet(s: Scope, images: Tensor, cfg: ResNetConfig, opts: ResNetOptions): ResNetOutputs {
  return s.run(() => {
    const train = opts.train, w = cfg.width, expansion = expansionOf(cfg);
    let x = relu(batchNorm(s.child('bn1'), conv(s.child('conv1'), images, cfg.inChans, w, 7, 2, 3), w, { train }));
    x = maxPool2d(x, { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] });
    let inC = w;
    cfg.layers.forEach((blocks, stage) => {
      const planes = w * 2 ** stage;
      const layer = s.child(`layer${stage + 1}`);
      for (let i = 0; i < blocks; i++) {
        const stride = i === 0 && stage > 0 ? 2 : 1;
        const blockScope = layer.child(i);
        x = cfg.block === 'basic'
          ? basicBlock(blockScope, x, inC, planes, stride, train)
          : bottleneckBlock(blockScope, x, inC, planes, stride, train);
        inC = planes * expansion;
      }
    });
    const [b] = x.shape;
    return { features: reshape(globalAveragePool(x), [b!, inC]) };
  });
}
