/**
 * The frozen backbone as a Hugging Face model folder that transformers.js (`@huggingface/transformers`) loads as it
 * is, offline: `AutoModel` / `AutoProcessor.from_pretrained(folder)` and `pipeline('image-feature-extraction', folder)`.
 *
 * The folder (see docs/ARCHITECTURE.md, "Export"):
 * - `config.json`: Hugging Face's `ViTConfig` keys (`model_type: "vit"`, `hidden_size`, `num_hidden_layers`, ...),
 *   `"transformers.js_config": {"dtype": "fp32"}` so that transformers.js picks `onnx/model.onnx` on every device
 *   (on WASM it would look for the 8-bit `onnx/model_quantized.onnx` otherwise), and `dino_ts` (what DINO-specific
 *   facts the ViT keys cannot say: input channels of the weights, luma, normalisation, source).
 * - `preprocessor_config.json`: a `ViTImageProcessor` that converts to RGB, resizes to the trained size (bicubic),
 *   rescales to [0, 1] and normalises with the run's mean and std: the normalisation is in the processor, as in
 *   Hugging Face's own ViT models, and not in the graph.
 * - `onnx/model.onnx`: input `pixel_values` float32 [N, 3, H, W] (normalised; H and W any multiples of the patch
 *   size unless fixed), outputs `last_hidden_state` [N, 1 + P, D] (after the final norm, so `[:, 0]` is DINO's
 *   feature), `pooler_output` [N, D] (DINO's [CLS] feature, the same values as `last_hidden_state[:, 0]`: not Hugging
 *   Face's tanh pooler, which DINO does not have) and `cls_attention` [N, heads, P] (the last block's attention of the
 *   [CLS] query over the patch keys, as in the plain export).
 *
 * One-channel models: transformers.js's image processor reads `do_convert_rgb` from the config but has no config key
 * that makes it give one channel (its grayscale conversion is a call-time option the pipeline never passes), and
 * without `do_convert_rgb` a PNG's own channel count (1, 3 or 4) would reach the model. So the processor always gives
 * RGB, with the model's one mean and std repeated for the three channels, and the graph's first op is PIL's luma
 * (0.299 R + 0.587 G + 0.114 B, what the training loader uses for colour images). Because the weights sum to 1,
 * luma of the normalised channels equals the normalised luma: `Σ w (x - m) / s = (Σ w x - m) / s`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { Graph, Scope, emitOnnx, formatError, mul, reduceSum } from '../../dsl/index.ts';
import { type ViTConfig, visionTransformer } from '../../models/vit.ts';
import { type ExportSourceOptions, backboneValues, resolveSource, writeAtomic } from './teacher.ts';

/** The metadata key of `onnx/model.onnx` holding {@link HfExportInfo} as JSON. */
export const HF_EXPORT_INFO_KEY = 'dino.hf_export';

/** PIL's `convert('L')` weights (ITU-R 601-2), as runtime/data/image-folder.ts converts colour images to one channel. */
export const LUMA_WEIGHTS = [0.299, 0.587, 0.114] as const;

/** The channels `pixel_values` has: transformers.js's processor gives RGB (see the module comment). */
export const HF_INPUT_CHANNELS = 3;

export interface HfExportOptions extends ExportSourceOptions {
  /** The output folder (created; the three files in it are replaced). */
  readonly out: string;
  /**
   * A fixed size (or [H, W]) for the graph and the processor. Default: the graph takes any multiple of the patch size,
   * and the processor resizes to the size the model was trained at (the run's global crop, or the preset's size).
   */
  readonly imageSize?: number | readonly [number, number];
}

