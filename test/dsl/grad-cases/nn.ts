/** Gradient-check cases for neural-network ops. */
import * as D from '../../../dsl/index.ts';
import type { GradCheckSpec } from '../../helpers/gradcheck.ts';

export const nnCases: Record<string, GradCheckSpec> = {
  MatMul: {
    // batched lhs with a shared 2-D rhs exercises the folded-rows rule; the batched pair the broadcast one
    inputs: [{ name: 'a', shape: [2, 3, 4] }, { name: 'b', shape: [4, 5] }, { name: 'c', shape: [1, 5, 2] }],
    build: ([a, b, c]) => D.matmul(D.matmul(a!, b!), c!),
  },
  Softmax: { inputs: [{ name: 'x', shape: [3, 5] }], build: ([x]) => D.softmax(x!, -1) },
  LogSoftmax: { inputs: [{ name: 'x', shape: [3, 5] }], build: ([x]) => D.logSoftmax(x!, 0) },
  LayerNormalization: {
    inputs: [{ name: 'x', shape: [2, 3, 6] }, { name: 'w', shape: [6] }, { name: 'b', shape: [6] }],
    build: ([x, w, b]) => D.layerNorm(x!, w!, b!, 1e-6),
  },
};
