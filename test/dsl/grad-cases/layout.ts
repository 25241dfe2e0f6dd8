/** Gradient-check cases for data-movement ops. */
import * as D from '../../../dsl/index.ts';
import type { GradCheckSpec } from '../../helpers/gradcheck.ts';

// Every case multiplies by a position-dependent tensor downstream through the random cotangent.
export const layoutCases: Record<string, GradCheckSpec> = {
  Reshape: { inputs: [{ name: 'x', shape: [2, 3, 4] }], build: ([x]) => D.reshape(x!, [6, -1]) },
  Transpose: { inputs: [{ name: 'x', shape: [2, 3, 4] }], build: ([x]) => D.transpose(x!, [2, 0, 1]) },
  Unsqueeze: { inputs: [{ name: 'x', shape: [3, 4] }], build: ([x]) => D.unsqueeze(x!, [0, 2]) },
  Squeeze: { inputs: [{ name: 'x', shape: [3, 1, 4] }], build: ([x]) => D.squeeze(x!, 1) },
  Concat: {
    inputs: [{ name: 'a', shape: [2, 3] }, { name: 'b', shape: [2, 2] }],
    build: ([a, b]) => D.concat([a!, b!, a!], 1),
  },
  Split: {
    inputs: [{ name: 'x', shape: [5, 3] }],
    // one output unused: its cotangent is a symbolic zero the rule must fill in
    build: ([x]) => { const [p, , r] = D.split(x!, [2, 1, 2], 0); return D.add(D.mul(p!, 2), r!); },
  },
  Slice: { inputs: [{ name: 'x', shape: [4, 5] }], build: ([x]) => D.slice(x!, [1, -3], [3, 5], [0, 1]) },
  Pad: { inputs: [{ name: 'x', shape: [2, 3] }], build: ([x]) => D.pad(x!, [1, 0, 0, 2]) },
  Expand: { inputs: [{ name: 'x', shape: [3, 1] }], build: ([x]) => D.expand(x!, [2, 3, 4]) },
  ExpandToShapeOf: {
    inputs: [{ name: 'v', shape: [1, 3] }, { name: 'like', shape: [2, 3], constant: { dtype: 'float64', data: [1, 2, 3, 4, 5, 6] } }],
    build: ([v, like]) => D.expandToShapeOf(v!, like!),
  },
};
