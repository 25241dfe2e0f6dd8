/** Gradient-check cases for normalisation ops (float64: ORT's CPU EP has double BatchNormalization). */
import * as D from '../../../dsl/index.ts';
import type { GradCheckSpec } from '../../helpers/gradcheck.ts';

const pos = (p: D.Prng) => p.range(0.5, 2);

export const normCases: Record<string, GradCheckSpec> = {
  LayerNormalization: {
    inputs: [{ name: 'x', shape: [2, 3, 6] }, { name: 'w', shape: [6] }, { name: 'b', shape: [6] }],
    build: ([x, w, b]) => D.layerNorm(x!, w!, b!, 1e-6),
  },
  // running statistics as inputs too: their gradients are checked although training keeps them constant
  BatchNormalization: {
    inputs: [
      { name: 'x', shape: [2, 3, 4, 3] },
      { name: 'scale', shape: [3] },
      { name: 'bias', shape: [3] },
      { name: 'mean', shape: [3] },
      { name: 'var', shape: [3], gen: pos },
    ],
    build: ([x, s, b, m, v]) => D.batchNormInference(x!, s!, b!, m!, v!, 1e-3),
  },
  // composite (not a registry op): gradients through the batch mean and variance
  'batchNormTraining (y)': {
    inputs: [{ name: 'x', shape: [3, 2, 3, 2] }, { name: 'scale', shape: [2] }, { name: 'bias', shape: [2] }],
    build: ([x, s, b]) => D.batchNormTraining(x!, s!, b!, 1e-5).y,
    elementwiseLimit: 40,
  },
  'batchNormTraining (mean, biased and unbiased variance)': {
    // the statistics do not depend on scale and bias: fixed values
    inputs: [
      { name: 'x', shape: [2, 3, 2, 2] },
      { name: 'scale', shape: [3], constant: { dtype: 'float64', data: [0.5, 1.5, -1] } },
      { name: 'bias', shape: [3], constant: { dtype: 'float64', data: [0.1, -0.2, 0.3] } },
    ],
    build: ([x, s, b]) => {
      const r = D.batchNormTraining(x!, s!, b!);
      return D.concat([r.mean, r.varBiased, r.varUnbiased], 0);
    },
    elementwiseLimit: 30,
  },
};
