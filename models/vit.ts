/**
 * The Vision Transformer of DINO (facebookresearch/dino `vision_transformer.py`), written in the DSL.
 *
 * How to read (and how to write your own model):
 * - A module is a function `(s: Scope, x: Tensor, ...) => Tensor`. Its body runs inside `s.run(...)`,
 *   so every node it creates is named after the module path (`blocks.3.attn/MatMul`) in the ONNX graph.
 * - Sub-modules get child scopes: `linear(s.child('qkv'), ...)` creates `blocks.3.attn.qkv.weight`.
 *   Parameter names therefore equal the keys of DINO's `state_dict`, and layouts are PyTorch's
 *   (`Linear.weight` is [out, in], `patch_embed.proj.weight` is the Conv2d's [D, C, p, p]).
 * - Shapes are checked while the graph is built; a mistake is reported with its module path.
 * - Randomness (stochastic depth) is not drawn inside the graph: per-sample keep masks come in as a
 *   graph input, sampled in TS from the run's seeded PRNG (`sampleDropPathMasks`).
 * - H and W may be symbolic (`['N', C, 'H', 'W']`: the inference export for any image size). The patch grid is then
 *   `H/p` x `W/p` and the three size-dependent steps (patch embedding, position embedding, [CLS]) switch to forms
 *   ONNX Runtime can run for sizes known only at run time; the blocks and outputs are the same code.
 */
import {
  type Dim,
  ExpandToShapeOf,
  type Prng,
  type Scope,
  TO_END,
  type Tensor,
  add,
  and,
  autocastMatmul,
  cast,
  concat,
  conv2d,
  div,
  equal,
  gather,
  gelu,
  matmul,
  mul,
  mulDims,
  pad,
  patchConv,
  quotientDim,
  reshape,
  resizeCubic,
  shapeOf,
  slice,
  softmax,
  split,
  squeeze,
  transpose,
  transposeLast2,
  where,
} from '../dsl/index.ts';
import { TRUNC_NORMAL_02, floatType, layerNorm, linear, linearFeatureMajor, torchDefaultInit } from './layers.ts';

/** A ViT backbone (DINO's `VisionTransformer` with `num_classes=0`). */
export interface ViTConfig {
  readonly kind: 'vit';
  /**
   * Side in pixels of the square training crop (DINO: 224, the global crops). It fixes the size of the
   * learned position-embedding table, (imgSize / patchSize)^2 + 1 rows; other crop sizes (local crops)
   * interpolate that table bicubically.
   */
  readonly imgSize: number;
  /**
   * Side in pixels of the square patches (DINO default 16). Smaller patches give better features but
   * cost more memory and compute (tokens grow with 1/p^2; attention with 1/p^4). DINO advises against
   * fp16 training below 16.
   */
  readonly patchSize: number;
  /** Input channels (3 for RGB, 1 for Fashion-MNIST). */
  readonly inChans: number;
  /** Token width D (vit_tiny 192, vit_small 384, vit_base 768). */
  readonly embedDim: number;
  /** Number of transformer blocks (12 for all of DINO's ViTs). */
  readonly depth: number;
  /** Attention heads; `embedDim` must be divisible by it (head_dim 64 in DINO's ViTs). */
  readonly numHeads: number;
  /** MLP hidden width = mlpRatio * embedDim (4 in DINO). */
  readonly mlpRatio: number;
  /** Bias in the qkv projection (true in DINO's ViTs). */
  readonly qkvBias: boolean;
  /** LayerNorm epsilon (1e-6 in DINO's ViTs). */
  readonly layerNormEps: number;
  /**
   * Stochastic depth rate of the last block; block i drops its residual branches with probability
   * rate * i / (depth - 1) (DINO's linspace rule). DINO's default is 0.1 for the student; the teacher runs
   * without it. Higher rates regularise larger models more.
   */
  readonly dropPathRate: number;
  /**
   * A convolutional stem before the patch embedding (Xiao et al. 2021, "Early convolutions help transformers see
   * better"): one 3x3 convolution (stride 1, padding 1, with bias) followed by GELU per entry, to that many channels;
   * the patch embedding then reads the last entry's channels. Absent or empty: DINO's patchify stem alone (the
   * patch embedding reads the image). Parameters `patch_embed.stem.<i>.weight|bias`, PyTorch Conv2d layout and init.
   */
  readonly convStem?: readonly number[];
}

