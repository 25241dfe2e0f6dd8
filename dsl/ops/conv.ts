/**
 * 2-D convolution and pooling, NCHW (ONNX Conv / ConvTranspose / MaxPool / AveragePool / GlobalAveragePool).
 *
 * Backward passes are standard ops too:
 *  - Conv: dx = ConvTranspose(g, w) with output_padding restoring the input's exact size when stride > 1;
 *    dw = a Conv that treats input channels as the batch and the batch as channels (dilation = forward
 *    stride), grouped by the forward groups; db = ReduceSum(g).
 *  - MaxPool: the backward recomputes MaxPool with its Indices output and scatter-adds g into zeros
 *    (ScatterElements, reduction 'add'), so overlapping windows (3x3 stride 2) accumulate correctly. The
 *    forward node has one output, so inference exports never carry Indices.
 *  - AveragePool: ConvTranspose of g / count with a ones kernel; count per output position honours
 *    count_include_pad (0: padded cells are not counted, as ONNX's default).
 * Spatial sizes must be static (the batch dim may be symbolic), except a Conv's input axis that the conv maps onto
 * itself (stride 1, pads summing to (kernel - 1) x dilation: "same" padding), which may be symbolic; only
 * inference graphs use that form (the backward pass needs static sizes).
 *
 * ORT 1.30's CPU EP runs Conv, ConvTranspose, AveragePool and GlobalAveragePool in float32 only (MaxPool
 * also in float64).
 */
import type { Tensor, TensorInfo } from '../graph.ts';
import { isFloat } from '../graph.ts';
import { type FlopArgs, cost, defineOp } from '../op.ts';
import { type Dim, dimEq, formatShape, isStatic, mulDims } from '../shape.ts';
import { div, mul } from './elementwise.ts';
import { expand, reshape, slice, transpose, zerosLike } from './layout.ts';
import { reduceSum } from './reduce.ts';
import { scatterElements } from './gather.ts';

export type Pair = readonly [number, number];
/** [top, left, bottom, right], ONNX's [x1_begin, x2_begin, x1_end, x2_end]. */
export type Pads4 = readonly [number, number, number, number];

const isPosInt = (v: number) => Number.isInteger(v) && v >= 1;
const isNonNegInt = (v: number) => Number.isInteger(v) && v >= 0;

/** Output size of a sliding window along one axis (ONNX floor mode). */
function windowCount(size: number, k: number, s: number, d: number, p0: number, p1: number): number {
  return Math.floor((size + p0 + p1 - (k - 1) * d - 1) / s) + 1;
}

/** Input cells past the last window along one axis: what ConvTranspose's output_padding must restore. */
function leftover(size: number, k: number, s: number, d: number, p0: number, p1: number, out: number): number {
  return size + p0 + p1 - (k - 1) * d - 1 - s * (out - 1);
}

function checkWindow(strides: Pair, pads: Pads4, dilations: Pair): string | undefined {
  if (strides.length !== 2 || !strides.every(isPosInt)) return `strides [${strides}] must be two positive integers`;
  if (dilations.length !== 2 || !dilations.every(isPosInt)) return `dilations [${dilations}] must be two positive integers`;
  if (pads.length !== 4 || !pads.every(isNonNegInt)) return `pads [${pads}] must be four non-negative integers [top, left, bottom, right]`;
  return undefined;
}

/** Checks x is a float NCHW tensor with static H, W (unless `symbolicHW`); returns an error message or undefined. */
function checkNCHW(x: TensorInfo, what: string, symbolicHW = false): string | undefined {
  if (!isFloat(x.dtype)) return `${what} must be float, got ${x.dtype}`;
  if (x.shape.length !== 4) return `${what} must have rank 4 [N, C, H, W], got ${formatShape(x.shape)}`;
  if (!symbolicHW && (!isStatic(x.shape[2]!) || !isStatic(x.shape[3]!))) return `${what} ${formatShape(x.shape)} needs static H and W`;
  return undefined;
}

// ---- Conv ------------------------------------------------------------------------------------------

export type ConvAttrs = {
  readonly strides: Pair;
  readonly pads: Pads4;
  readonly dilations: Pair;
  readonly group: number;
};
export interface Conv2dOptions {
  readonly strides?: Pair;
  readonly pads?: Pads4;
  readonly dilations?: Pair;
  readonly group?: number;
}
const convAttrs = (o: Conv2dOptions): ConvAttrs => ({
  strides: o.strides ?? [1, 1],
  pads: o.pads ?? [0, 0, 0, 0],
  dilations: o.dilations ?? [1, 1],
  group: o.group ?? 1,
});

