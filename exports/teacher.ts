/**
 * The frozen backbone as an inference ONNX model: what users take home from a run.
 *
 * Contract of the exported graph (metadata key `dino.export` describes it as JSON, see {@link ExportInfo}):
 * - input `images`: float32 [N, C, H, W], values in [0, 1]; N is the symbolic dim `N`. The dataset
 *   normalisation (the run's `augment.mean` / `augment.std`) is the graph's first op.
 * - outputs `features` [N, D] (final-norm [CLS], DINO's feature), `patch_tokens` [N, P, D] (final-norm, patches
 *   row-major), `cls_attention` [N, heads, P] (last block's attention of the [CLS] query over the patch keys).
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
import { Graph, type ParamSpec, Scope, emitOnnx, formatError, specOf } from '../dsl/index.ts';
import { type ViTConfig, visionTransformer } from '../models/vit.ts';
import { checkWeights, formatWeightProblems } from '../models/weights.ts';
import { getPreset as getModelPreset } from '../models/presets.ts';
import { type TrainConfig, getPreset as getTrainPreset, presetNames as trainPresetNames } from '../runtime/dino/config.ts';
import { DINO_AUGMENT } from '../runtime/data/multicrop.ts';
import { readSafetensors, type NamedTensor } from '../runtime/io/safetensors.ts';
import { readDinoWeights } from '../runtime/io/weights.ts';
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
}

export interface ExportTeacherOptions {
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
  /** Override the normalisation (one value, or one per channel). */
  readonly mean?: readonly number[];
  readonly std?: readonly number[];
  /** Output .onnx path. */
  readonly out: string;
  /** A fixed input side (or [H, W]) instead of dynamic H and W. */
  readonly imageSize?: number | readonly [number, number];
  /**
   * Dynamic H and W (default true unless `imageSize` is given). `false` without `imageSize` fixes the size to the
   * run's global crop size, or the preset's `imgSize`.
   */
  readonly dynamicSize?: boolean;
}

export interface ExportTeacherResult {
  readonly out: string;
  readonly bytes: number;
  readonly info: ExportInfo;
  /** Seconds spent building and writing the model. */
  readonly seconds: number;
}

// ---- the graph ---------------------------------------------------------------------------------------

export interface TeacherGraphOptions {
  readonly mean: readonly number[];
  readonly std: readonly number[];
  /** [H, W] for a fixed-size graph; null for symbolic H and W (any multiples of the patch size). */
  readonly imageSize: readonly [number, number] | null;
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
  const out = visionTransformer(new Scope(g), normalizeImages(g, images, cfg.inChans, opts.mean, opts.std), cfg);
  g.output('features', out.cls);
  g.output('patch_tokens', out.patchTokens);
  g.output('cls_attention', out.clsAttention);
  return g;
}

/** Every parameter spec of the backbone (names = DINO state_dict keys). */
export function backboneSpecs(cfg: ViTConfig): ParamSpec[] {
  const p = cfg.patchSize, side = Math.floor(cfg.imgSize / p) * p;
  const g = buildTeacherGraph(cfg, { mean: [0], std: [1], imageSize: [side, side] });
  return [...g.params.values()].map(specOf);
}

// ---- where the weights come from ---------------------------------------------------------------------

interface Resolved {
  readonly backbone: ViTConfig;
  readonly mean: readonly number[];
  readonly std: readonly number[];
  readonly defaultSize: number;
  readonly weights: Map<string, NamedTensor>;
  readonly weightsFile: string;
  readonly source: string;
}

/** The run's TrainConfig (config.json, else the checkpoint's metadata); errors name the path and what to do. */
export function readRunConfig(run: string): TrainConfig {
  if (!fs.existsSync(run) || !fs.statSync(run).isDirectory()) {
    throw new Error(`run folder ${run} does not exist: train one first (npx dino train --out ${run})`);
  }
  const configPath = path.join(run, 'config.json');
  if (fs.existsSync(configPath)) {
    try {
      return JSON.parse(fs.readFileSync(configPath, 'utf8')) as TrainConfig;
    } catch (e) {
      throw new Error(`${configPath}: not valid JSON (${(e as Error).message}); restore it from the checkpoint's metadata or re-run training`);
    }
  }
  const ckpt = checkpointPath(run);
  const meta = readSafetensors(ckpt).metadata['config'];
  if (!meta) throw new Error(`${run} has no config.json and ${ckpt} carries no config metadata: is this a run folder written by \`dino train\`?`);
  return JSON.parse(meta) as TrainConfig;
}

/** DIR/checkpoint.safetensors, or an error saying how to get one. */
export function checkpointPath(run: string): string {
  const file = path.join(run, 'checkpoint.safetensors');
  if (!fs.existsSync(file)) {
    throw new Error(`${file} not found: the run has not written a checkpoint yet (one is saved periodically and at the end of training); let it run or resume it with npx dino train --resume ${run}`);
  }
  return file;
}

function resolveSource(opts: ExportTeacherOptions): Resolved {
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
  if (!opts.weights) throw new Error('nothing to export: pass a run folder (--run DIR) or --preset NAME --weights FILE');
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
    throw new Error(`--weights ${opts.weights} needs --preset NAME to say which architecture it holds (e.g. vit_small for dino_deitsmall16_pretrain.pth)`);
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
  if (E.isLeft(checked)) throw new Error(`${formatWeightProblems(checked.left, file)}\n  (is --preset the architecture these weights were trained with?)`);
  const values = new Map<string, Float32Array>();
  for (const [name, t] of weights) {
    if (name.endsWith('.num_batches_tracked')) continue;
    values.set(name, t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as Float64Array));
  }
  return values;
}

/** Emits the inference model (fixed or dynamic size) with `values` baked in. */
export function teacherOnnx(backbone: ViTConfig, values: ReadonlyMap<string, Float32Array>, info: Omit<ExportInfo, 'format' | 'backbone'>): Uint8Array {
  const g = buildTeacherGraph(backbone, { mean: info.mean, std: info.std, imageSize: info.imageSize });
  const full: ExportInfo = { format: 'dino-ts-teacher/1', backbone, ...info };
  const bytes = emitOnnx(g, {
    params: { values },
    docString: `DINO ViT backbone (${info.source}): images [N, C, H, W] in [0, 1] -> features, patch_tokens, cls_attention`,
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
  const bytes = teacherOnnx(src.backbone, values, { mean, std, imageSize, source: src.source });
  fs.mkdirSync(path.dirname(path.resolve(opts.out)), { recursive: true });
  const tmp = `${opts.out}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, bytes);
  fs.renameSync(tmp, opts.out);
  return {
    out: opts.out,
    bytes: bytes.length,
    info: { format: 'dino-ts-teacher/1', backbone: src.backbone, mean, std, imageSize, source: src.source },
    seconds: (performance.now() - t0) / 1000,
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
