/**
 * The frozen backbone as an inference ONNX model: what users take home from a run.
 *
 * Contract of the exported graph (metadata key `dino.export` describes it as JSON, see {@link ExportInfo}):
 * - input `images`: float32 [N, C, H, W], values in [0, 1]; N is the symbolic dim `N`. The dataset
 *   normalisation (the run's `augment.mean` / `augment.std`) is the graph's first op.
 * - outputs `features` [N, D] (final-norm [CLS], DINO's feature), `patch_tokens` [N, P, D] (final-norm, patches
 *   row-major), `cls_attention` [N, heads, P] (last block's attention of the [CLS] query over the patch keys).
 * - with `intermediate: n` (the linear probe's export) two more outputs: `block_cls` [N, n, D], the final-norm [CLS]
 *   of each of the last n blocks, oldest first (DINO's `get_intermediate_layers(x, n)`, `[:, 0]` of each), and
 *   `patch_mean` [N, D], the mean of `patch_tokens` over the patches (DINO's `avgpool_patchtokens` feature).
 * - H and W: by default dynamic, any multiples of the patch size (symbolic dims `H`, `W`): models/vit.ts builds the
 *   graph for a symbolic patch grid, the position embedding interpolated inside the graph; at the training crop size
 *   that is exactly the table (the in-graph resize runs at scale 1, the identity). With `imageSize` (or
 *   `dynamicSize: false`: the training global crop) H and W are fixed and the interpolation is a constant bicubic
 *   matrix, as in training.
 * - Weights are initializers; node names follow module paths (`blocks.3.attn/MatMul`).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { Graph, type ParamSpec, Scope, emitOnnx, formatError, reduceMean, specOf } from '../../dsl/index.ts';
import { type ViTConfig, lastBlocksCls, visionTransformer } from '../../models/vit.ts';
import { checkWeights, formatWeightProblems } from '../../models/weights.ts';
import { getPreset as getModelPreset } from '../../models/presets.ts';
import { type TrainConfig } from '../../runtime/dino/config.ts';
import { getPreset as getTrainPreset, presetNames as trainPresetNames } from '../../runtime/dino/presets.ts';
import { DINO_AUGMENT } from '../../runtime/data/multicrop.ts';
import type { NamedTensor } from '../../runtime/io/safetensors.ts';
import { writeBytesAtomic } from '../../runtime/io/atomic.ts';
import { RunFolder } from '../../runtime/dino/run-folder.ts';
import { readDinoWeights } from '../../runtime/io/weights.ts';
import { normalizeImages } from './normalize.ts';

export { normalizeImages } from './normalize.ts';

/** The metadata key holding {@link ExportInfo} as JSON. */
export const EXPORT_INFO_KEY = 'dino.export';

/** What the exported model is, stored in its metadata so consumers (k-NN, attention maps, the demo) need no config. */
export interface ExportInfo {
  readonly format: 'dino-ts-teacher/1';
  readonly backbone: ViTConfig;
  /** Per-channel normalisation applied inside the graph. */
  readonly mean: readonly number[];
  readonly std: readonly number[];
  /** Fixed input size [H, W], or null when H and W are dynamic (any multiple of `backbone.patchSize`). */
  readonly imageSize: readonly [number, number] | null;
  /** Where the weights came from (run folder or weights file, and which network). */
  readonly source: string;
  /** Blocks whose [CLS] the `block_cls` output holds; absent when the model has no such output. */
  readonly intermediate?: number;
}

/** Where an export's weights come from, and their normalisation: the ONNX and the Hugging Face exports take these. */
export interface ExportSourceOptions {
  /** A run folder (config.json + checkpoint.safetensors written by `dino train`). */
  readonly run?: string;
  /** Export the student instead of the teacher (run folders and full DINO checkpoints). */
  readonly student?: boolean;
  /**
   * Architecture for `weights`: a training preset (`fmnist-tiny6`, with its normalisation) or a model preset
   * (`vit_small`, `vit_base_p8`, ... with ImageNet normalisation).
   */
  readonly preset?: string;
  /** Architecture given directly (programmatic use; overrides `preset`). */
  readonly backbone?: ViTConfig;
  /** A .safetensors or PyTorch .pth file: a full DINO checkpoint, a dino-ts checkpoint, or a backbone state dict. */
  readonly weights?: string;
  /** Override the normalisation (one value, or one per channel of the weights). */
  readonly mean?: readonly number[];
  readonly std?: readonly number[];
}

