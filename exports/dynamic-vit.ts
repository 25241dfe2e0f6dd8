/**
 * The ViT inference graph with dynamic H and W (any multiples of the patch size), for `exportTeacher({ dynamicSize })`.
 *
 * The transformer blocks are the DSL model's own (`block` from models/vit.ts, token count symbolic `T`). What
 * differs from `visionTransformer` is what depends on the image size, which the DSL's static shape rules cannot
 * express, so it is written with a few inference-only "raw" ops (default-domain ONNX, output shape given by the
 * builder):
 * - patch embedding: a strided Conv (kernel = stride = patch), flattened to [N, P, D];
 * - position embedding: DINO's `interpolate_pos_encoding` inside the graph: the table's S x S grid is resized by
 *   `Resize` (mode cubic, A = -0.75, half_pixel, no antialias) with scales ((rows + 0.1) / S, (cols + 0.1) / S)
 *   computed from `Shape(images)`, and exactly 1 when rows = cols = S (cubic at scale 1 is the identity, so the
 *   table is used unchanged, as DINO does). ONNX's half_pixel rule, src = (dst + 0.5) / scale - 0.5, is torch's for
 *   `F.interpolate(scale_factor=...)` without recompute_scale_factor, and the output size floor(S * scale) is
 *   torch's too. ORT implements Resize cubic on CPU, WASM and WebGPU (JSEP `resize.ts`).
 * - slices over the symbolic token axis ([CLS] row, patch tokens, [CLS] attention row).
 */
import {
  type AttrType,
  type DType,
  type FlopArgs,
  Graph,
  Scope,
  type Shape,
  type Tensor,
  add,
  cast,
  cost,
  defineOp,
  div,
  reshape,
  slice,
  transpose,
} from '../dsl/index.ts';
import { layerNorm } from '../models/layers.ts';
import { type ViTConfig, block, tableGrid } from '../models/vit.ts';
import { TRUNC_NORMAL_02, floatType, torchDefaultInit } from '../models/layers.ts';
import { normalizeImages } from './normalize.ts';

interface RawAttrs {
  readonly outShape: Shape;
  readonly outDtype: DType;
  readonly [attr: string]: unknown;
}

const RAW_ATTRS: Record<string, Record<string, AttrType>> = {
  Conv: { strides: 'ints', kernel_shape: 'ints' },
  Reshape: {},
  Concat: { axis: 'int' },
  Slice: {},
  Shape: {},
  Gather: { axis: 'int' },
  Expand: {},
  Resize: { mode: 'string', cubic_coeff_a: 'float', coordinate_transformation_mode: 'string', exclude_outside: 'int', antialias: 'int' },
  Equal: {},
  And: {},
  Where: {},
};

/** FLOPs of the raw ops by dsl/flops.ts's convention; the others only move data. */
const RAW_FLOPS: Record<string, (args: FlopArgs<RawAttrs>) => number> = {
  Conv: ({ inputs: [, w, b], outputs: [y], numel, dim }) => 2 * numel(y!) * dim(w!, 1) * dim(w!, 2) * dim(w!, 3) + (b ? numel(y!) : 0),
  Resize: cost.perOutput(32), // bicubic: 4 x 4 taps, a multiply-add each
  Equal: cost.elementwise,
  And: cost.elementwise,
  Where: cost.elementwise,
};

/** Inference-only ops whose output shape the builder states (never differentiated). Registered once. */
const RAW = Object.fromEntries(
  Object.entries(RAW_ATTRS).map(([onnxType, attrTypes]) => [
    onnxType,
    defineOp<RawAttrs>({
      name: `${onnxType}Dynamic`,
      onnxType,
      attrTypes,
      flops: RAW_FLOPS[onnxType] ?? cost.free,
      infer: (_ins, { outShape, outDtype }) => [{ dtype: outDtype, shape: outShape }],
    }),
  ]),
);

function raw(onnxType: string, inputs: Tensor[], outShape: Shape, attrs: Record<string, unknown> = {}, outDtype: DType = 'float32'): Tensor {
  return inputs[0]!.graph.apply(RAW[onnxType]!, inputs, { ...attrs, outShape, outDtype })[0]!;
}

const int64 = (g: Graph, values: number[]) => g.constant(values, 'int64', [values.length]);
/** INT64_MAX as ONNX Slice's "to the end" (exactly representable as a double). */
const TO_END = 2 ** 62;

/** `patch_embed` with symbolic H, W: Conv(kernel = stride = patch) -> [N, P, D]. Same parameters as the static one. */
function patchEmbedDynamic(s: Scope, images: Tensor, cfg: ViTConfig): Tensor {
  return s.run(() => {
    const p = cfg.patchSize, c = cfg.inChans, d = cfg.embedDim;
    const proj = s.child('proj');
    const weight = proj.param('weight', [d, c, p, p], torchDefaultInit(c * p * p), { dtype: floatType(images) });
    const bias = proj.param('bias', [d], torchDefaultInit(c * p * p), { dtype: floatType(images) });
    return proj.run(() => {
      const conv = raw('Conv', [images, weight, bias], ['N', d, 'rows', 'cols'], { strides: [p, p], kernel_shape: [p, p] });
      const flat = raw('Reshape', [conv, int64(s.graph, [0, d, -1])], ['N', d, 'P']);
      return transpose(flat, [0, 2, 1]);
    });
  });
}

