/**
 * Ops on images whose H and W may be symbolic (an inference export for any image size):
 * - `PatchConv`: ONNX Conv with kernel = stride = patch, [N, C, H, W] -> [N, D, H/p, W/p]. Its shape rule states
 *   that the patch divides H and W (static: checked; symbolic: the grid dims are named `H/p`, `W/p`, see
 *   `quotientDim` in shape.ts), so later ops can check their shapes against the patch grid.
 * - `ResizeCubic`: ONNX Resize, mode cubic, half_pixel, no antialias: torch's `F.interpolate(mode='bicubic',
 *   align_corners=False, scale_factor=...)` without recompute_scale_factor. The scales may be computed in the
 *   graph (from a runtime shape), so the output size is either derived from constant scales or named by the caller.
 *
 * Neither has a VJP: training graphs have static sizes, where the ViT uses the differentiable forms (patches by
 * Reshape + MatMul, the position-embedding resize as a constant-matrix MatMul; models/vit.ts). Both run on
 * ONNX Runtime's CPU, WASM and WebGPU execution providers, in float32.
 */
import { Tensor, type TensorInfo } from '../graph.ts';
import { cost, defineOp } from '../op.ts';
import { type Dim, dimEq, formatShape, isStatic, quotientDim } from '../shape.ts';
import { concat } from './layout.ts';

// ---- PatchConv -------------------------------------------------------------------------------------

export type PatchConvAttrs = {
  /** Both [p, q], the weight's kernel: every pixel belongs to exactly one patch. */
  readonly kernel_shape: readonly [number, number];
  readonly strides: readonly [number, number];
};

/** One patch-embedding Conv: kernel = stride = the patch, so H and W may be symbolic multiples of it. */
export const PatchConv = defineOp<PatchConvAttrs>({
  name: 'PatchConv',
  onnxType: 'Conv',
  attrTypes: { kernel_shape: 'ints', strides: 'ints' },
  // As Conv's: 2 · numel(output) · C · p · q for the products, plus numel(output) for the bias.
  flops: ({ inputs: [, w, b], outputs: [y], numel, dim }) => 2 * numel(y!) * dim(w!, 1) * dim(w!, 2) * dim(w!, 3) + (b ? numel(y!) : 0),
  infer: (ins, { kernel_shape: k, strides }) => {
    const [x, w, b] = ins as [TensorInfo, TensorInfo, TensorInfo | undefined];
    if (x.dtype !== 'float32' || w.dtype !== 'float32' || (b && b.dtype !== 'float32')) return 'expects float32 images, weight and bias';
    if (x.shape.length !== 4) return `images must be [N, C, H, W], got ${formatShape(x.shape)}`;
    if (w.shape.length !== 4 || !w.shape.every(isStatic)) return `weight must be a static [D, C, p, q], got ${formatShape(w.shape)}`;
    const [n, c, h, wd] = x.shape as [Dim, Dim, Dim, Dim];
    const [d, cw, p, q] = w.shape as [number, number, number, number];
    if (!dimEq(c, cw)) return `image channels ${c} differ from the weight's ${cw}`;
    if (k[0] !== p || k[1] !== q || strides[0] !== p || strides[1] !== q) return `kernel [${k}] and strides [${strides}] must both be the weight's patch [${p}, ${q}]`;
    if (b && (b.shape.length !== 1 || !dimEq(b.shape[0]!, d))) return `bias ${formatShape(b.shape)} must be [${d}]`;
    const rows = quotientDim(h, p), cols = quotientDim(wd, q);
    if (rows === undefined || cols === undefined) return `image size ${h} x ${wd} is not a multiple of the patch ${p} x ${q}`;
    return [{ dtype: 'float32', shape: [n, d, rows, cols] }];
  },
});

/** x [N, C, H, W] -> [N, D, H/p, W/q] for a weight [D, C, p, q] (and bias [D]). */
export function patchConv(x: Tensor, weight: Tensor, bias: Tensor | null): Tensor {
  const k: [number, number] = [weight.shape[2] as number, weight.shape[3] as number];
  return x.graph.apply(PatchConv, bias ? [x, weight, bias] : [x, weight], { kernel_shape: k, strides: k })[0]!;
}

// ---- ResizeCubic -----------------------------------------------------------------------------------

