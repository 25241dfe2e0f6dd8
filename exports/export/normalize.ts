/** The dataset normalisation as the first op of an exported graph. */
import { type Graph, type Tensor, mul, sub } from '../../dsl/index.ts';

/** Per-channel constant [1, C, 1, 1] (one value broadcast to every channel). */
function channelConstant(g: Graph, values: readonly number[], channels: number): Tensor {
  const v = values.length === 1 ? Array(channels).fill(values[0]) : [...values];
  return g.constant(Float32Array.from(v), 'float32', [1, channels, 1, 1]);
}

/** `(images - mean) * (1 / std)`, as the training loader normalises (runtime/data/multicrop.ts). */
export function normalizeImages(g: Graph, images: Tensor, channels: number, mean: readonly number[], std: readonly number[]): Tensor {
  if ((mean.length !== 1 && mean.length !== channels) || mean.length !== std.length) {
    throw new Error(`normalisation needs 1 or ${channels} mean/std values, got mean ${JSON.stringify(mean)} and std ${JSON.stringify(std)}`);
  }
  return g.within('normalize', () =>
    mul(sub(images, channelConstant(g, mean, channels)), channelConstant(g, std.map((s) => 1 / s), channels)),
  );
}