/** [1, T, D]: the [CLS] position row and the table resized in-graph to the image's patch grid. */
function positionEmbeddingDynamic(g: Graph, posEmbed: Tensor, images: Tensor, cfg: ViTConfig): Tensor {
  return g.within('pos_embed', () => {
    const side = tableGrid(cfg), d = cfg.embedDim;
    const clsPos = slice(posEmbed, [0], [1], [1]);
    const grid = transpose(reshape(slice(posEmbed, [1], [1 + side * side], [1]), [1, side, side, d]), [0, 3, 1, 2]); // [1, D, S, S]
    // rows, cols = H / p, W / p as float scalars, from the runtime shape of the images
    const shape = raw('Shape', [images], [4], {}, 'int64');
    const hw = cast(raw('Gather', [shape, int64(g, [2, 3])], [2], { axis: 0 }, 'int64'), 'float32');
    const grid2 = div(hw, cfg.patchSize); // [rows, cols]
    const native = raw('Equal', [grid2, g.constant([side, side], 'float32', [2])], [2], {}, 'bool');
    const bothNative = raw('And', [slice(native, [0], [1], [0]), slice(native, [1], [2], [0])], [1], {}, 'bool');
    const scaled = div(add(grid2, 0.1), side); // DINO's (n + 0.1) / S
    const scale2 = raw('Where', [bothNative, g.constant([1, 1], 'float32', [2]), scaled], [2]);
    const scales = raw('Concat', [g.constant([1, 1], 'float32', [2]), scale2], [4], { axis: 0 });
    const roi = g.constant([], 'float32', [0]);
    const resized = raw('Resize', [grid, roi, scales], [1, d, 'rows', 'cols'], {
      mode: 'cubic', cubic_coeff_a: -0.75, coordinate_transformation_mode: 'half_pixel', exclude_outside: 0, antialias: 0,
    });
    const table = raw('Reshape', [transpose(resized, [0, 2, 3, 1]), int64(g, [1, -1, d])], [1, 'P', d]);
    return raw('Concat', [clsPos, table], [1, 'T', d], { axis: 1 });
  });
}

/** The dynamic-size inference graph: input images ['N', C, 'H', 'W']; outputs as the fixed-size export. */
export function buildDynamicTeacherGraph(cfg: ViTConfig, opts: { mean: readonly number[]; std: readonly number[] }): Graph {
  const g = new Graph('dino_teacher');
  const d = cfg.embedDim;
  const images = g.input('images', 'float32', ['N', cfg.inChans, 'H', 'W']);
  const x0 = normalizeImages(g, images, cfg.inChans, opts.mean, opts.std);
  const s = new Scope(g);
  const patches = patchEmbedDynamic(s.child('patch_embed'), x0, cfg);
  const clsToken = s.param('cls_token', [1, 1, d], TRUNC_NORMAL_02);
  const posEmbed = s.param('pos_embed', [1, tableGrid(cfg) ** 2 + 1, d], TRUNC_NORMAL_02);
  const pos = positionEmbeddingDynamic(g, posEmbed, images, cfg);
  // [CLS] broadcast over the batch: Expand(cls_token, [N, 1, D]) with N from Shape(images).
  const clsRows = g.within('cls_token', () => {
    const n = raw('Gather', [raw('Shape', [images], [4], {}, 'int64'), int64(g, [0])], [1], { axis: 0 }, 'int64');
    return raw('Expand', [clsToken, raw('Concat', [n, int64(g, [1, d])], [3], { axis: 0 }, 'int64')], ['N', 1, d]);
  });
  let x = add(raw('Concat', [clsRows, patches], ['N', 'T', d], { axis: 1 }), pos);
  let attention = x;
  for (let i = 0; i < cfg.depth; i++) {
    const out = block(s.child('blocks').child(i), x, cfg);
    x = out.x;
    attention = out.attention;
  }
  const tokens = layerNorm(s.child('norm'), x, d, cfg.layerNormEps);
  g.within('outputs', () => {
    const zero = int64(g, [0]), one = int64(g, [1]), end = int64(g, [TO_END]), axis1 = int64(g, [1]);
    g.output('features', raw('Reshape', [raw('Slice', [tokens, zero, one, axis1], ['N', 1, d]), int64(g, [0, d])], ['N', d]));
    g.output('patch_tokens', raw('Slice', [tokens, one, end, axis1], ['N', 'P', d]));
    // attention [N, heads, T, T]: the [CLS] query row (axis 2, index 0) over the patch keys (axis 3, 1..T-1)
    const row = raw('Slice', [attention, int64(g, [0, 1]), int64(g, [1, TO_END]), int64(g, [2, 3])], ['N', cfg.numHeads, 1, 'P']);
    g.output('cls_attention', raw('Reshape', [row, int64(g, [0, cfg.numHeads, -1])], ['N', cfg.numHeads, 'P']));
  });
  return g;
}