/** Bias input: [channels], same dtype as x. */
function checkBias(b: TensorInfo | undefined, x: TensorInfo, channels: Dim): string | undefined {
  if (!b) return undefined;
  if (b.dtype !== x.dtype) return `dtype mismatch: x ${x.dtype} vs bias ${b.dtype}`;
  if (b.shape.length !== 1 || !dimEq(b.shape[0]!, channels)) return `bias ${formatShape(b.shape)} must be [${channels}]`;
  return undefined;
}

export const Conv = defineOp<ConvAttrs>({
  name: 'Conv',
  // 2 × numel(output) × (Cin / group) × kh × kw, plus numel(output) for the bias.
  flops: ({ inputs: [, w, b], outputs: [y], numel, dim }) =>
    2 * numel(y!) * dim(w!, 1) * dim(w!, 2) * dim(w!, 3) + (b ? numel(y!) : 0),
  attrTypes: { strides: 'ints', pads: 'ints', dilations: 'ints', group: 'int' },
  infer: (ins, { strides, pads, dilations, group }) => {
    const [x, w, b] = ins as [TensorInfo, TensorInfo, TensorInfo | undefined];
    const bad = checkNCHW(x, 'input', true) ?? checkNCHW(w, 'weight') ?? checkWindow(strides, pads, dilations);
    if (bad) return bad;
    if (w.dtype !== x.dtype) return `dtype mismatch: x ${x.dtype} vs weight ${w.dtype}`;
    if (!isPosInt(group)) return `group ${group} must be a positive integer`;
    const [n, c, h, wd] = x.shape as [Dim, Dim, Dim, Dim];
    const [o, cg, kh, kw] = w.shape as [Dim, Dim, number, number];
    for (const axis of [0, 1]) {
      const keepsSize = strides[axis] === 1 && pads[axis]! + pads[axis + 2]! === (w.shape[2 + axis] as number - 1) * dilations[axis]!;
      if (!isStatic(x.shape[2 + axis]!) && !keepsSize) {
        return `input ${formatShape(x.shape)} needs static H and W (a symbolic one only where the conv keeps its size: stride 1, pads summing to (kernel - 1) x dilation)`;
      }
    }
    if (!dimEq(c, mulDims(cg, group))) {
      return `input channels ${c} must equal weight dim 1 (${cg}) x group (${group}): x ${formatShape(x.shape)}, weight ${formatShape(w.shape)}`;
    }
    if (isStatic(o) && o % group !== 0) return `output channels ${o} (weight dim 0) are not divisible by group ${group}`;
    const badBias = checkBias(b, x, o);
    if (badBias) return badBias;
    const ho = isStatic(h) ? windowCount(h, kh, strides[0], dilations[0], pads[0], pads[2]) : h;
    const wo = isStatic(wd) ? windowCount(wd, kw, strides[1], dilations[1], pads[1], pads[3]) : wd;
    if ((isStatic(ho) && ho < 1) || (isStatic(wo) && wo < 1)) return `kernel ${kh}x${kw} (dilations [${dilations}]) does not fit input ${h}x${wd} with pads [${pads}]`;
    return [{ dtype: x.dtype, shape: [n, o, ho, wo] }];
  },
  vjp: ({ inputs: [x, w, b], attrs, grads: [g] }) => {
    const { strides: s, pads: p, dilations: d, group } = attrs;
    const [kh, kw] = [w!.dim(2), w!.dim(3)];
    const outputPadding: Pair = [
      leftover(x!.dim(2), kh, s[0], d[0], p[0], p[2], g!.dim(2)),
      leftover(x!.dim(3), kw, s[1], d[1], p[1], p[3], g!.dim(3)),
    ];
    const dx = convTranspose2d(g!, w!, null, { strides: s, pads: p, dilations: d, group, outputPadding });
    const dw = convWeightGrad(x!, g!, [kh, kw], attrs);
    return b ? [dx, dw, reduceSum(g!, [0, 2, 3])] : [dx, dw];
  },
});

/**
 * ONNX Conv over NCHW: x [N, C, H, W], w [O, C/group, kh, kw], b [O] or null.
 * `pads` = [top, left, bottom, right]; `group` = C gives a depthwise convolution.
 */
export function conv2d(x: Tensor, w: Tensor, b: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  return x.graph.apply(Conv, b ? [x, w, b] : [x, w], convAttrs(opts))[0]!;
}