export interface ViTOptions {
  /**
   * Stochastic-depth keep masks, shape [depth, 2, B] (index 1: 0 for the attention branch, 1 for the
   * MLP branch, drawn independently as in timm/DINO), values 0 or 1/keep_prob (see
   * `sampleDropPathMasks`). Omit for inference and for the teacher.
   */
  readonly dropPathMasks?: Tensor;
  /** Which activations the backward pass recomputes instead of keeping (see {@link Recompute}). Default `none`. */
  readonly recompute?: Recompute;
}

/**
 * Activation recomputation (gradient checkpointing, `Graph.checkpoint`) of the ViT blocks in training graphs:
 * - `none`: keep every activation the backward pass reads;
 * - `mlp`: keep the MLP's pre-activation but not its GELU output ([tokens, 4D] per block, the largest tensor a
 *   block keeps besides the pre-activation); the backward pass recomputes GELU (selective recomputation:
 *   costs one GELU per block);
 * - `blocks`: keep only each block's input; the backward pass recomputes the whole block (one more forward).
 */
export type Recompute = 'none' | 'mlp' | 'blocks';
export const RECOMPUTE_MODES: readonly Recompute[] = ['none', 'mlp', 'blocks'];

/** A `Recompute` from a command-line value; throws naming the choices. */
export function parseRecompute(value: string): Recompute {
  if ((RECOMPUTE_MODES as readonly string[]).includes(value)) return value as Recompute;
  throw new Error(`recompute must be one of ${RECOMPUTE_MODES.join(', ')}, got "${value}"`);
}

export interface ViTOutputs {
  /** Final-norm [CLS] token, [B, D]: DINO's feature. */
  readonly cls: Tensor;
  /** Final-norm patch tokens, [B, P, D], patches in row-major order. */
  readonly patchTokens: Tensor;
  /** All final-norm tokens, [B, 1 + P, D]. */
  readonly tokens: Tensor;
  /** Attention probabilities of the last block, [B, heads, 1 + P, 1 + P] (DINO's `get_last_selfattention`). */
  readonly attention: Tensor;
  /** The last block's attention of the [CLS] query over the patch keys, [B, heads, P] (DINO's attention maps). */
  readonly clsAttention: Tensor;
  /**
   * Every block's output tokens before the final norm, [B, 1 + P, D] each, in block order (the last one is what
   * `tokens` normalises). Unused ones cost nothing: emission keeps only nodes that outputs depend on.
   */
  readonly blocks: readonly Tensor[];
}

export function headDim(cfg: ViTConfig): number {
  if (cfg.embedDim % cfg.numHeads !== 0) throw new Error(`ViT embedDim ${cfg.embedDim} is not divisible by numHeads ${cfg.numHeads}`);
  return cfg.embedDim / cfg.numHeads;
}

/** Side of the position-embedding table's patch grid. */
export const tableGrid = (cfg: ViTConfig): number => Math.floor(cfg.imgSize / cfg.patchSize);

// ---- modules -----------------------------------------------------------------------------------

/**
 * `patch_embed`: a Conv2d with kernel = stride = patch, written as reshape/transpose + MatMul.
 * [B, C, H, W] -> [B, (H/p)(W/p), D], patches in row-major order. The weight keeps the Conv2d layout
 * [D, C, p, p] and PyTorch's default conv init (DINO's `_init_weights` only touches Linear and LayerNorm).
 * With symbolic H or W it is the strided Conv itself (`patchConv`): ONNX's Reshape cannot split two dims whose
 * sizes are known only at run time. Inference only: that form has no gradient.
 */