export interface ExportTeacherOptions extends ExportSourceOptions {
  /** Output .onnx path. */
  readonly out: string;
  /** A fixed input side (or [H, W]) instead of dynamic H and W. */
  readonly imageSize?: number | readonly [number, number];
  /**
   * Dynamic H and W (default true unless `imageSize` is given). `false` without `imageSize` fixes the size to the
   * run's global crop size, or the preset's `imgSize`.
   */
  readonly dynamicSize?: boolean;
  /**
   * Also output `block_cls` [N, n, D] (final-norm [CLS] of the last n blocks) and `patch_mean` [N, D], what DINO's
   * linear evaluation reads (`n_last_blocks`, `avgpool_patchtokens`). Default: neither output.
   */
  readonly intermediate?: number;
  /**
   * Write `preprocessor_config.json` (a Hugging Face `ViTImageProcessor` config, see {@link preprocessorConfig}) in
   * the folder of `out`. Default false.
   */
  readonly preprocessorConfig?: boolean;
}

export interface ExportTeacherResult {
  readonly out: string;
  readonly bytes: number;
  readonly info: ExportInfo;
  /** The `preprocessor_config.json` written beside the model, when asked for. */
  readonly preprocessorConfig?: string;
  /** Seconds spent building and writing the model. */
  readonly seconds: number;
}

// ---- the graph ---------------------------------------------------------------------------------------

export interface TeacherGraphOptions {
  readonly mean: readonly number[];
  readonly std: readonly number[];
  /** [H, W] for a fixed-size graph; null for symbolic H and W (any multiples of the patch size). */
  readonly imageSize: readonly [number, number] | null;
  /** Add the `block_cls` ([CLS] of the last n blocks) and `patch_mean` outputs; default none. */
  readonly intermediate?: number;
}

/** The inference graph, fixed-size or for any H and W (parameters named by their DINO keys, no prefix). */
export function buildTeacherGraph(cfg: ViTConfig, opts: TeacherGraphOptions): Graph {
  const [h, w] = opts.imageSize ?? ['H', 'W'];
  const p = cfg.patchSize;
  if (typeof h === 'number' && typeof w === 'number' && !(Number.isInteger(h) && Number.isInteger(w) && h > 0 && w > 0 && h % p === 0 && w % p === 0)) {
    throw new Error(`image size ${h}x${w} must be positive multiples of the patch size ${p}`);
  }
  const g = new Graph('dino_teacher');
  const images = g.input('images', 'float32', ['N', cfg.inChans, h, w]);
  const scope = new Scope(g);
  const out = visionTransformer(scope, normalizeImages(g, images, cfg.inChans, opts.mean, opts.std), cfg);
  g.output('features', out.cls);
  g.output('patch_tokens', out.patchTokens);
  g.output('cls_attention', out.clsAttention);
  if (opts.intermediate !== undefined) {
    g.output('block_cls', lastBlocksCls(scope, out, cfg, opts.intermediate));
    g.output('patch_mean', g.within('patch_mean', () => reduceMean(out.patchTokens, 1)));
  }
  return g;
}

/** Every parameter spec of the backbone (names = DINO state_dict keys). */
export function backboneSpecs(cfg: ViTConfig): ParamSpec[] {
  const p = cfg.patchSize, side = Math.floor(cfg.imgSize / p) * p;
  const g = buildTeacherGraph(cfg, { mean: [0], std: [1], imageSize: [side, side] });
  return [...g.params.values()].map(specOf);
}

// ---- where the weights come from ---------------------------------------------------------------------

/** An export's backbone, normalisation, default size and weights, from a run folder or a weights file. */
export interface ResolvedSource {
  readonly backbone: ViTConfig;
  readonly mean: readonly number[];
  readonly std: readonly number[];
  readonly defaultSize: number;
  readonly weights: Map<string, NamedTensor>;
  readonly weightsFile: string;
  readonly source: string;
}