/**
 * d<g, conv(x, w)>/dw for a conv with input x [N, C, H, W] and cotangent gy [N, O, Ho, Wo]:
 * dw[o, c, i, j] = sum_{n, y, x} gy[n, o, y, x] xpad[n, group(o) C/g + c, y s + i d, x s + j d],
 * i.e. a Conv whose batch is the in-group channel c, whose channels are (group, n), whose kernel is gy,
 * with stride = forward dilation and dilation = forward stride. Cells no window reaches are cropped so
 * the result has exactly the kernel's size.
 */
function convWeightGrad(x: Tensor, gy: Tensor, kernel: Pair, { strides: s, pads: p, dilations: d, group }: ConvAttrs): Tensor {
  let xin = x;
  const endPads = [0, 1].map((i) => {
    const size = x.dim(2 + i);
    const endPad = p[2 + i]! - leftover(size, kernel[i]!, s[i]!, d[i]!, p[i]!, p[2 + i]!, gy.dim(2 + i));
    if (endPad < 0) xin = slice(xin, [0], [size + endPad], [2 + i]);
    return Math.max(0, endPad);
  });
  const [n, c] = [x.shape[0]!, x.dim(1)];
  const [h, w] = [xin.dim(2), xin.dim(3)];
  const cg = c / group;
  const xT = group === 1
    ? transpose(xin, [1, 0, 2, 3])
    : reshape(transpose(reshape(xin, [n, group, cg, h, w]), [2, 1, 0, 3, 4]), [cg, mulDims(group, n), h, w]);
  const gT = transpose(gy, [1, 0, 2, 3]);
  const dwT = conv2d(xT, gT, null, { strides: d, dilations: s, pads: [p[0], p[1], endPads[0]!, endPads[1]!], group });
  return transpose(dwT, [1, 0, 2, 3]);
}

// ---- ConvTranspose -------------------------------------------------------------------------------

export type ConvTransposeAttrs = ConvAttrs & {
  readonly output_padding: Pair;
};
export interface ConvTranspose2dOptions extends Conv2dOptions {
  /** Extra cells at the bottom/right of the output (each < stride). */
  readonly outputPadding?: Pair;
}

export const ConvTranspose = defineOp<ConvTransposeAttrs>({
  name: 'ConvTranspose',
  // Each input cell is scattered into a window: 2 × numel(input) × (Cout / group) × kh × kw, plus the bias.
  flops: ({ inputs: [x, w, b], outputs: [y], numel, dim }) =>
    2 * numel(x!) * dim(w!, 1) * dim(w!, 2) * dim(w!, 3) + (b ? numel(y!) : 0),
  attrTypes: { strides: 'ints', pads: 'ints', dilations: 'ints', group: 'int', output_padding: 'ints' },
  infer: (ins, { strides, pads, dilations, group, output_padding: op }) => {
    const [x, w, b] = ins as [TensorInfo, TensorInfo, TensorInfo | undefined];
    const bad = checkNCHW(x, 'input') ?? checkNCHW(w, 'weight') ?? checkWindow(strides, pads, dilations);
    if (bad) return bad;
    if (w.dtype !== x.dtype) return `dtype mismatch: x ${x.dtype} vs weight ${w.dtype}`;
    if (!isPosInt(group)) return `group ${group} must be a positive integer`;
    if (op.length !== 2 || !op.every((v, i) => isNonNegInt(v) && v < strides[i]!)) {
      return `output_padding [${op}] must be two non-negative integers below the strides [${strides}]`;
    }
    const [n, c, h, wd] = x.shape as [Dim, Dim, number, number];
    const [ci, cog, kh, kw] = w.shape as [Dim, Dim, number, number];
    if (!dimEq(c, ci)) return `input channels ${c} must equal weight dim 0 (${ci}): x ${formatShape(x.shape)}, weight ${formatShape(w.shape)}`;
    if (isStatic(c) && c % group !== 0) return `input channels ${c} are not divisible by group ${group}`;
    const o = mulDims(cog, group);
    const badBias = checkBias(b, x, o);
    if (badBias) return badBias;
    const ho = strides[0] * (h - 1) + op[0] + (kh - 1) * dilations[0] + 1 - pads[0] - pads[2];
    const wo = strides[1] * (wd - 1) + op[1] + (kw - 1) * dilations[1] + 1 - pads[1] - pads[3];
    if (ho < 1 || wo < 1) return `pads [${pads}] leave no output for input ${h}x${wd} and kernel ${kh}x${kw}`;
    return [{ dtype: x.dtype, shape: [n, o, ho, wo] }];
  },
  // ConvTranspose is the adjoint of Conv in its input: dx = Conv(g, w); dw is Conv's weight gradient
  // with the roles of input (g) and cotangent (x) exchanged.
  vjp: ({ inputs: [x, w, b], attrs, grads: [g] }) => {
    const { strides, pads, dilations, group } = attrs;
    const dx = conv2d(g!, w!, null, { strides, pads, dilations, group });
    const dw = convWeightGrad(g!, x!, [w!.dim(2), w!.dim(3)], attrs);
    return b ? [dx, dw, reduceSum(g!, [0, 2, 3])] : [dx, dw];
  },
});