export function patchEmbed(s: Scope, input: Tensor, cfg: ViTConfig): Tensor {
  return s.run(() => {
    const stem = cfg.convStem ?? [];
    const images = stem.length ? convStem(s.child('stem'), input, cfg) : input;
    const p = cfg.patchSize, c = stem.at(-1) ?? cfg.inChans, d = cfg.embedDim;
    const [b, , h, w] = images.shape as [Dim, Dim, Dim, Dim];
    const fanIn = c * p * p;
    const proj = s.child('proj');
    const weight = proj.param('weight', [d, c, p, p], torchDefaultInit(fanIn), { dtype: floatType(images) });
    const bias = proj.param('bias', [d], torchDefaultInit(fanIn), { dtype: floatType(images) });
    return proj.run(() => {
      if (typeof h !== 'number' || typeof w !== 'number') {
        const grid = patchConv(images, weight, bias); // [B, D, H/p, W/p]
        if (grid.poisoned) return grid; // the size error is reported; nothing to build on
        return transpose(reshape(grid, [b, d, mulDims(grid.shape[2]!, grid.shape[3]!)]), [0, 2, 1]);
      }
      const rows = h / p, cols = w / p;
      // [B, C, rows, p, cols, p] -> [B, rows, cols, C, p, p]: each patch flattened in (c, i, j) order, as the conv's weight.
      const patches = transpose(reshape(images, [b, c, rows, p, cols, p]), [0, 2, 4, 1, 3, 5]);
      const flat = reshape(patches, [b, rows * cols, fanIn]);
      return add(autocastMatmul(proj, flat, transposeLast2(reshape(weight, [d, fanIn]))), bias);
    });
  });
}

/**
 * The convolutional stem of {@link ViTConfig.convStem}: [B, C, H, W] -> [B, last channels, H, W]. Stride 1 with
 * padding 1 keeps H and W (static or symbolic), so the patch grid is the image's.
 */
export function convStem(s: Scope, images: Tensor, cfg: ViTConfig): Tensor {
  return s.run(() => {
    let x = images, channels = cfg.inChans;
    for (const [i, out] of (cfg.convStem ?? []).entries()) {
      if (!(Number.isInteger(out) && out > 0)) throw new Error(`ViT convStem entries must be positive integers (channels), got ${out} at ${i}`);
      const layer = s.child(i), fanIn = channels * 9, input = x;
      const weight = layer.param('weight', [out, channels, 3, 3], torchDefaultInit(fanIn), { dtype: floatType(images) });
      const bias = layer.param('bias', [out], torchDefaultInit(fanIn), { dtype: floatType(images) });
      x = layer.run(() => gelu(conv2d(input, weight, bias, { pads: [1, 1, 1, 1] })));
      channels = out;
    }
    return x;
  });
}

/**
 * `attn`: multi-head self-attention, softmax(q k^T / sqrt(head_dim)) v, with the qkv output features
 * laid out [3, heads, head_dim] as in timm/DINO. Returns the output and the attention probabilities.
 */
export function attention(s: Scope, x: Tensor, cfg: ViTConfig): { out: Tensor; probs: Tensor } {
  return s.run(() => {
    const d = cfg.embedDim, heads = cfg.numHeads, hd = headDim(cfg);
    const [b, t] = x.shape as [Dim, Dim];
    const qkv = linear(s.child('qkv'), x, d, 3 * d, { bias: cfg.qkvBias });
    // [B, T, 3D] -> [3, B, heads, T, hd] in one Transpose, then q, k, v are contiguous slices of it (one Concat and
    // one Transpose in the backward pass); k's transpose is left to the MatMul, which ONNX Runtime folds into it.
    const heads5 = transpose(reshape(qkv, [b, t, 3, heads, hd]), [2, 0, 3, 1, 4]);
    const [q4, k4, v4] = split(heads5, [1, 1, 1], 0).map((p) => squeeze(p, 0)) as [Tensor, Tensor, Tensor];
    const probs = softmax(mul(autocastMatmul(s, q4, transposeLast2(k4)), hd ** -0.5), -1);
    const merged = reshape(transpose(autocastMatmul(s, probs, v4), [0, 2, 1, 3]), [b, t, d]);
    return { out: linear(s.child('proj'), merged, d, d), probs };
  });
}

/**
 * `mlp`: Linear(D, ratio D) -> exact GELU -> Linear(ratio D, D). With `recomputeGelu` the GELU output is not kept
 * for the backward pass but recomputed there from the pre-activation.
 */