/**
 * The run's TrainConfig (config.json, else the checkpoint's metadata) for what needs a ViT (attention, patch tokens,
 * intermediate [CLS]); a run of another backbone is refused naming what works on it. Errors name the path and what to do.
 */
export function readRunConfig(run: string): TrainConfig {
  const cfg = new RunFolder(run).readConfig();
  if (cfg.backbone.kind !== 'vit') throw new NotViTRunError(run, cfg.backbone.kind);
  return cfg as TrainConfig;
}

/** A run whose backbone is not a ViT, asked for something only a ViT has. */
export class NotViTRunError extends Error {
  constructor(readonly run: string, readonly kind: string) {
    super(`run ${run} trains a ${kind} backbone; this needs a ViT (attention maps, patch tokens, the [CLS] of several blocks, the demo server): ` +
      `its features work (npx dino export --run ${run} writes its backbone's features model; dino features --run ${run}; dino knn --run ${run})`);
    this.name = 'NotViTRunError';
  }
}

/** DIR/checkpoint.safetensors, or an error saying how to get one. */
export function checkpointPath(run: string): string {
  return new RunFolder(run).requireCheckpoint();
}

/** Nothing to export, or weights without the architecture they hold. The CLI words it with its flags (cli/errors.ts). */
export class ExportSourceError extends Error {
  constructor(
    readonly problem:
      | { readonly kind: 'none' }
      | { readonly kind: 'weights-without-preset'; readonly weights: string }
      /** `problems`: every mismatch between the weights and the architecture, one line each (formatWeightProblems). */
      | { readonly kind: 'weights-mismatch'; readonly problems: string },
  ) {
    super(problem.kind === 'none'
      ? 'nothing to export: give a run folder (run), or weights (weights) with their architecture (preset)'
      : problem.kind === 'weights-without-preset'
        ? `${problem.weights}: weights need a preset to say which architecture they hold (e.g. vit_small for dino_deitsmall16_pretrain.pth)`
        : `${problem.problems}\n  (is the preset the architecture these weights were trained with?)`);
    this.name = 'ExportSourceError';
  }
}

/** Where the weights of an export come from (shared by the ONNX and the Hugging Face exports). */
export function resolveSource(opts: Omit<ExportSourceOptions, 'mean' | 'std'>): ResolvedSource {
  const network = opts.student ? 'student' : 'teacher';
  if (opts.run) {
    const cfg = readRunConfig(opts.run);
    const file = opts.weights ?? checkpointPath(opts.run);
    return {
      backbone: opts.backbone ?? cfg.backbone,
      mean: cfg.augment.mean,
      std: cfg.augment.std,
      defaultSize: cfg.augment.globalSize,
      weights: readDinoWeights(file, network).backbone,
      weightsFile: file,
      source: `${network} of run ${opts.run}`,
    };
  }
  if (!opts.weights) throw new ExportSourceError({ kind: 'none' });
  let backbone: ViTConfig, mean: readonly number[], std: readonly number[];
  if (opts.backbone) {
    backbone = opts.backbone;
    ({ mean, std } = DINO_AUGMENT);
  } else if (opts.preset && trainPresetNames().includes(opts.preset)) {
    const cfg = getTrainPreset(opts.preset);
    ({ backbone } = cfg);
    ({ mean, std } = cfg.augment);
  } else if (opts.preset) {
    const model = getModelPreset(opts.preset).backbone;
    if (model.kind !== 'vit') throw new Error(`preset "${opts.preset}" is a ${model.kind}; only ViT backbones can be exported (they have [CLS] attention and patch tokens)`);
    backbone = model;
    ({ mean, std } = DINO_AUGMENT);
  } else {
    throw new ExportSourceError({ kind: 'weights-without-preset', weights: opts.weights });
  }
  if (backbone.inChans === 1 && mean.length === 3) {
    mean = [0.5];
    std = [0.5];
  }
  return { backbone, mean, std, defaultSize: backbone.imgSize, weights: readDinoWeights(opts.weights, network).backbone, weightsFile: opts.weights, source: `${network} of ${opts.weights}` };
}