/** What the folder's model is, in its ONNX metadata and (as `dino_ts`) in config.json. */
export interface HfExportInfo {
  readonly format: 'dino-ts-hf/1';
  readonly backbone: ViTConfig;
  /** Normalisation the processor applies, one value per `pixel_values` channel. */
  readonly mean: readonly number[];
  readonly std: readonly number[];
  /** The luma weights the graph applies to `pixel_values` when the weights take one channel; absent for RGB models. */
  readonly luma?: readonly number[];
  /** Fixed [H, W] of the graph, or null when H and W are any multiples of the patch size. */
  readonly imageSize: readonly [number, number] | null;
  /** The size the processor resizes to. */
  readonly processorSize: readonly [number, number];
  readonly source: string;
}

export interface HfExportResult {
  readonly out: string;
  /** The three files written, in the folder. */
  readonly files: { readonly config: string; readonly preprocessorConfig: string; readonly model: string };
  readonly bytes: number;
  readonly info: HfExportInfo;
  readonly seconds: number;
}

/**
 * The Hugging Face-named inference graph: `pixel_values` (normalised RGB) -> `last_hidden_state`, `pooler_output`,
 * `cls_attention`. Parameters are named by their DINO keys, as in {@link buildTeacherGraph}.
 */
export function buildHfGraph(cfg: ViTConfig, imageSize: readonly [number, number] | null): Graph {
  checkChannels(cfg);
  const [h, w] = imageSize ?? ['H', 'W'];
  const p = cfg.patchSize;
  if (typeof h === 'number' && typeof w === 'number' && !(Number.isInteger(h) && Number.isInteger(w) && h > 0 && w > 0 && h % p === 0 && w % p === 0)) {
    throw new Error(`image size ${h}x${w} must be positive multiples of the patch size ${p}`);
  }
  const g = new Graph('dino_vit_hf');
  const pixels = g.input('pixel_values', 'float32', ['N', HF_INPUT_CHANNELS, h, w]);
  const images = cfg.inChans === 1
    ? g.within('luma', () => reduceSum(mul(pixels, g.constant(Float32Array.from(LUMA_WEIGHTS), 'float32', [1, 3, 1, 1])), 1, true))
    : pixels;
  const out = visionTransformer(new Scope(g), images, cfg);
  g.output('last_hidden_state', out.tokens);
  g.output('pooler_output', out.cls);
  g.output('cls_attention', out.clsAttention);
  return g;
}

function checkChannels(cfg: ViTConfig): void {
  if (cfg.inChans !== 1 && cfg.inChans !== HF_INPUT_CHANNELS) {
    throw new Error(`the Hugging Face export takes RGB pixel_values: it handles models of 1 channel (luma in the graph) or 3, not ${cfg.inChans}`);
  }
}

/** config.json: Hugging Face's `ViTConfig` names, the transformers.js dtype, and the DINO facts under `dino_ts`. */
export function hfConfig(info: HfExportInfo): Record<string, unknown> {
  const b = info.backbone;
  return {
    architectures: ['ViTModel'],
    model_type: 'vit',
    hidden_size: b.embedDim,
    num_hidden_layers: b.depth,
    num_attention_heads: b.numHeads,
    intermediate_size: Math.round(b.embedDim * b.mlpRatio),
    hidden_act: 'gelu',
    hidden_dropout_prob: 0,
    attention_probs_dropout_prob: 0,
    initializer_range: 0.02,
    layer_norm_eps: b.layerNormEps,
    // The position table's size: Hugging Face's ViT has (image_size / patch_size)^2 patch positions.
    image_size: Math.floor(b.imgSize / b.patchSize) * b.patchSize,
    patch_size: b.patchSize,
    num_channels: HF_INPUT_CHANNELS,
    qkv_bias: b.qkvBias,
    'transformers.js_config': { dtype: 'fp32' },
    dino_ts: {
      format: info.format,
      weights_in_chans: b.inChans,
      ...(info.luma ? { luma: info.luma } : {}),
      ...(b.convStem?.length ? { conv_stem: b.convStem } : {}),
      image_mean: info.mean,
      image_std: info.std,
      onnx_input_size: info.imageSize,
      pooler_output: 'the final-norm [CLS] token (DINO\'s feature), not a tanh pooler',
      source: info.source,
    },
  };
}