export type ResizeCubicAttrs = {
  readonly mode: 'cubic';
  /** The cubic convolution's A (torch: -0.75). */
  readonly cubic_coeff_a: number;
  /** src = (dst + 0.5) / scale - 0.5, not clamped: torch's align_corners=False for bicubic. */
  readonly coordinate_transformation_mode: 'half_pixel';
  /** Taps outside the input read the border (torch clamps the indices) rather than being dropped. */
  readonly exclude_outside: 0;
  /** Downscaling samples as upscaling does, as torch without `antialias`. */
  readonly antialias: 0;
  /** The output's H and W where the scales are computed in the graph (otherwise derived from the constant scales). */
  readonly size?: readonly [Dim, Dim];
};

/** floor(in * scale) as ONNX Runtime computes the output size (the scale is a float32). */
const scaledDim = (d: Dim, scale: number): Dim | undefined =>
  scale === 1 ? d : isStatic(d) ? Math.floor(d * Math.fround(scale)) : undefined;

export const ResizeCubic = defineOp<ResizeCubicAttrs>({
  name: 'ResizeCubic',
  onnxType: 'Resize',
  attrTypes: { mode: 'string', cubic_coeff_a: 'float', coordinate_transformation_mode: 'string', exclude_outside: 'int', antialias: 'int' },
  // A 4 x 4 weighted sum of taps per output element: 16 multiplies and 16 adds.
  flops: cost.perOutput(32),
  infer: (ins, { size }) => {
    const [x, roi, scales] = ins as [TensorInfo, TensorInfo, TensorInfo];
    if (x.dtype !== 'float32') return `expects float32, got ${x.dtype}`;
    if (x.shape.length !== 4) return `input must be [N, C, H, W], got ${formatShape(x.shape)}`;
    if (roi.dtype !== 'float32' || roi.shape.length !== 1 || roi.shape[0] !== 0) return `roi must be an empty float32 vector, got ${roi.dtype}${formatShape(roi.shape)}`;
    if (scales.dtype !== 'float32' || scales.shape.length !== 1 || scales.shape[0] !== 4) return `scales must be float32 [4], got ${scales.dtype}${formatShape(scales.shape)}`;
    const [n, c, h, w] = x.shape as [Dim, Dim, Dim, Dim];
    let out: [Dim | undefined, Dim | undefined] = [undefined, undefined];
    if (scales.value) {
      const s = Array.from(scales.value);
      if (s[0] !== 1 || s[1] !== 1) return `resizes H and W only: the scales of N and C must be 1, got [${s}]`;
      if (!(s[2]! > 0 && s[3]! > 0)) return `scales must be positive, got [${s}]`;
      out = [scaledDim(h, s[2]!), scaledDim(w, s[3]!)];
      if (out[0] === 0 || out[1] === 0) return `scales [${s}] leave no output for ${h} x ${w}`;
    }
    if (size) {
      for (let i = 0; i < 2; i++) {
        if (out[i] !== undefined && !dimEq(out[i]!, size[i]!)) return `size [${size}] differs from what the scales give, [${out}]`;
      }
      out = [size[0], size[1]];
    }
    if (out[0] === undefined || out[1] === undefined) return `the scales are computed in the graph and input ${formatShape(x.shape)} is symbolic: name the output size`;
    return [{ dtype: 'float32', shape: [n, c, out[0], out[1]] }];
  },
});

export interface ResizeCubicOptions {
  /** Output H and W, needed when `scales` is computed in the graph (a tensor that is not a constant). */
  readonly size?: readonly [Dim, Dim];
  /** Default -0.75, torch's. */
  readonly cubicCoeffA?: number;
}

/**
 * Bicubic resize of x [N, C, H, W] by `scales` (H and W scale factors: numbers, or a float32 [2] tensor computed in
 * the graph), as torch's `F.interpolate(x, scale_factor=scales, mode='bicubic', align_corners=False)`.
 */
export function resizeCubic(x: Tensor, scales: Tensor | readonly [number, number], opts: ResizeCubicOptions = {}): Tensor {
  const g = x.graph;
  const scales4 = scales instanceof Tensor
    ? concat([g.constant([1, 1], 'float32', [2]), scales], 0)
    : g.constant([1, 1, scales[0], scales[1]], 'float32', [4]);
  const attrs: ResizeCubicAttrs = {
    mode: 'cubic', cubic_coeff_a: opts.cubicCoeffA ?? -0.75, coordinate_transformation_mode: 'half_pixel', exclude_outside: 0, antialias: 0,
    ...(opts.size ? { size: opts.size } : {}),
  };
  return g.apply(ResizeCubic, [x, g.constant([], 'float32', [0]), scales4], attrs)[0]!;
}
