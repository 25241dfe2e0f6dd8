/**
 * Any backbone's features as an inference ONNX model: the export for backbones other than DINO's ViT (a ResNet, a
 * backbone registered with `registerBackbone`), which have no [CLS] attention or patch tokens to export. The model
 * takes `images` float32 [N, C, S, S] in [0, 1] (S the training crop side; the run's normalisation is the graph's
 * first op) and returns `features` [N, D], the backbone in inference mode (BatchNorm with its running statistics), as
 * `backbone` of models/network.ts builds it in the DINO step. Metadata key `dino.backbone` holds
 * {@link BackboneExportInfo}; `dino features` / `writeFeatures` read such a model as they read a ViT export.
 */
import * as fs from 'node:fs';
import * as E from 'fp-ts/lib/Either.js';
import { Graph, Scope, emitOnnx, formatError } from '../../dsl/index.ts';
import { backbone as buildBackbone } from '../../models/network.ts';
import { type BackboneConfig, featureDim } from '../../models/presets.ts';
import type { TrainConfig } from '../../runtime/dino/config.ts';
import { type NamedTensor, readSafetensors } from '../../runtime/io/safetensors.ts';
import { normalizeImages } from './normalize.ts';
import { findMetadata } from './teacher.ts';

/** The metadata key holding {@link BackboneExportInfo} as JSON. */
export const BACKBONE_EXPORT_KEY = 'dino.backbone';

export interface BackboneExportInfo {
  readonly format: 'dino-ts-backbone/1';
  readonly backbone: BackboneConfig;
  /** D, the width of `features`. */
  readonly featureDim: number;
  readonly mean: readonly number[];
  readonly std: readonly number[];
  /** The fixed input size [H, W]. */
  readonly imageSize: readonly [number, number];
  readonly source: string;
}

export interface ExportBackboneOptions {
  /** The run's config (its backbone and normalisation): `TrainConfig` of any backbone, as `train` takes it. */
  readonly config: Pick<TrainConfig<BackboneConfig>, 'backbone' | 'augment'>;
  /** The run's checkpoint (checkpoint.safetensors), or its state as name -> tensor. */
  readonly checkpoint: string | ReadonlyMap<string, NamedTensor>;
  /** Which network (default the teacher, the one DINO evaluates). */
  readonly network?: 'teacher' | 'student';
  /** Output .onnx path. */
  readonly out: string;
  /** Input side (default the backbone's `imgSize`, its global crop). */
  readonly imageSize?: number;
}

/** Writes the backbone's feature model (see the module comment); errors name a missing or misshapen tensor. */
export function exportBackbone(opts: ExportBackboneOptions): { out: string; bytes: number; info: BackboneExportInfo } {
  const network = opts.network ?? 'teacher';
  const { backbone } = opts.config, { mean, std } = opts.config.augment;
  const side = opts.imageSize ?? backbone.imgSize;
  const state = typeof opts.checkpoint === 'string' ? readSafetensors(opts.checkpoint).tensors : opts.checkpoint;
  const where = typeof opts.checkpoint === 'string' ? opts.checkpoint : 'the state';
  const g = new Graph('backbone');
  const images = g.input('images', 'float32', ['N', backbone.inChans, side, side]);
  const out = buildBackbone(new Scope(g), normalizeImages(g, images, backbone.inChans, mean, std), backbone, { train: false });
  g.output('features', out.features);
  const values = new Map<string, Float32Array>();
  const problems: string[] = [];
  for (const [name, param] of g.params) {
    const key = `${network}.backbone.${name}`;
    const t = state.get(key);
    const want = param.shape.reduce<number>((a, d) => a * (d as number), 1);
    if (!t) problems.push(`${key} is missing`);
    else if (t.data.length !== want) problems.push(`${key} holds ${t.data.length} values, the backbone needs [${param.shape.join(', ')}]`);
    else values.set(name, t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as ArrayLike<number>));
  }
  if (problems.length) throw new Error(`${where} does not fit the config's backbone (${backbone.kind}):\n  ${problems.join('\n  ')}`);
  const info: BackboneExportInfo = {
    format: 'dino-ts-backbone/1', backbone, featureDim: featureDim(backbone), mean, std, imageSize: [side, side],
    source: `${network} of ${where}`,
  };
  const bytes = emitOnnx(g, { params: { values }, docString: `DINO ${backbone.kind} backbone (${info.source}): images [N, C, H, W] in [0, 1] -> features`, metadata: { [BACKBONE_EXPORT_KEY]: JSON.stringify(info) } });
  if (E.isLeft(bytes)) throw new Error(`could not build the backbone export:\n  ${bytes.left.map(formatError).join('\n  ')}`);
  fs.writeFileSync(opts.out, bytes.right);
  return { out: opts.out, bytes: bytes.right.length, info };
}

/** The {@link BackboneExportInfo} of a model, or undefined when it is not a backbone export. */
export function readBackboneExportInfo(model: Uint8Array | string): BackboneExportInfo | undefined {
  const bytes = typeof model === 'string' ? fs.readFileSync(model) : model;
  const raw = findMetadata(bytes, BACKBONE_EXPORT_KEY);
  return raw === undefined ? undefined : (JSON.parse(raw) as BackboneExportInfo);
}
