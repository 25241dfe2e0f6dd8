/** Gradient-check cases for matrix products and the softmax family (float64: ORT's CPU EP has double Gemm). */
import * as D from '../../../dsl/index.ts';
import type { GradCheckSpec } from '../../helpers/gradcheck.ts';

const gemmCase = (shapeA: number[], shapeB: number[], shapeC: number[] | null, opts: D.GemmOptions): GradCheckSpec => ({
  inputs: [{ name: 'a', shape: shapeA }, { name: 'b', shape: shapeB }, ...(shapeC ? [{ name: 'c', shape: shapeC }] : [])],
  build: ([a, b, c]) => D.gemm(a!, b!, c ?? null, opts),
});

export const nnCases: Record<string, GradCheckSpec> = {
  MatMul: {
    // batched lhs with a shared 2-D rhs exercises the folded-rows rule; the batched pair the broadcast one
    inputs: [{ name: 'a', shape: [2, 3, 4] }, { name: 'b', shape: [4, 5] }, { name: 'c', shape: [1, 5, 2] }],
    build: ([a, b, c]) => D.matmul(D.matmul(a!, b!), c!),
  },
  Gemm: gemmCase([3, 4], [4, 5], [5], { alpha: 0.7, beta: 1.3 }),
  'Gemm (transA, C [3, 1])': gemmCase([4, 3], [4, 5], [3, 1], { transA: true, beta: -0.5 }),
  'Gemm (transB, no C, as Linear)': gemmCase([3, 4], [5, 4], null, { transB: true }),
  'Gemm (transA and transB, full C)': gemmCase([4, 3], [5, 4], [3, 5], { transA: true, transB: true, alpha: 2 }),
  Softmax: { inputs: [{ name: 'x', shape: [3, 5] }], build: ([x]) => D.softmax(x!, -1) },
  LogSoftmax: { inputs: [{ name: 'x', shape: [3, 5] }], build: ([x]) => D.logSoftmax(x!, 0) },
};
