/**
 * Gradient-check cases for convolution and pooling.
 *
 * ORT 1.30's CPU EP has no float64 Conv, ConvTranspose, AveragePool or GlobalAveragePool kernel, so those
 * run in float32. They are linear in each input (bilinear in x and w), so the central difference has no
 * truncation error for any step: a large step h = 0.5 makes float32 rounding of the loss (about 1e-7 |L|,
 * |L| ~ 10) negligible after dividing by 2h, and 1e-3 relative is a bound with a wide margin (measured errors
 * are ~1e-5). MaxPool has a float64 kernel and is checked at the default h = 1e-6 on random normal inputs,
 * whose window maxima are separated by far more than h.
 */
import * as D from '../../../dsl/index.ts';
import type { GradCheckSpec } from '../../helpers/gradcheck.ts';

const linear32 = { dtype: 'float32', eps: 0.5, tol: 1e-3, directions: 5 } as const;

export const convCases: Record<string, GradCheckSpec> = {
  // stride 2, asymmetric pads, a non-square kernel; along H the last input row is reached by no window
  // (the weight gradient crops it, the input gradient gets output_padding 1)
  Conv: {
    inputs: [{ name: 'x', shape: [2, 3, 7, 6] }, { name: 'w', shape: [4, 3, 3, 2] }, { name: 'b', shape: [4] }],
    build: ([x, w, b]) => D.conv2d(x!, w!, b!, { strides: [2, 2], pads: [1, 0, 0, 1] }),
    ...linear32,
  },
  'Conv (depthwise, group = C, stride 2, no bias)': {
    inputs: [{ name: 'x', shape: [2, 4, 6, 5] }, { name: 'w', shape: [4, 1, 3, 3] }],
    build: ([x, w]) => D.conv2d(x!, w!, null, { strides: [2, 2], pads: [1, 1, 1, 1], group: 4 }),
    ...linear32,
  },
  'Conv (group = 2, two channels a group, dilation 2)': {
    inputs: [{ name: 'x', shape: [2, 4, 7, 7] }, { name: 'w', shape: [6, 2, 2, 3] }, { name: 'b', shape: [6] }],
    build: ([x, w, b]) => D.conv2d(x!, w!, b!, { strides: [1, 2], pads: [0, 1, 1, 0], dilations: [2, 1], group: 2 }),
    ...linear32,
  },
  ConvTranspose: {
    inputs: [{ name: 'x', shape: [2, 4, 3, 4] }, { name: 'w', shape: [4, 3, 3, 2] }, { name: 'b', shape: [3] }],
    build: ([x, w, b]) => D.convTranspose2d(x!, w!, b!, { strides: [2, 2], pads: [1, 0, 0, 1], outputPadding: [1, 0] }),
    ...linear32,
  },
  'ConvTranspose (group = 2)': {
    inputs: [{ name: 'x', shape: [2, 4, 3, 3] }, { name: 'w', shape: [4, 1, 2, 2] }],
    build: ([x, w]) => D.convTranspose2d(x!, w!, null, { strides: [2, 1], group: 2 }),
    ...linear32,
  },
  // overlapping windows (stride < kernel), non-square kernel, padding on three sides
  MaxPool: {
    inputs: [{ name: 'x', shape: [2, 3, 7, 7] }],
    build: ([x]) => D.maxPool2d(x!, { kernel: [3, 2], strides: [2, 1], pads: [1, 0, 1, 1] }),
    elementwiseLimit: 300,
  },
  'MaxPool (3x3 stride 2 pad 1, as the ResNet stem)': {
    inputs: [{ name: 'x', shape: [2, 2, 8, 8] }],
    build: ([x]) => D.maxPool2d(x!, { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }),
    elementwiseLimit: 300,
  },
  // count_include_pad 0: border windows divide by their unpadded cell count; W leaves one column unreached
  AveragePool: {
    inputs: [{ name: 'x', shape: [2, 3, 7, 6] }],
    build: ([x]) => D.averagePool2d(x!, { kernel: [3, 2], strides: [2, 2], pads: [1, 1, 1, 0] }),
    ...linear32,
    elementwiseLimit: 300,
  },
  'AveragePool (count_include_pad)': {
    inputs: [{ name: 'x', shape: [1, 2, 5, 5] }],
    build: ([x]) => D.averagePool2d(x!, { kernel: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], countIncludePad: true }),
    ...linear32,
    elementwiseLimit: 300,
  },
  GlobalAveragePool: {
    inputs: [{ name: 'x', shape: [2, 3, 4, 5] }],
    build: ([x]) => D.globalAveragePool(x!),
    ...linear32,
    elementwiseLimit: 300,
  },
};