/** Float32 values by name, checked against the architecture; every mismatch is reported at once. */
export function backboneValues(cfg: ViTConfig, weights: ReadonlyMap<string, NamedTensor>, file: string): Map<string, Float32Array> {
  const checked = checkWeights(backboneSpecs(cfg), weights);
  if (E.isLeft(checked)) throw new ExportSourceError({ kind: 'weights-mismatch', problems: formatWeightProblems(checked.left, file) });
  const values = new Map<string, Float32Array>();
  for (const [name, t] of weights) {
    if (name.endsWith('.num_batches_tracked')) continue;
    values.set(name, t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as Float64Array));
  }
  return values;
}

/** Emits the inference model (fixed or dynamic size) with `values` baked in. */
export function teacherOnnx(backbone: ViTConfig, values: ReadonlyMap<string, Float32Array>, info: Omit<ExportInfo, 'format' | 'backbone'>): Uint8Array {
  const g = buildTeacherGraph(backbone, { mean: info.mean, std: info.std, imageSize: info.imageSize, ...(info.intermediate !== undefined ? { intermediate: info.intermediate } : {}) });
  const full: ExportInfo = { format: 'dino-ts-teacher/1', backbone, ...info };
  const outputs = `features, patch_tokens, cls_attention${info.intermediate !== undefined ? ', block_cls, patch_mean' : ''}`;
  const bytes = emitOnnx(g, {
    params: { values },
    docString: `DINO ViT backbone (${info.source}): images [N, C, H, W] in [0, 1] -> ${outputs}`,
    metadata: { [EXPORT_INFO_KEY]: JSON.stringify(full) },
  });
  if (E.isLeft(bytes)) throw new Error(`could not build the export graph:\n  ${bytes.left.map(formatError).join('\n  ')}`);
  if (bytes.right.length >= 2 ** 31) throw new Error(`the model is ${bytes.right.length} bytes, over protobuf's 2 GB limit; external-data export is not implemented`);
  return bytes.right;
}

/** `npx dino export`: writes the teacher (or student) backbone as ONNX. */
export function exportTeacher(opts: ExportTeacherOptions): ExportTeacherResult {
  const t0 = performance.now();
  const src = resolveSource(opts);
  const values = backboneValues(src.backbone, src.weights, src.weightsFile);
  if (opts.dynamicSize === true && opts.imageSize !== undefined) throw new Error('pass either a fixed image size or dynamicSize, not both');
  let imageSize: readonly [number, number] | null = null;
  if (opts.imageSize !== undefined || opts.dynamicSize === false) {
    const s = opts.imageSize ?? src.defaultSize;
    imageSize = typeof s === 'number' ? [s, s] : [s[0], s[1]];
  }
  const mean = opts.mean ?? src.mean, std = opts.std ?? src.std;
  const n = opts.intermediate;
  if (n !== undefined && !(Number.isInteger(n) && n >= 1 && n <= src.backbone.depth)) {
    throw new Error(`intermediate must be an integer from 1 to ${src.backbone.depth} (the backbone's depth), got ${n}`);
  }
  const partial = { mean, std, imageSize, source: src.source, ...(n !== undefined ? { intermediate: n } : {}) };
  const bytes = teacherOnnx(src.backbone, values, partial);
  writeAtomic(opts.out, bytes);
  const info: ExportInfo = { format: 'dino-ts-teacher/1', backbone: src.backbone, ...partial };
  let sidecar: string | undefined;
  if (opts.preprocessorConfig) {
    sidecar = path.join(path.dirname(path.resolve(opts.out)), PREPROCESSOR_CONFIG);
    writeAtomic(sidecar, JSON.stringify(preprocessorConfig(info, src.defaultSize), null, 2) + '\n');
  }
  return {
    out: opts.out,
    bytes: bytes.length,
    info,
    ...(sidecar ? { preprocessorConfig: sidecar } : {}),
    seconds: (performance.now() - t0) / 1000,
  };
}