export function mlp(s: Scope, x: Tensor, dim: number, hidden: number, recomputeGelu = false): Tensor {
  return s.run(() => {
    if (x.shape.every((d) => typeof d === 'number')) {
      // Static shapes (training graphs): the MLP runs features-major, [D, tokens], between one transpose in and one
      // out; forward + backward ran 8-13% faster than with x Wᵀ products on ONNX Runtime's CPU GEMM (bench/RESULTS.md).
      const xT = transpose(reshape(x, [-1, dim]), [1, 0]);
      const preT = linearFeatureMajor(s.child('fc1'), xT, dim, hidden);
      const restT = (u: Tensor) => linearFeatureMajor(s.child('fc2'), gelu(u), hidden, dim);
      const zT = recomputeGelu ? x.graph.checkpoint([preT], ([u]) => restT(u!)) : restT(preT);
      return reshape(transpose(zT, [1, 0]), x.shape);
    }
    const preActivation = linear(s.child('fc1'), x, dim, hidden);
    const rest = (u: Tensor) => linear(s.child('fc2'), gelu(u), hidden, dim);
    return recomputeGelu ? x.graph.checkpoint([preActivation], ([u]) => rest(u!)) : rest(preActivation);
  });
}

/** Stochastic depth on a residual branch: `branch * mask`, mask [B, 1, 1] of 0 or 1/keep_prob. */
function dropPath(branch: Tensor, mask: Tensor | undefined): Tensor {
  return mask ? mul(branch, mask) : branch;
}

/** One pre-norm block: x + drop(attn(norm1 x)), then x + drop(mlp(norm2 x)). */
export function block(
  s: Scope,
  x: Tensor,
  cfg: ViTConfig,
  masks?: { attn: Tensor; mlp: Tensor },
  recomputeGelu = false,
): { x: Tensor; attention: Tensor } {
  return s.run(() => {
    const d = cfg.embedDim;
    const a = attention(s.child('attn'), layerNorm(s.child('norm1'), x, d, cfg.layerNormEps), cfg);
    const x1 = add(x, dropPath(a.out, masks?.attn));
    const m = mlp(s.child('mlp'), layerNorm(s.child('norm2'), x1, d, cfg.layerNormEps), d, Math.round(d * cfg.mlpRatio), recomputeGelu);
    return { x: add(x1, dropPath(m, masks?.mlp)), attention: a.probs };
  });
}

/**
 * The position embedding for a crop of `rows` x `cols` patches, [1, 1 + rows*cols, D].
 * DINO's `interpolate_pos_encoding`: the stored table when the crop has the table's patch count and is
 * square; otherwise the table's patch grid resized bicubically (see `posEmbedInterpolation`), with the
 * [CLS] row unchanged. The resize is a constant matrix applied with MatMul, so it is differentiable.
 * A symbolic grid is resized in the graph instead (`images` gives its size at run time; see
 * `positionTableResized`).
 */
export function positionEmbedding(posEmbed: Tensor, cfg: ViTConfig, rows: Dim, cols: Dim, images?: Tensor): Tensor {
  const side = tableGrid(cfg);
  if (rows === side && cols === side) return posEmbed;
  if (typeof rows !== 'number' || typeof cols !== 'number') {
    if (!images) throw new Error(`positionEmbedding: the ${rows} x ${cols} patch grid is symbolic; pass the images, whose runtime shape gives its size`);
    return positionTableResized(posEmbed, cfg, rows, cols, images);
  }
  const d = cfg.embedDim;
  const m = posEmbedInterpolation(side, rows, cols);
  const matrix = posEmbed.graph.constant(posEmbed.dtype === 'float64' ? m : Float32Array.from(m), posEmbed.dtype, [rows * cols, side * side]);
  const clsPos = slice(posEmbed, [0], [1], [1]);
  const table = reshape(slice(posEmbed, [1], [1 + side * side], [1]), [side * side, d]);
  const resized = reshape(matmul(matrix, table), [1, rows * cols, d]);
  return concat([clsPos, resized], 1);
}