/** ONNX ConvTranspose over NCHW: x [N, C, H, W], w [C, O/group, kh, kw], b [O] or null. */
export function convTranspose2d(x: Tensor, w: Tensor, b: Tensor | null, opts: ConvTranspose2dOptions = {}): Tensor {
  const attrs: ConvTransposeAttrs = { ...convAttrs(opts), output_padding: opts.outputPadding ?? [0, 0] };
  return x.graph.apply(ConvTranspose, b ? [x, w, b] : [x, w], attrs)[0]!;
}

// ---- MaxPool / AveragePool -----------------------------------------------------------------------

export type PoolAttrs = {
  readonly kernel_shape: Pair;
  readonly strides: Pair;
  readonly pads: Pads4;
};
export interface Pool2dOptions {
  readonly kernel: Pair;
  /** Default [1, 1] (ONNX's default; PyTorch defaults the stride to the kernel). */
  readonly strides?: Pair;
  readonly pads?: Pads4;
}
const poolAttrs = (o: Pool2dOptions): PoolAttrs => ({ kernel_shape: o.kernel, strides: o.strides ?? [1, 1], pads: o.pads ?? [0, 0, 0, 0] });

/** kh·kw per output element (a compare or an add per window cell). */
const poolFlops = ({ outputs: [y], attrs: { kernel_shape: k }, numel }: FlopArgs<PoolAttrs>) => numel(y!) * k[0] * k[1];

function poolInfer(ins: readonly TensorInfo[], { kernel_shape: k, strides, pads }: PoolAttrs): TensorInfo[] | string {
  const x = ins[0]!;
  const bad = checkNCHW(x, 'input') ?? checkWindow(strides, pads, [1, 1]);
  if (bad) return bad;
  if (k.length !== 2 || !k.every(isPosInt)) return `kernel [${k}] must be two positive integers`;
  // ONNX Runtime rejects a pad as large as the kernel (a window entirely in the padding).
  if (pads.some((pv, i) => pv >= k[i % 2]!)) return `pads [${pads}] must be smaller than the kernel [${k}]`;
  const [n, c, h, w] = x.shape as [Dim, Dim, number, number];
  const ho = windowCount(h, k[0], strides[0], 1, pads[0], pads[2]);
  const wo = windowCount(w, k[1], strides[1], 1, pads[1], pads[3]);
  if (ho < 1 || wo < 1) return `kernel [${k}] does not fit input ${h}x${w} with pads [${pads}]`;
  return [{ dtype: x.dtype, shape: [n, c, ho, wo] }];
}

/** MaxPool with its Indices output (flat indices into N*C*H*W, padding not counted); used by MaxPool's backward. */
export const MaxPoolWithIndices = defineOp<PoolAttrs>({
  name: 'MaxPoolWithIndices',
  flops: poolFlops,
  onnxType: 'MaxPool',
  attrTypes: { kernel_shape: 'ints', strides: 'ints', pads: 'ints' },
  outputCount: () => 2,
  infer: (ins, attrs) => {
    const r = poolInfer(ins, attrs);
    return typeof r === 'string' ? r : [r[0]!, { dtype: 'int64', shape: r[0]!.shape }];
  },
});

