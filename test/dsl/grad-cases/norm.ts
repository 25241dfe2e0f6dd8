/** Gradient-check cases for Gemm and batch normalisation (float64: ORT's CPU EP has double Gemm and BatchNormalization). */
import * as D from '../../../dsl/index.ts';
import type { GradCheckSpec } from '../../helpers/gradcheck.ts';

const pos = (p: D.Prng) => p.range(0.5, 2);
const gemmCase = (shapeA: number[], shapeB: number[], shapeC: number[] | null, opts: D.GemmOptions): GradCheckSpec => ({
  inputs: [{ name: 'a', shape: shapeA }, { name: 'b', shape: shapeB }, ...(shapeC ? [{ name: 'c', shape: shapeC }] : [])],
  build: ([a, b, c]) => D.gemm(a!, b!, c ?? null, opts),
});

export const normCases: Record<string, GradCheckSpec> = {
  Gemm: gemmCase([3, 4], [4, 5], [5], { alpha: 0.7, beta: 1.3 }),
  'Gemm (transA, C [3, 1])': gemmCase([4, 3], [4, 5], [3, 1], { transA: true, beta: -0.5 }),
  'Gemm (transB, no C, as Linear)': gemmCase([3, 4], [5, 4], null, { transB: true }),
  'Gemm (transA and transB, full C)': gemmCase([4, 3], [5, 4], [3, 5], { transA: true, transB: true, alpha: 2 }),
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
