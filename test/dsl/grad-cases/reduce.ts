/** Gradient-check cases for reductions. */
import * as D from '../../../dsl/index.ts';
import type { GradCheckSpec } from '../../helpers/gradcheck.ts';

const red = (f: (x: D.Tensor) => D.Tensor, gen?: (p: D.Prng) => number): GradCheckSpec => ({
  inputs: [{ name: 'x', shape: [2, 3, 4], ...(gen ? { gen } : {}) }],
  build: ([x]) => f(x!),
});

export const reduceCases: Record<string, GradCheckSpec> = {
  ReduceSum: red((x) => D.reduceSum(x, [0, 2], false)),
  ReduceMean: red((x) => D.reduceMean(x, [1], true)),
  ReduceMax: red((x) => D.reduceMax(x, [-1], false)),
  ReduceL2: red((x) => D.reduceL2(x, [1, 2], true)),
};
