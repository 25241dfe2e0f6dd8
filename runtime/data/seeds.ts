/**
 * Independent random streams derived from the run's seed, so that what a batch sees depends only on
 * (seed, stream, index) and never on the order in which workers happen to compute things.
 */
import { Prng } from '../../dsl/prng.ts';

/** Stream tags: one per use, so two uses never share random numbers. */
export const STREAM = {
  /** Epoch permutation of the train split; index = epoch. */
  shuffle: 1,
  /** Multi-crop augmentation of one batch; index = global batch index (step). */
  augment: 2,
} as const;

/** A bijective 32-bit mixer (lowbias32 by Chris Wellons), so distinct inputs give distinct words. */
function mix32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/**
 * The generator for `(seed, stream, index)`. Distinct inputs give distinct 128-bit states (each word is a bijection
 * of one input), then a few warm-up draws spread the differences over all four words.
 * @param seed the run's seed (uint32)
 * @param stream a {@link STREAM} tag
 * @param index a non-negative integer below 2^53 (epoch, step, ...)
 */
export function derivePrng(seed: number, stream: number, index: number): Prng {
  if (!Number.isSafeInteger(index) || index < 0) throw new RangeError(`stream index must be a non-negative integer, got ${index}`);
  const words: [number, number, number, number] = [
    mix32((seed >>> 0) ^ 0x9e3779b9),
    mix32((stream >>> 0) ^ 0x85ebca6b),
    mix32((index >>> 0) ^ 0xc2b2ae35),
    mix32(Math.floor(index / 4294967296) ^ 0x27d4eb2f),
  ];
  if (words.every((w) => w === 0)) words[0] = 1;
  const prng = Prng.fromState(words);
  for (let i = 0; i < 16; i++) prng.nextU32();
  return prng;
}