export function writeAtomic(file: string, data: Uint8Array | string): void {
  writeBytesAtomic(file, data, 'export');
}

// ---- preprocessor_config.json ------------------------------------------------------------------------

/** The file name Hugging Face loaders (transformers, transformers.js) look for next to a model. */
export const PREPROCESSOR_CONFIG = 'preprocessor_config.json';

/** The keys of a `ViTImageProcessor` config that {@link preprocessorConfig} writes. */
export interface PreprocessorConfig {
  readonly image_processor_type: 'ViTImageProcessor';
  readonly do_resize: true;
  readonly size: { readonly height: number; readonly width: number };
  /** PIL's resampling filter: 3 = bicubic, as DINO's evaluation transforms. */
  readonly resample: 3;
  readonly do_rescale: true;
  readonly rescale_factor: number;
  readonly do_normalize: false;
  readonly image_mean: readonly number[];
  readonly image_std: readonly number[];
  readonly do_convert_rgb: boolean;
}

/**
 * What a Hugging Face image processor must do to an 8-bit image so that the exported graph gets what it expects:
 * resize to the model's size (the fixed size, or for an any-size model the size it was trained at), scale the bytes
 * to [0, 1] (`rescale_factor` 1/255) and nothing else, because the dataset normalisation is the graph's own first
 * op. `do_normalize` is false, and the mean and std written are the identity (0 and 1 per channel) rather than the
 * graph's values, so that even a runtime that normalises regardless of `do_normalize` (the Python
 * `ViTImageProcessor` defaults it to true when absent) cannot normalise twice. `do_convert_rgb` is false for
 * single-channel models: the caller passes grayscale images.
 */
export function preprocessorConfig(info: Pick<ExportInfo, 'backbone' | 'imageSize'>, trainedSize: number = info.backbone.imgSize): PreprocessorConfig {
  const [height, width] = info.imageSize ?? [trainedSize, trainedSize];
  const c = info.backbone.inChans;
  return {
    image_processor_type: 'ViTImageProcessor',
    do_resize: true,
    size: { height, width },
    resample: 3,
    do_rescale: true,
    rescale_factor: 1 / 255,
    do_normalize: false,
    image_mean: Array<number>(c).fill(0),
    image_std: Array<number>(c).fill(1),
    do_convert_rgb: c === 3,
  };
}

/** The {@link ExportInfo} of an exported model (bytes or path); reads only the metadata entry. */
export function readExportInfo(model: Uint8Array | string): ExportInfo {
  const bytes = typeof model === 'string' ? fs.readFileSync(model) : model;
  const info = findMetadata(bytes, EXPORT_INFO_KEY);
  if (!info) throw new Error(`${typeof model === 'string' ? model : 'model'}: no "${EXPORT_INFO_KEY}" metadata; export the model with npx dino export`);
  return JSON.parse(info) as ExportInfo;
}

/**
 * Reads one metadata_props entry of an ONNX ModelProto without decoding the (large) graph: walks the
 * top-level protobuf fields and decodes only field 14 (StringStringEntryProto { key = 1, value = 2 }).
 */
export function findMetadata(bytes: Uint8Array, key: string): string | undefined {
  let pos = 0;
  const varint = (): number => {
    let result = 0, shift = 0, b: number;
    do {
      b = bytes[pos++]!;
      result += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    return result;
  };
  const text = (start: number, end: number) => new TextDecoder().decode(bytes.subarray(start, end));
  while (pos < bytes.length) {
    const tag = varint();
    const field = Math.floor(tag / 8), wire = tag & 7;
    if (wire === 0) varint();
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      const len = varint();
      const end = pos + len;
      if (field === 14) {
        let k: string | undefined, v: string | undefined;
        while (pos < end) {
          const t = varint();
          const l = varint();
          if (t >>> 3 === 1) k = text(pos, pos + l);
          else if (t >>> 3 === 2) v = text(pos, pos + l);
          pos += l;
        }
        if (k === key) return v;
      }
      pos = end;
    } else throw new Error(`not an ONNX model (protobuf wire type ${wire} at byte ${pos})`);
  }
  return undefined;
}