/**
 * The symbolic-grid case of {@link positionEmbedding}: DINO's `interpolate_pos_encoding` with the grid read from the
 * images at run time. The table's S x S grid goes through `resizeCubic` (torch's bicubic, A = -0.75, half_pixel, no
 * antialias) with DINO's scale factors (n + 0.1) / S, in float32 as the ONNX model computes them, and with exactly 1
 * on both axes when the grid is the table's own (cubic at scale 1 is the identity: the table as it is, as DINO does).
 * That is the formula of `posEmbedInterpolation`: half_pixel's src = (dst + 0.5) / scale - 0.5 and the output size
 * floor(S * scale) are torch's for `scale_factor` without recompute_scale_factor.
 */
function positionTableResized(posEmbed: Tensor, cfg: ViTConfig, rows: Dim, cols: Dim, images: Tensor): Tensor {
  const g = posEmbed.graph, side = tableGrid(cfg), d = cfg.embedDim;
  const clsPos = slice(posEmbed, [0], [1], [1]);
  const grid = transpose(reshape(slice(posEmbed, [1], [1 + side * side], [1]), [1, side, side, d]), [0, 3, 1, 2]); // [1, D, S, S]
  const n = div(cast(gather(shapeOf(images), g.constant([2, 3], 'int64', [2]), 0), 'float32'), cfg.patchSize); // [rows, cols]
  const native = equal(n, g.constant([side, side], 'float32', [2]));
  const bothNative = and(slice(native, [0], [1], [0]), slice(native, [1], [2], [0]));
  const scales = where(bothNative, g.constant([1, 1], 'float32', [2]), div(add(n, 0.1), side));
  const resized = resizeCubic(grid, scales, { size: [rows, cols] }); // [1, D, rows, cols]
  return concat([clsPos, reshape(transpose(resized, [0, 2, 3, 1]), [1, mulDims(rows, cols), d])], 1);
}

/** `token` [1, 1, D] for each image: [B, 1, D], B (possibly symbolic) read from the images' shape at run time. */
function perImage(token: Tensor, images: Tensor, b: Dim): Tensor {
  const g = token.graph, d = token.dim(2);
  const batch = gather(shapeOf(images), g.constant([0], 'int64', [1]), 0);
  return g.apply(ExpandToShapeOf, [token, concat([batch, g.constant([1, d], 'int64', [2])], 0)], { shape: [b, 1, d] })[0]!;
}

/**
 * Full ViT forward: patch embedding, [CLS] token, position embedding, blocks, final norm.
 * `images` is [B, C, H, W] with H and W multiples of the patch size, static or symbolic (B may be symbolic).
 */
