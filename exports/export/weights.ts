/**
 * The teacher backbone's weights out of a run, as PyTorch expects them: DINO's `vision_transformer.py`
 * state_dict keys (no `teacher.` / `backbone.` prefix, no head), in DINO's order, written as a torch.save
 * `.pth` (loads with `torch.load(path, weights_only=True)` and `vits.vit_small().load_state_dict(...)`) or as
 * safetensors with metadata {"format": "pt"} (what Hugging Face's loaders look for). A backbone with a convolutional
 * stem (`ViTConfig.convStem`) adds `patch_embed.stem.<i>.*` keys after DINO's, for a PyTorch ViT that adds the stem.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { RunFolder } from '../../runtime/dino/run-folder.ts';
import type { ViTConfig } from '../../models/vit.ts';
import { sortDinoViTKeys } from '../../models/weight-names.ts';
import { writePth } from '../../runtime/io/pth-write.ts';
import { readSafetensors, writeSafetensorsAtomic, type NamedTensor } from '../../runtime/io/safetensors.ts';

export type WeightFormat = 'pth' | 'safetensors';
export const WEIGHT_FORMATS: readonly WeightFormat[] = ['pth', 'safetensors'];

/** What the training state looks like to this module: runtime/state.ts's TrainState fits. */
export interface StateLike {
  names(): string[];
  get(name: string): { readonly type: string; readonly dims: readonly number[]; readonly data: unknown };
}

export type StateSource = ReadonlyMap<string, NamedTensor> | StateLike;

export interface WriteTeacherWeightsOptions {
  /** Which network of the run (default the teacher, the one DINO evaluates and releases). */
  readonly network?: 'teacher' | 'student';
}

export interface WriteTeacherWeightsResult {
  readonly path: string;
  readonly format: WeightFormat;
  readonly tensors: number;
  readonly bytes: number;
}

/** The format a file name asks for (`.pth` / `.pt` / `.safetensors`), or undefined. */
export function weightFormatFor(file: string): WeightFormat | undefined {
  const ext = path.extname(file).toLowerCase();
  return ext === '.pth' || ext === '.pt' ? 'pth' : ext === '.safetensors' ? 'safetensors' : undefined;
}

function asMap(state: StateSource): ReadonlyMap<string, NamedTensor> {
  if (state instanceof Map) return state;
  const s = state as StateLike;
  const out = new Map<string, NamedTensor>();
  for (const name of s.names()) {
    const t = s.get(name);
    if (t.type !== 'float32' || !(t.data instanceof Float32Array)) throw new Error(`state tensor "${name}" is ${t.type}; training state is float32`);
    out.set(name, { dtype: 'float32', shape: [...t.dims], data: t.data });
  }
  return out;
}

/**
 * The backbone of one network of a training state (`teacher.backbone.<key>` -> `<key>`), in DINO's state_dict
 * order. The tensors are the state's own (no copy). Throws when the state holds no such backbone.
 */
export function teacherBackboneState(state: StateSource, network: 'teacher' | 'student' = 'teacher'): Map<string, NamedTensor> {
  const map = asMap(state);
  const prefix = `${network}.backbone.`;
  const out = new Map<string, NamedTensor>();
  for (const [name, t] of map) if (name.startsWith(prefix)) out.set(name.slice(prefix.length), t);
  if (out.size === 0) {
    const sample = [...map.keys()].slice(0, 5).join(', ') || 'none';
    throw new Error(`the state has no "${prefix}*" tensors (first keys: ${sample}); pass a dino-ts training checkpoint or run folder`);
  }
  return sortDinoViTKeys(out);
}

/** The state of a run folder (its checkpoint.safetensors) or of a checkpoint file. */
function readRunState(source: string): Map<string, NamedTensor> {
  let file = source;
  if (fs.existsSync(source) && fs.statSync(source).isDirectory()) {
    file = new RunFolder(source).checkpointFile;
    if (!fs.existsSync(file)) {
      throw new Error(`${file} not found: the run has not written a checkpoint yet (one is saved periodically and at the end of training)`);
    }
  } else if (!fs.existsSync(source)) {
    throw new Error(`${source}: no such run folder or checkpoint; train one first (npx dino train --out DIR)`);
  }
  return readSafetensors(file).tensors;
}

