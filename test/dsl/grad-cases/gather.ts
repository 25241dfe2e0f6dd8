/** Gradient-check cases for indexing ops (float64: ORT's CPU EP has double Gather, GatherElements, GatherND, ScatterElements and ScatterND kernels). Indices repeat, so scatter-adds must accumulate. */
import * as D from '../../../dsl/index.ts';
import type { GradCheckSpec } from '../../helpers/gradcheck.ts';

const idx = (data: number[]) => ({ dtype: 'int64' as const, data });

export const gatherCases: Record<string, GradCheckSpec> = {
  // axis 1 of 3, 2-D indices with a repeat (3 twice) and a negative index (-1 = 4)
  Gather: {
    inputs: [{ name: 'x', shape: [2, 5, 3] }, { name: 'i', shape: [2, 2], constant: idx([0, 3, 3, -1]) }],
    build: ([x, i]) => D.gather(x!, i!, 1),
  },
  'Gather (axis 0, 1-D indices)': {
    inputs: [{ name: 'x', shape: [5, 3] }, { name: 'i', shape: [4], constant: idx([1, 1, 4, 0]) }],
    build: ([x, i]) => D.gather(x!, i!, 0),
  },
  GatherElements: {
    inputs: [{ name: 'x', shape: [3, 4] }, { name: 'i', shape: [3, 2], constant: idx([0, 0, 3, 1, 2, 2]) }],
    build: ([x, i]) => D.gatherElements(x!, i!, 1),
  },
  GatherND: {
    inputs: [{ name: 'x', shape: [3, 4, 2] }, { name: 'i', shape: [3, 2], constant: idx([0, 1, 2, 3, 0, 1]) }],
    build: ([x, i]) => D.gatherND(x!, i!),
  },
  ScatterElements: {
    inputs: [
      { name: 'data', shape: [3, 4] },
      { name: 'i', shape: [3, 2], constant: idx([1, 1, 0, 3, 2, 0]) },
      { name: 'u', shape: [3, 2] },
    ],
    build: ([x, i, u]) => D.scatterElements(x!, i!, u!, 1, 'add'),
  },
  'ScatterElements (reduction none, unique indices)': {
    inputs: [
      { name: 'data', shape: [4, 3] },
      { name: 'i', shape: [2, 3], constant: idx([3, 0, 1, 1, 2, 0]) },
      { name: 'u', shape: [2, 3] },
    ],
    build: ([x, i, u]) => D.scatterElements(x!, i!, u!, 0, 'none'),
  },
  ScatterND: {
    inputs: [{ name: 'data', shape: [4, 3] }, { name: 'i', shape: [3, 1], constant: idx([1, 3, 1]) }, { name: 'u', shape: [3, 3] }],
    build: ([x, i, u]) => D.scatterND(x!, i!, u!, 'add'),
  },
  'ScatterND (reduction none, unique indices)': {
    inputs: [{ name: 'data', shape: [3, 4] }, { name: 'i', shape: [2, 2], constant: idx([0, 3, 2, 1]) }, { name: 'u', shape: [2] }],
    build: ([x, i, u]) => D.scatterND(x!, i!, u!, 'none'),
  },
};