export function visionTransformer(s: Scope, images: Tensor, cfg: ViTConfig, opts: ViTOptions = {}): ViTOutputs {
  return s.run(() => {
    const d = cfg.embedDim, side = tableGrid(cfg);
    const [b, c, h, w] = images.shape as [Dim, Dim, Dim, Dim];
    let rows: Dim = side, cols: Dim = side; // fallback after a reported shape error, so building can go on
    const gridRows = images.rank === 4 ? quotientDim(h, cfg.patchSize) : undefined;
    const gridCols = images.rank === 4 ? quotientDim(w, cfg.patchSize) : undefined;
    if (c !== cfg.inChans || gridRows === undefined || gridCols === undefined || gridRows === 0 || gridCols === 0) {
      images.graph.error('visionTransformer', `expects images [B, ${cfg.inChans}, H, W] with H and W multiples of patch ${cfg.patchSize} (numbers or symbols)`, [images]);
    } else {
      rows = gridRows;
      cols = gridCols;
    }
    if (cfg.depth < 1) throw new Error(`ViT depth must be at least 1, got ${cfg.depth}`);
    const masks = opts.dropPathMasks;
    if (masks && (masks.rank !== 3 || masks.shape[0] !== cfg.depth || masks.shape[1] !== 2 || masks.shape[2] !== b)) {
      images.graph.error('visionTransformer', `drop-path masks must be [${cfg.depth}, 2, ${b}] (depth, branch, batch)`, [masks]);
    }
    const dtype = floatType(images);

    const clsToken = s.param('cls_token', [1, 1, d], TRUNC_NORMAL_02, { dtype });
    const posEmbed = s.param('pos_embed', [1, side * side + 1, d], TRUNC_NORMAL_02, { dtype });
    const patches = patchEmbed(s.child('patch_embed'), images, cfg);
    let x: Tensor;
    if (typeof rows === 'number' && typeof cols === 'number') {
      // tokens = [cls; patches] + pos. The batch may be symbolic, so rather than expanding cls_token to
      // [B, 1, D] and concatenating, pad the patches with a zero row 0 and add [cls; 0...] to the position table.
      const clsRow = pad(clsToken, [0, 0, 0, 0, rows * cols, 0]);
      const pos = positionEmbedding(posEmbed, cfg, rows, cols);
      x = add(pad(patches, [0, 1, 0, 0, 0, 0]), add(pos, clsRow));
    } else {
      // Pad cannot grow a symbolic axis: concatenate [CLS] (one per image) and the patches. The same sums as above.
      const clsRows = s.child('cls_token').run(() => perImage(clsToken, images, b));
      x = add(concat([clsRows, patches], 1), s.child('pos_embed').run(() => positionEmbedding(posEmbed, cfg, rows, cols, images)));
    }

    let lastAttention = x;
    const blockOutputs: Tensor[] = [];
    for (let i = 0; i < cfg.depth; i++) {
      const blockMask = masks && dropPathRates(cfg)[i]! > 0 ? blockMasks(masks, i) : undefined;
      if (opts.recompute === 'blocks') {
        // The attention of a recomputed block cannot be differentiated; it is still the forward's value.
        let attention = x;
        x = s.graph.checkpoint([x], ([input]) => {
          const out = block(s.child('blocks').child(i), input!, cfg, blockMask);
          attention = out.attention;
          return out.x;
        });
        lastAttention = attention;
      } else {
        const out = block(s.child('blocks').child(i), x, cfg, blockMask, opts.recompute === 'mlp');
        x = out.x;
        lastAttention = out.attention;
      }
      blockOutputs.push(x);
    }
    const tokens = layerNorm(s.child('norm'), x, d, cfg.layerNormEps);
    // Slices to the end: the token count may be symbolic (`1+H/p*W/p`).
    return {
      tokens,
      cls: reshape(slice(tokens, [0], [1], [1]), [b, d]),
      patchTokens: slice(tokens, [1], [TO_END], [1]),
      attention: lastAttention,
      clsAttention: s.child('cls_attention').run(() => reshape(slice(lastAttention, [0, 1], [1, TO_END], [2, 3]), [b, cfg.numHeads, mulDims(rows, cols)])),
      blocks: blockOutputs,
    };
  });
}

/**
 * The final-norm [CLS] token of each of the last `n` blocks, [B, n, D], oldest block first: DINO's
 * `get_intermediate_layers(x, n)` followed by `x[:, 0]` of each (what `eval_linear.py` concatenates). `s` must be
 * the scope `visionTransformer` ran in, so the final norm's parameters are the same ones. LayerNorm acts on each
 * token alone, so normalising only the [CLS] rows gives the [CLS] rows of the normalised tokens; for the last
 * block that is `cls`.
 */
export function lastBlocksCls(s: Scope, out: Pick<ViTOutputs, 'blocks'>, cfg: ViTConfig, n: number): Tensor {
  if (!(Number.isInteger(n) && n >= 1 && n <= cfg.depth)) throw new Error(`lastBlocksCls: n must be an integer in 1..${cfg.depth} (the ViT's depth), got ${n}`);
  return s.run(() => {
    const rows = out.blocks.slice(cfg.depth - n).map((x) => slice(x, [0], [1], [1])); // [B, 1, D] each
    const stacked = rows.length === 1 ? rows[0]! : concat(rows, 1);
    return layerNorm(s.child('norm'), stacked, cfg.embedDim, cfg.layerNormEps);
  });
}

// ---- stochastic depth ------------------------------------------------------------------------------

/** Per-block drop probabilities: linspace(0, dropPathRate, depth), as DINO. */
export function dropPathRates(cfg: Pick<ViTConfig, 'depth' | 'dropPathRate'>): number[] {
  const n = cfg.depth;
  return Array.from({ length: n }, (_, i) => (n === 1 ? 0 : (cfg.dropPathRate * i) / (n - 1)));
}