/**
 * preprocessor_config.json: RGB, bicubic resize to the processor size, rescale by 1/255, normalise with the run's
 * mean and std (repeated over the three channels for a one-channel model: see the module comment).
 */
export function hfPreprocessorConfig(info: HfExportInfo): Record<string, unknown> {
  const [height, width] = info.processorSize;
  return {
    image_processor_type: 'ViTImageProcessor',
    do_convert_rgb: true,
    do_resize: true,
    size: { height, width },
    resample: 3,
    do_rescale: true,
    rescale_factor: 1 / 255,
    do_normalize: true,
    image_mean: info.mean,
    image_std: info.std,
  };
}

/** The mean or std of the export, one value per `pixel_values` channel. */
function perInputChannel(values: readonly number[], weightsChannels: number, what: string): number[] {
  if (values.length === HF_INPUT_CHANNELS && weightsChannels === HF_INPUT_CHANNELS) return [...values];
  if (values.length === 1) return Array<number>(HF_INPUT_CHANNELS).fill(values[0]!);
  throw new Error(`${what} ${JSON.stringify(values)}: give 1 value${weightsChannels === HF_INPUT_CHANNELS ? ' or 3' : ' (the model takes one channel)'}`);
}

/** `dino export --format hf`: writes config.json, preprocessor_config.json and onnx/model.onnx into `out`. */
export function exportHf(opts: HfExportOptions): HfExportResult {
  const t0 = performance.now();
  if (fs.existsSync(opts.out) && !fs.statSync(opts.out).isDirectory()) {
    throw new Error(`${opts.out} is a file; the Hugging Face export writes a folder (config.json, preprocessor_config.json, onnx/model.onnx): name a folder as out`);
  }
  const src = resolveSource(opts);
  const cfg = src.backbone;
  checkChannels(cfg);
  const values = backboneValues(cfg, src.weights, src.weightsFile);
  const size = opts.imageSize;
  const imageSize: readonly [number, number] | null = size === undefined ? null : typeof size === 'number' ? [size, size] : [size[0], size[1]];
  const info: HfExportInfo = {
    format: 'dino-ts-hf/1',
    backbone: cfg,
    mean: perInputChannel(opts.mean ?? src.mean, cfg.inChans, 'mean'),
    std: perInputChannel(opts.std ?? src.std, cfg.inChans, 'std'),
    ...(cfg.inChans === 1 ? { luma: [...LUMA_WEIGHTS] } : {}),
    imageSize,
    processorSize: imageSize ?? [src.defaultSize, src.defaultSize],
    source: src.source,
  };
  const g = buildHfGraph(cfg, imageSize);
  const bytes = emitOnnx(g, {
    params: { values },
    docString: `DINO ViT backbone (${info.source}) in Hugging Face's names: pixel_values [N, 3, H, W] (normalised RGB) -> last_hidden_state, pooler_output (final-norm [CLS]), cls_attention`,
    metadata: { [HF_EXPORT_INFO_KEY]: JSON.stringify(info) },
  });
  if (E.isLeft(bytes)) throw new Error(`could not build the Hugging Face export graph:\n  ${bytes.left.map(formatError).join('\n  ')}`);
  if (bytes.right.length >= 2 ** 31) throw new Error(`the model is ${bytes.right.length} bytes, over protobuf's 2 GB limit; external-data export is not implemented`);
  const files = {
    config: path.join(opts.out, 'config.json'),
    preprocessorConfig: path.join(opts.out, 'preprocessor_config.json'),
    model: path.join(opts.out, 'onnx', 'model.onnx'),
  };
  writeAtomic(files.model, bytes.right);
  writeAtomic(files.config, JSON.stringify(hfConfig(info), null, 2) + '\n');
  writeAtomic(files.preprocessorConfig, JSON.stringify(hfPreprocessorConfig(info), null, 2) + '\n');
  return { out: opts.out, files, bytes: bytes.right.length, info, seconds: (performance.now() - t0) / 1000 };
}