export const MaxPool = defineOp<PoolAttrs>({
  name: 'MaxPool',
  flops: poolFlops,
  attrTypes: { kernel_shape: 'ints', strides: 'ints', pads: 'ints' },
  infer: poolInfer,
  // The gradient goes to each window's arg-max; windows that share an arg-max add up.
  vjp: ({ inputs: [x], attrs, grads: [g] }) => {
    const [, indices] = x!.graph.apply(MaxPoolWithIndices, [x!], attrs);
    const flat = reshape(x!, [-1]);
    const dx = scatterElements(zerosLike(flat), reshape(indices!, [-1]), reshape(g!, [-1]), 0, 'add');
    return [reshape(dx, x!.shape)];
  },
});
/** Max pooling over H, W (padding acts as -infinity). */
export const maxPool2d = (x: Tensor, opts: Pool2dOptions): Tensor => x.graph.apply(MaxPool, [x], poolAttrs(opts))[0]!;

export type AveragePoolAttrs = PoolAttrs & {
  readonly count_include_pad: boolean;
};
export interface AveragePool2dOptions extends Pool2dOptions {
  /** Count padded cells in each window's divisor (default false, ONNX's default; PyTorch's AvgPool2d defaults to true). */
  readonly countIncludePad?: boolean;
}

export const AveragePool = defineOp<AveragePoolAttrs>({
  name: 'AveragePool',
  flops: poolFlops,
  attrTypes: { kernel_shape: 'ints', strides: 'ints', pads: 'ints', count_include_pad: 'int' },
  infer: poolInfer,
  vjp: ({ inputs: [x], attrs, grads: [g] }) => {
    const { kernel_shape: k, strides: s, pads: p, count_include_pad } = attrs;
    const [n, c, h, w] = [x!.shape[0]!, x!.dim(1), x!.dim(2), x!.dim(3)];
    const [ho, wo] = [g!.dim(2), g!.dim(3)];
    const scaled = count_include_pad ? div(g!, k[0] * k[1]) : mul(g!, inverseWindowCounts(x!, attrs, ho, wo));
    // Each output spreads its share over its window: a ConvTranspose with a ones kernel, one channel at a time.
    const ones = x!.graph.constant(new Array<number>(k[0] * k[1]).fill(1), x!.dtype, [1, 1, k[0], k[1]]);
    const outputPadding: Pair = [leftover(h, k[0], s[0], 1, p[0], p[2], ho), leftover(w, k[1], s[1], 1, p[1], p[3], wo)];
    const dx = convTranspose2d(reshape(scaled, [mulDims(n, c), 1, ho, wo]), ones, null, { strides: s, pads: p, outputPadding });
    return [reshape(dx, x!.shape)];
  },
});

/** 1 / (number of real, unpadded input cells) of each output window, as an [Ho, Wo] constant. */
function inverseWindowCounts(x: Tensor, { kernel_shape: k, strides: s, pads: p }: PoolAttrs, ho: number, wo: number): Tensor {
  const covered = (o: number, i: 0 | 1) => {
    const start = o * s[i] - p[i];
    return Math.min(start + k[i], x.dim(2 + i)) - Math.max(start, 0);
  };
  const data: number[] = [];
  for (let oy = 0; oy < ho; oy++) for (let ox = 0; ox < wo; ox++) data.push(1 / (covered(oy, 0) * covered(ox, 1)));
  return x.graph.constant(data, x.dtype, [ho, wo]);
}

/** Average pooling over H, W; see `countIncludePad`. */
export function averagePool2d(x: Tensor, opts: AveragePool2dOptions): Tensor {
  return x.graph.apply(AveragePool, [x], { ...poolAttrs(opts), count_include_pad: opts.countIncludePad ?? false })[0]!;
}

// ---- GlobalAveragePool ---------------------------------------------------------------------------

export const GlobalAveragePool = defineOp({
  name: 'GlobalAveragePool',
  flops: cost.perInput(1),
  infer: (ins) => {
    const x = ins[0]!;
    if (!isFloat(x.dtype)) return `input must be float, got ${x.dtype}`;
    if (x.shape.length < 3) return `input must have rank >= 3 [N, C, spatial...], got ${formatShape(x.shape)}`;
    if (!x.shape.slice(2).every(isStatic)) return `input ${formatShape(x.shape)} needs static spatial dims`;
    return [{ dtype: x.dtype, shape: x.shape.map((dm, i) => (i < 2 ? dm : 1)) }];
  },
  vjp: ({ inputs: [x], grads: [g] }) => {
    const count = x!.shape.slice(2).reduce<number>((a, dm) => a * (dm as number), 1);
    return [div(expand(g!, x!.shape), count)];
  },
});
/** Mean over all spatial dims: [N, C, H, W] -> [N, C, 1, 1]. */
export const globalAveragePool = (x: Tensor): Tensor => x.graph.apply(GlobalAveragePool, [x])[0]!;