/** Writes `tensors` (DINO keys) as `.pth` or safetensors; returns the file size. */
export function writeWeights(file: string, tensors: ReadonlyMap<string, NamedTensor>, format: WeightFormat): number {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  if (format === 'pth') writePth(file, tensors);
  else if (format === 'safetensors') writeSafetensorsAtomic(file, new Map(tensors), { format: 'pt' });
  else throw new Error(`unknown weights format "${String(format)}"; choose ${WEIGHT_FORMATS.join(' or ')}`);
  return fs.statSync(file).size;
}

/**
 * `dino export --format pth|safetensors`: the teacher (or student) backbone of a run folder, checkpoint file or
 * in-memory state, written to `file` under DINO's keys.
 */
export function writeTeacherWeights(source: string | StateSource, file: string, format: WeightFormat, options: WriteTeacherWeightsOptions = {}): WriteTeacherWeightsResult {
  const state = typeof source === 'string' ? readRunState(source) : source;
  const tensors = teacherBackboneState(state, options.network ?? 'teacher');
  const bytes = writeWeights(file, tensors, format);
  return { path: file, format, tensors: tensors.size, bytes };
}

/** DINO's named ViT sizes (vision_transformer.py): width, depth, heads; all with MLP ratio 4, qkv bias, LayerNorm eps 1e-6. */
const DINO_VIT_SIZES: Readonly<Record<string, readonly [number, number, number]>> = { vit_tiny: [192, 12, 3], vit_small: [384, 12, 6], vit_base: [768, 12, 12] };

/**
 * The PyTorch lines that build DINO's `vision_transformer.py` model for `backbone` and load `file` into it: a named
 * size (`vits.vit_small(patch_size=16, img_size=[64])`) when the backbone is one, else the `VisionTransformer`
 * constructor with every setting. `img_size` is always given when it is not DINO's 224, since the position table's
 * size follows it (a mismatch fails in load_state_dict). A backbone with a convolutional stem has no such model:
 * the lines say so.
 */
export function pytorchLoadLines(backbone: Pick<ViTConfig, 'imgSize' | 'patchSize' | 'inChans' | 'embedDim' | 'depth' | 'numHeads' | 'mlpRatio' | 'qkvBias' | 'layerNormEps' | 'convStem'>, file: string): string[] {
  if (backbone.convStem && backbone.convStem.length > 0) {
    return [`# ${path.basename(file)} holds a convolutional stem (patch_embed.stem.*), which DINO's vision_transformer.py does not define: load it into a ViT that adds the stem before its patch embedding`];
  }
  const named = Object.entries(DINO_VIT_SIZES).find(([, [d, depth, heads]]) => d === backbone.embedDim && depth === backbone.depth && heads === backbone.numHeads);
  const standard = backbone.mlpRatio === 4 && backbone.qkvBias && backbone.layerNormEps === 1e-6;
  const extra = [...(backbone.imgSize !== 224 ? [`img_size=[${backbone.imgSize}]`] : []), ...(backbone.inChans !== 3 ? [`in_chans=${backbone.inChans}`] : [])];
  const build = named && standard
    ? `model = vits.${named[0]}(${[`patch_size=${backbone.patchSize}`, ...extra].join(', ')})`
    : `model = vits.VisionTransformer(img_size=[${backbone.imgSize}], patch_size=${backbone.patchSize}, in_chans=${backbone.inChans}, embed_dim=${backbone.embedDim}, depth=${backbone.depth}, ` +
      `num_heads=${backbone.numHeads}, mlp_ratio=${backbone.mlpRatio}, qkv_bias=${backbone.qkvBias ? 'True' : 'False'}, norm_layer=partial(torch.nn.LayerNorm, eps=${backbone.layerNormEps}))`;
  const load = path.extname(file).toLowerCase() === '.safetensors'
    ? `model.load_state_dict(safetensors.torch.load_file('${path.basename(file)}'))`
    : `model.load_state_dict(torch.load('${path.basename(file)}', weights_only=True))`;
  const imports = `import torch${named && standard ? '' : '; from functools import partial'}${load.includes('safetensors') ? '; import safetensors.torch' : ''}; import vision_transformer as vits  # DINO's`;
  return [imports, build, load];
}