/** The [B, 1, 1] masks of block `i` from the [depth, 2, B] mask input. */
function blockMasks(masks: Tensor, i: number): { attn: Tensor; mlp: Tensor } {
  const pick = (branch: number) => reshape(slice(masks, [i, branch], [i + 1, branch + 1], [0, 1]), [-1, 1, 1]);
  return { attn: pick(0), mlp: pick(1) };
}

/**
 * Draws stochastic-depth masks for one crop group of `batch` samples: a [depth, 2, batch] array
 * (row-major) of 0 or 1/keep_prob, timm's `drop_path` (keep with probability 1 - rate, scale the kept
 * samples so the expectation is unchanged). Blocks with rate 0 get ones and draw nothing.
 */
export function sampleDropPathMasks(prng: Prng, cfg: Pick<ViTConfig, 'depth' | 'dropPathRate'>, batch: number): Float32Array {
  const rates = dropPathRates(cfg);
  const out = new Float32Array(cfg.depth * 2 * batch);
  for (let i = 0; i < cfg.depth; i++) {
    const keep = 1 - rates[i]!;
    for (let j = 0; j < 2 * batch; j++) out[i * 2 * batch + j] = rates[i] === 0 ? 1 : prng.bernoulli(keep) ? 1 / keep : 0;
  }
  return out;
}

// ---- bicubic position-embedding interpolation ------------------------------------------------------

const CUBIC_A = -0.75;
const cubicNear = (x: number) => ((CUBIC_A + 2) * x - (CUBIC_A + 3)) * x * x + 1; // |x| <= 1
const cubicFar = (x: number) => ((CUBIC_A * x - 5 * CUBIC_A) * x + 8 * CUBIC_A) * x - 4 * CUBIC_A; // 1 < |x| < 2

/**
 * The [outSize, inSize] matrix of torch's 1-D bicubic resize (`F.interpolate(mode='bicubic',
 * align_corners=False, scale_factor=scale)`, recompute_scale_factor unset): output i samples the input at
 * src = (i + 0.5) / scale - 0.5 (not clamped), with taps floor(src) - 1 .. floor(src) + 2 clamped to the
 * border and cubic-convolution weights with A = -0.75.
 */
export function bicubicResizeMatrix(inSize: number, outSize: number, scale: number): Float64Array {
  const m = new Float64Array(outSize * inSize);
  for (let o = 0; o < outSize; o++) {
    const src = (o + 0.5) / scale - 0.5;
    const base = Math.floor(src);
    const t = src - base;
    const weights = [cubicFar(t + 1), cubicNear(t), cubicNear(1 - t), cubicFar(2 - t)];
    weights.forEach((wk, k) => {
      const idx = Math.min(Math.max(base - 1 + k, 0), inSize - 1);
      m[o * inSize + idx] = m[o * inSize + idx]! + wk;
    });
  }
  return m;
}

/**
 * The [rows*cols, side*side] matrix taking the table's side x side patch grid (row-major) to a
 * rows x cols grid, as DINO's `interpolate_pos_encoding`: scale factors (rows + 0.1) / side and
 * (cols + 0.1) / side (the +0.1 guards the output size against float rounding, DINO issue #8, and since
 * torch uses the given scale in its source index, it also shifts the samples slightly).
 */
export function posEmbedInterpolation(side: number, rows: number, cols: number): Float64Array {
  const scaleR = (rows + 0.1) / side, scaleC = (cols + 0.1) / side;
  if (Math.floor(side * scaleR) !== rows || Math.floor(side * scaleC) !== cols) {
    throw new Error(`position-embedding interpolation from ${side}x${side} to ${rows}x${cols}: output size mismatch`);
  }
  const wr = bicubicResizeMatrix(side, rows, scaleR), wc = bicubicResizeMatrix(side, cols, scaleC);
  const n = side * side;
  const m = new Float64Array(rows * cols * n);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++)
      for (let a = 0; a < side; a++) {
        const wra = wr[r * side + a]!;
        if (wra === 0) continue;
        for (let bb = 0; bb < side; bb++) m[(r * cols + c) * n + a * side + bb] = wra * wc[c * side + bb]!;
      }
  return m;
}
