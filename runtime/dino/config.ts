/**
 * The typed DINO training configuration and its schema (one row per key: type, choices, optional or not, resumable
 * or not, main_dino.py flag, help), from which the override parser, the config-file check, the resume check and the
 * `dino train` flags are derived. Every field carries DINO's advice. The presets: runtime/dino/presets.ts.
 */
import type { DinoHeadConfig } from '../../models/head.ts';
import type { BackboneConfig } from '../../models/presets.ts';
import type { ViTConfig } from '../../models/vit.ts';
import type { DinoStepConfig } from '../../models/dino-step.ts';
import { CENTERINGS, type Centering } from '../../models/dino-loss.ts';
import { PRECISIONS, type TrainPrecision } from '../../dsl/autocast.ts';
import { type AugmentConfig, augmentConfig } from '../data/multicrop.ts';

/**
 * A training config. `B` is its backbone's config: a ViT (the presets, the CLI, export), or for library use any
 * backbone the DINO step builds (a ResNet, a backbone registered with `registerBackbone`): `train` takes any.
 */
export interface TrainConfig<B extends BackboneConfig = ViTConfig> {
  readonly preset: string;
  readonly backbone: B;
  readonly head: DinoHeadConfig;
  readonly augment: AugmentConfig;
  /** Images per step. DINO's learning rate scales linearly with it. */
  readonly batch: number;
  /** Length of the run in steps; every schedule spans it. */
  readonly steps: number;
  /**
   * The image folder the run trains on (an absolute path); absent: the embedded Fashion-MNIST. Evaluation of a run
   * (k-NN, linear probe, report, demo) uses the same data by default.
   */
  readonly data?: string;
  /** The epochs `steps` was derived from (`--epochs`, runtime/dino/vit-presets.ts `withEpochs`); absent when given in steps. */
  readonly epochs?: number;
  /**
   * Steps in one epoch of the run's data (floor(train images / batch)), recorded when epoch-based schedules (an
   * `--arch` preset's warm-ups and frozen last layer) were scaled to it for a run given in steps (`withEpochSteps`).
   */
  readonly epochSteps?: number;
  /**
   * Fraction of each class of a plain image folder held out for evaluation, never trained on (`--holdout F`,
   * runtime/data/folder-index.ts). Absent: training uses every image; a folder with train/ + val/ has its own split.
   */
  readonly holdout?: number;
  readonly seed: number;
  /**
   * Peak learning rate for a batch of 256 (scaled by batch / 256), reached after warm-up. DINO: 0.0005.
   */
  readonly lr: number;
  /** Final learning rate of the cosine decay. DINO: 1e-6. */
  readonly minLr: number;
  /** Fraction of the run spent in linear lr warm-up. DINO: 10 of 100 epochs. */
  readonly warmupFraction: number;
  /** Weight decay at the start (cosine schedule). DINO: 0.04. */
  readonly weightDecay: number;
  /** Weight decay at the end. DINO: 0.4; "a higher weight decay ... improves the performance for ViTs". */
  readonly weightDecayEnd: number;
  /**
   * Teacher EMA momentum at the start, cosine-increased to 1. DINO: 0.996; "we recommend setting a higher
   * value with small batches: for example use 0.9995 with batch size of 256".
   */
  readonly momentumTeacher: number;
  /** Teacher temperature at the start of its warm-up. DINO: 0.04. */
  readonly warmupTeacherTemp: number;
  /** Final teacher temperature. DINO: 0.04; "starting with the default value of 0.04 and increase this slightly if needed"; above 0.07 is unstable. */
  readonly teacherTemp: number;
  /** Steps of teacher-temperature warm-up. DINO: 0 (30 epochs when teacherTemp > 0.04). */
  readonly warmupTeacherTempSteps: number;
  /** Student temperature τ_s. DINO: 0.1. */
  readonly studentTemp: number;
  /** Center EMA momentum. DINO: 0.9. */
  readonly centerMomentum: number;
  /** Per-parameter gradient-norm clipping; 0 disables. DINO: 3.0 ("0.3, 1.0, 2.0 for larger models"). */
  readonly clipGrad: number;
  /**
   * Steps during which the head's last layer is not updated. DINO: 1 epoch; "typically doing so during the
   * first epoch helps training. Try increasing this value if the loss does not decrease".
   */
  readonly freezeLastLayerSteps: number;
  /**
   * `fp16`: mixed precision, DINO's `--use_fp16 true` (PyTorch autocast + GradScaler): the matrix products in
   * float16, dynamic loss scaling, weights and everything else in float32. `bf16`: the matrix products in bfloat16
   * (PyTorch autocast with dtype=torch.bfloat16), no loss scaling: bfloat16 has float32's range, 8 significant bits
   * to float16's 11. Absent: fp32 (this key is only written for fp16 and bf16, so runs from before it resume). Speed
   * options for GPUs; DINO: "We recommend to disable mixed-precision training if the loss is unstable, if reducing
   * the patch size or if training with bigger ViTs".
   */
  readonly precision?: TrainPrecision;
  /**
   * Weight of the KoLeo regulariser on the student's [CLS] features of each global crop (models/koleo.ts; DINOv2's
   * addition, weight 0.1 there): spreads the features over the sphere. Absent: 0, not in the graph.
   */
  readonly koleoWeight?: number;
  /**
   * How the teacher's targets are made. `center` (DINO): softmax((t - c) / τ_t), c the running mean of the teacher's
   * logits. `sinkhorn` (DINOv2, from SwAV): 3 Sinkhorn-Knopp iterations on t / τ_t over the batch's global crops
   * (models/sinkhorn.ts), which make the batch use every prototype about equally, against collapse onto a few.
   * The center is still updated (and checkpointed) with `sinkhorn`, unused. Absent: `center`.
   */
  readonly centering?: Centering;
}

/** A training config of any backbone (a ViT, a ResNet, a registered one): what a run folder holds. */
export type AnyTrainConfig = TrainConfig<BackboneConfig>;

// ---- the schema --------------------------------------------------------------------------------------------------

/** A leaf of a config: a value, not an object of further keys. */
type Leaf = string | number | boolean | readonly unknown[];
/** The dotted paths of `T`'s leaves: `lr`, `backbone.depth`, `augment.blurSigma`, ... */
type LeafPaths<T, Prefix extends string = ''> = {
  [K in keyof T & string]-?: NonNullable<T[K]> extends Leaf ? `${Prefix}${K}` : LeafPaths<NonNullable<T[K]>, `${Prefix}${K}.`>;
}[keyof T & string];
/** Every key of a TrainConfig, dotted. */
export type ConfigKey = LeafPaths<TrainConfig>;

/**
 * What a config key holds. `integer` is a number that must be whole; `data` is the run's data record (a path, or an
 * object from older runs), checked by its own parser (runtime/data/source.ts); `object` is an object of JSON values
 * (a registered backbone's `options`).
 */
export type KeyType = 'number' | 'integer' | 'boolean' | 'string' | 'number[]' | 'data' | 'object';

/** One key of the schema. */
export interface KeySpec {
  readonly type: KeyType;
  /** One line for `--help` and the docs, with DINO's advice where it gives some. */
  readonly help: string;
  /** The values a string key takes. */
  readonly choices?: readonly string[];
  /** The length of a `number[]` key that has a fixed one (a range: 2). */
  readonly length?: number;
  /**
   * An optional key: the value its absence means. It is written only when set to another value, so configs from
   * before the key existed stay valid and their step graphs unchanged.
   */
  readonly absent?: unknown;
  /** Set through its own option (named here), never by an override; a config file may still hold it. */
  readonly setBy?: string;
  /** A resumed run may change it (the run's length: the schedules are recomputed over it). */
  readonly resumable?: boolean;
  /** main_dino.py's flag for it, when it has one (with dashes). `dino train` derives its flag from it. */
  readonly dinoFlag?: string;
  /** The range a command-line flag for it accepts. */
  readonly min?: number;
  readonly max?: number;
  /** The value must be above `min` rather than at least `min` (a temperature). */
  readonly exclusiveMin?: boolean;
}

/** The backbone kinds a config may hold: DINO's ViT, the ResNet, a backbone registered with `registerBackbone`. */
export const BACKBONE_KINDS = ['vit', 'resnet', 'custom'] as const satisfies readonly BackboneConfig['kind'][];
export type BackboneKind = (typeof BACKBONE_KINDS)[number];

// The family is chosen by --arch / --preset (or the library's config), never changed by an override.
const backboneKind = { type: 'string', choices: BACKBONE_KINDS, setBy: 'arch', help: 'the backbone family: vit, resnet, or custom (registered with registerBackbone)' } as const;
const probability = { type: 'number', min: 0, max: 1 } as const;
const size = { type: 'integer', min: 1 } as const;

/**
 * The training config's keys, one row each: type, choices, the value an optional key's absence means, whether a
 * resumed run may change it, its main_dino.py flag and help. The override parser (`--set`), the check of a config
 * file, the resume check and the `dino train` flags are derived from it; tsc requires a row for every key of
 * TrainConfig. Defaults are the presets' (runtime/dino/presets.ts).
 */
export const CONFIG_SCHEMA: { readonly [K in ConfigKey]: KeySpec } = {
  preset: { type: 'string', help: 'the preset the config started from (a name, for the record)' },
  data: { type: 'data', setBy: 'data', help: 'the image folder the run trains on (absolute path); absent: Fashion-MNIST' },
  batch: { ...size, dinoFlag: 'batch-size-per-gpu', help: 'images per step; DINO\'s learning rate scales linearly with it' },
  steps: { ...size, resumable: true, help: 'length of the run in steps; every schedule spans it' },
  // Absent: the length was given in steps.
  epochs: { ...size, absent: undefined, setBy: 'epochs', resumable: true, dinoFlag: 'epochs', help: 'the epochs `steps` was derived from' },
  // Absent: no epoch-based schedule was scaled to the data (Fashion-MNIST presets, or a length in epochs).
  epochSteps: { ...size, absent: undefined, setBy: 'steps', help: 'steps in one epoch of the run\'s data, floor(train images / batch), that --arch schedules were scaled to' },
  // Absent: every image of the folder trains.
  holdout: { type: 'number', min: 0, max: 1, exclusiveMin: true, absent: undefined, setBy: 'holdout', help: 'fraction of each class of a plain image folder held out for evaluation' },
  seed: { type: 'integer', min: 0, dinoFlag: 'seed', help: 'the run\'s seed (init, shuffling, augmentation, stochastic depth)' },
  lr: { type: 'number', min: 0, dinoFlag: 'lr', help: 'peak learning rate for a batch of 256 (scaled by batch / 256), after warm-up (DINO: 0.0005)' },
  minLr: { type: 'number', min: 0, dinoFlag: 'min-lr', help: 'final learning rate of the cosine (DINO: 1e-6)' },
  warmupFraction: { ...probability, resumable: true, help: 'fraction of the run in linear lr warm-up (DINO: 10 of 100 epochs)' },
  weightDecay: { type: 'number', min: 0, dinoFlag: 'weight-decay', help: 'weight decay at the start, cosine schedule (DINO: 0.04)' },
  weightDecayEnd: { type: 'number', min: 0, dinoFlag: 'weight-decay-end', help: 'weight decay at the end (DINO: 0.4; "a higher weight decay ... improves the performance for ViTs")' },
  momentumTeacher: { ...probability, dinoFlag: 'momentum-teacher', help: 'teacher EMA momentum at the start, cosine to 1 (DINO: 0.996; higher for small batches, e.g. 0.9995 at batch 256)' },
  warmupTeacherTemp: { type: 'number', min: 0, exclusiveMin: true, dinoFlag: 'warmup-teacher-temp', help: 'teacher temperature at the start of its warm-up (DINO: 0.04)' },
  teacherTemp: { type: 'number', min: 0, exclusiveMin: true, dinoFlag: 'teacher-temp', help: 'final teacher temperature (DINO: 0.04, "increase this slightly if needed"; above 0.07 is unstable)' },
  warmupTeacherTempSteps: { type: 'integer', min: 0, help: 'steps of teacher-temperature warm-up (DINO: 0; 30 epochs when teacherTemp > 0.04)' },
  studentTemp: { type: 'number', min: 0, exclusiveMin: true, help: 'student temperature (DINO: 0.1)' },
  centerMomentum: { ...probability, help: 'center EMA momentum (DINO: 0.9)' },
  clipGrad: { type: 'number', min: 0, dinoFlag: 'clip-grad', help: 'per-parameter gradient-norm clipping, 0: off (DINO: 3.0; "0.3, 1.0, 2.0 for larger models")' },
  freezeLastLayerSteps: { type: 'integer', min: 0, help: 'steps the head\'s last layer is not updated (DINO: 1 epoch; "try increasing this value if the loss does not decrease")' },
  precision: { type: 'string', choices: PRECISIONS, absent: 'fp32', setBy: 'precision', help: 'fp16: DINO\'s --use_fp16 (float16 matrix products, loss scaling); bf16: bfloat16 products; for GPUs' },
  koleoWeight: { type: 'number', min: 0, absent: 0, help: 'weight of the KoLeo regulariser on the student\'s [CLS] features (DINOv2: 0.1); 0: not in the graph' },
  centering: { type: 'string', choices: CENTERINGS, absent: 'center', help: 'teacher targets: center (DINO) or sinkhorn (DINOv2, Sinkhorn-Knopp over the batch)' },
  'backbone.kind': backboneKind,
  'backbone.imgSize': { ...size, help: 'side of the global crops the position embedding is sized for (DINO: 224)' },
  'backbone.patchSize': { ...size, dinoFlag: 'patch-size', help: 'ViT patch side (DINO: 16, or 8; smaller is better and costlier)' },
  'backbone.inChans': { ...size, help: 'input channels (3: RGB, 1: Fashion-MNIST)' },
  'backbone.embedDim': { ...size, help: 'token width (vit_tiny 192, vit_small 384, vit_base 768)' },
  'backbone.depth': { ...size, help: 'transformer blocks (12 in DINO\'s ViTs)' },
  'backbone.numHeads': { ...size, help: 'attention heads; must divide embedDim' },
  'backbone.mlpRatio': { type: 'number', min: 0, exclusiveMin: true, help: 'MLP width / embedDim (DINO: 4)' },
  'backbone.qkvBias': { type: 'boolean', help: 'bias in the qkv projection (DINO: true)' },
  'backbone.layerNormEps': { type: 'number', min: 0, exclusiveMin: true, help: 'LayerNorm epsilon (DINO: 1e-6)' },
  'backbone.dropPathRate': { ...probability, dinoFlag: 'drop-path-rate', help: 'stochastic depth rate of the last block (DINO: 0.1)' },
  'backbone.convStem': { type: 'number[]', absent: [], help: 'channels of 3x3 conv + GELU layers before the patch embedding (Xiao et al. 2021); empty: none' },
  'head.outDim': { ...size, dinoFlag: 'out-dim', help: 'K, the head\'s output dimension (DINO: 65536; "large values work well" for large datasets)' },
  'head.hiddenDim': { ...size, help: 'width of the head\'s hidden layers (DINO: 2048)' },
  'head.bottleneckDim': { ...size, help: 'width of the bottleneck before the L2 normalisation (DINO: 256)' },
  'head.nlayers': { ...size, help: 'Linear layers in the head\'s MLP (DINO: 3)' },
  'head.useBn': { type: 'boolean', dinoFlag: 'use-bn-in-head', help: 'BatchNorm after each hidden layer of the head (DINO: false)' },
  'head.normLastLayer': { type: 'boolean', dinoFlag: 'norm-last-layer', help: 'weight-normalised last layer with weight_g fixed to 1 (DINO: true; false is better but less stable: "False with vit_small and True with vit_base")' },
  'augment.augment': { type: 'string', choices: ['dino', 'none'], help: 'none: every crop is the whole image resized' },
  'augment.globalSize': { ...size, help: 'side of the two global crops (DINO: 224)' },
  'augment.localSize': { ...size, help: 'side of the local crops (DINO: 96)' },
  'augment.localCrops': { type: 'integer', min: 0, dinoFlag: 'local-crops-number', help: 'local crops per image (DINO: 8; 0 disables multi-crop)' },
  'augment.globalScale': { type: 'number[]', length: 2, dinoFlag: 'global-crops-scale', help: 'area fraction range of the global crops (DINO: [0.4, 1])' },
  'augment.localScale': { type: 'number[]', length: 2, dinoFlag: 'local-crops-scale', help: 'area fraction range of the local crops (DINO: [0.05, 0.4])' },
  'augment.aspectRatio': { type: 'number[]', length: 2, help: 'aspect ratio range of all crops (torchvision: [3/4, 4/3])' },
  'augment.flipP': { ...probability, help: 'horizontal flip probability (DINO: 0.5)' },
  'augment.colorJitterP': { ...probability, help: 'colour jitter probability (DINO: 0.8)' },
  'augment.brightness': { type: 'number', min: 0, help: 'brightness jitter (DINO: 0.4)' },
  'augment.contrast': { type: 'number', min: 0, help: 'contrast jitter (DINO: 0.4)' },
  'augment.saturation': { type: 'number', min: 0, help: 'saturation jitter (DINO: 0.2)' },
  'augment.hue': { type: 'number', min: 0, max: 0.5, help: 'hue jitter in turns (DINO: 0.1)' },
  'augment.grayscaleP': { ...probability, help: 'grayscale probability (DINO: 0.2)' },
  'augment.blurP': { type: 'number[]', length: 3, help: 'blur probability of [first global, second global, each local] crop (DINO: [1.0, 0.1, 0.5])' },
  'augment.blurSigma': { type: 'number[]', length: 2, help: 'blur sigma range in pixels (DINO: [0.1, 2.0] for 224 px crops: scale it by size / 224)' },
  'augment.solarizeP': { ...probability, help: 'solarization probability of the second global crop (DINO: 0.2)' },
  'augment.solarizeThreshold': { ...probability, help: 'values at or above it are inverted when solarizing (PIL: 128 / 255)' },
  'augment.mean': { type: 'number[]', help: 'per-channel mean subtracted last (DINO: ImageNet\'s)' },
  'augment.std': { type: 'number[]', help: 'per-channel standard deviation divided by last (DINO: ImageNet\'s)' },
};

const inChans = { ...size, help: 'input channels (3: RGB, 1: Fashion-MNIST)' } as const;

/**
 * The `backbone.*` rows of each backbone kind. A config's backbone is checked (and overridden with `--set`) by the
 * rows of its own `kind`; the ViT's are CONFIG_SCHEMA's (the schema's key type follows the ViT, the presets' backbone).
 */
export const BACKBONE_SCHEMAS: { readonly [K in BackboneKind]: { readonly [key: string]: KeySpec } } = {
  vit: Object.fromEntries(Object.entries(CONFIG_SCHEMA).filter(([k]) => k.startsWith('backbone.'))),
  resnet: {
    'backbone.kind': backboneKind,
    'backbone.block': { type: 'string', choices: ['basic', 'bottleneck'], help: 'basic (two 3x3 convs: ResNet-18/34) or bottleneck (1x1, 3x3, 1x1, expansion 4: ResNet-50+)' },
    'backbone.layers': { type: 'number[]', length: 4, help: 'blocks per stage (ResNet-18: [2, 2, 2, 2], ResNet-50: [3, 4, 6, 3])' },
    'backbone.width': { ...size, help: 'channels of the stem and the first stage, doubled each stage (torchvision: 64)' },
    'backbone.inChans': inChans,
    'backbone.imgSize': { ...size, help: 'side of the global crops (DINO: 224); the features are globally pooled, any size runs' },
  },
  custom: {
    'backbone.kind': backboneKind,
    'backbone.name': { type: 'string', help: 'the name the backbone was registered under (registerBackbone); the program that trains, resumes or evaluates the run registers it first' },
    'backbone.inChans': inChans,
    'backbone.imgSize': { ...size, help: 'side of the global crops the backbone is trained on' },
    'backbone.options': { type: 'object', absent: undefined, help: 'the registered backbone\'s own settings (JSON values)' },
  },
};

/** The kind of a config's backbone when it is one of BACKBONE_KINDS. */
function kindOf(cfg: unknown): BackboneKind | undefined {
  const kind = (cfg as { backbone?: { kind?: unknown } } | undefined)?.backbone?.kind;
  return (BACKBONE_KINDS as readonly unknown[]).includes(kind) ? (kind as BackboneKind) : undefined;
}

const SCHEMA_KEYS = Object.keys(CONFIG_SCHEMA) as ConfigKey[];
/** The objects of keys: `backbone`, `head`, `augment`. */
const SCHEMA_GROUPS = [...new Set(SCHEMA_KEYS.filter((k) => k.includes('.')).map((k) => k.slice(0, k.indexOf('.'))))];
/** The row of `key` for a config whose backbone is of `kind` (its `backbone.*` keys are that kind's). */
function specOf(key: string, kind: BackboneKind = 'vit'): KeySpec | undefined {
  if (key.startsWith('backbone.')) {
    const rows = BACKBONE_SCHEMAS[kind];
    return Object.hasOwn(rows, key) ? rows[key] : undefined;
  }
  return Object.hasOwn(CONFIG_SCHEMA, key) ? CONFIG_SCHEMA[key as ConfigKey] : undefined;
}
/** Every row of a config whose backbone is of `kind`: the shared keys, then that kind's backbone keys. */
const keysOf = (kind: BackboneKind): string[] => [...SCHEMA_KEYS.filter((k) => !k.startsWith('backbone.')), ...Object.keys(BACKBONE_SCHEMAS[kind])];
/** A config may leave the key out (every other key it must hold). */
const isOptional = (spec: KeySpec): boolean => 'absent' in spec || spec.type === 'data';

/** The type a value of `spec` has, in the words of the errors ("number", "array of number"). */
function typeName(spec: KeySpec): string {
  return spec.type === 'integer' ? 'number' : spec.type === 'number[]' ? 'array of number' : spec.type;
}

function typeOf(v: unknown): string {
  if (Array.isArray(v)) return `array of ${v.length ? typeOf(v[0]) : 'any'}`;
  return typeof v;
}

/** What is wrong with `value` as the value of `key`, or undefined. */
function valueProblem(key: string, spec: KeySpec, value: unknown, shown: string): string | undefined {
  switch (spec.type) {
    case 'data':
      return undefined;
    case 'object':
      if (!value || typeof value !== 'object' || Array.isArray(value)) return `"${key}" must be an object, got ${typeOf(value)}${shown}`;
      return undefined;
    case 'number[]':
      if (!Array.isArray(value) || value.some((e) => typeof e !== 'number')) return `"${key}" must be array of number, got ${typeOf(value)}${shown}`;
      if (spec.length !== undefined && value.length !== spec.length) return `"${key}" must be ${spec.length} numbers, got ${value.length}${shown}`;
      return undefined;
    default:
      if (typeof value !== (spec.type === 'integer' ? 'number' : spec.type)) return `"${key}" must be ${typeName(spec)}, got ${typeOf(value)}${shown}`;
      if (spec.type === 'integer' && !Number.isInteger(value)) return `"${key}" must be an integer, got ${String(value)}`;
      if (spec.choices && !spec.choices.includes(value as string)) return `"${key}" must be one of ${spec.choices.join(', ')}, got ${JSON.stringify(value)}`;
      return undefined;
  }
}

/** Sets (or, with undefined, deletes) the value at a dotted key of a mutable clone. */
function setAt(obj: Record<string, unknown>, key: string, value: unknown): void {
  const path = key.split('.');
  let o = obj;
  for (const part of path.slice(0, -1)) o = o[part] as Record<string, unknown>;
  if (value === undefined) delete o[path[path.length - 1]!];
  else o[path[path.length - 1]!] = value;
}

/** Config values by dotted key, each of its key's type (what `dino train`'s flags set). */
export type ConfigValues = { readonly [K in ConfigKey]?: unknown };

/**
 * `cfg` with `values` set (dotted keys, typed values: `{ lr: 0.002, 'head.outDim': 1024 }`), each checked against
 * the schema; an optional key set to the value its absence means is removed. Every problem is reported at once
 * ({@link ConfigOverrideError}); the augmentation is checked as a whole after.
 */
export function withValues<B extends BackboneConfig = ViTConfig>(cfg: TrainConfig<B>, values: ConfigValues | ReadonlyArray<readonly [string, unknown]>): TrainConfig<B> {
  const entries: ReadonlyArray<readonly [string, unknown]> = Array.isArray(values) ? values : Object.entries(values);
  const problems: string[] = [];
  const kind = kindOf(cfg);
  const out = structuredClone(cfg) as unknown as Record<string, unknown>;
  for (const [key, value] of entries) {
    const problem = settableProblem(key, kind) ?? valueProblem(key, specOf(key, kind)!, value, ` (${JSON.stringify(value)})`);
    if (problem) { problems.push(problem); continue; }
    const spec = specOf(key, kind)!;
    setAt(out, key, isOptional(spec) && JSON.stringify(value) === JSON.stringify(spec.absent) ? undefined : value);
  }
  if (problems.length) throw new ConfigOverrideError(problems);
  out['augment'] = augmentConfig(out['augment'] as AugmentConfig);
  return out as unknown as TrainConfig<B>;
}

/** Why `key` cannot be set by an override of a config whose backbone is of `kind`, or undefined. */
function settableProblem(key: string, kind: BackboneKind = 'vit'): string | undefined {
  const spec = specOf(key, kind);
  if (!spec) return `unknown config key "${key}"${kind !== 'vit' && key.startsWith('backbone.') ? ` for a ${kind} backbone (its keys: ${Object.keys(BACKBONE_SCHEMAS[kind]).join(', ')})` : ''}`;
  if (spec.setBy) return `"${key}" has its own option (${spec.setBy}), not an override`;
  return undefined;
}

/**
 * Applies `key=value` overrides (dotted paths, e.g. `lr=0.002`, `head.outDim=1024`,
 * `augment.blurSigma=[0.0125,0.25]`): a string key takes the text as it is (or a JSON string), any other key a JSON
 * value. An unknown key or a value of the wrong type is an error naming the key; every problem is reported at once.
 */
export function applyOverrides<B extends BackboneConfig = ViTConfig>(cfg: TrainConfig<B>, sets: readonly string[]): TrainConfig<B> {
  const problems: string[] = [];
  const kind = kindOf(cfg);
  const values: [string, unknown][] = [];
  for (const set of sets) {
    const eq = set.indexOf('=');
    if (eq < 1) { problems.push(`"${set}" is not key=value`); continue; }
    const key = set.slice(0, eq), raw = set.slice(eq + 1);
    const notSettable = settableProblem(key, kind);
    if (notSettable) { problems.push(notSettable); continue; }
    const spec = specOf(key, kind)!;
    let value: unknown;
    try { value = spec.type === 'string' && !raw.startsWith('"') ? raw : JSON.parse(raw); }
    catch { problems.push(`"${key}": cannot parse "${raw}" as ${typeName(spec)}`); continue; }
    const problem = valueProblem(key, spec, value, ` (${raw})`);
    if (problem) { problems.push(problem); continue; }
    values.push([key, value]);
  }
  if (problems.length) throw new ConfigOverrideError(problems);
  return withValues(cfg, values);
}

/** Every override that could not be applied, one line each (the CLI words it as `--set`). */
export class ConfigOverrideError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid config overrides:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigOverrideError';
  }
}

/**
 * A TrainConfig read from a file (a run's config.json, a checkpoint's metadata), checked against the schema before
 * anything builds on it: every key that is not optional, each of its type (or choices); the optional keys only with
 * theirs; no other key; then the augmentation's own checks. The backbone is checked by the rows of its `kind`
 * ({@link BACKBONE_SCHEMAS}: a ViT, a ResNet, or a registered backbone with its JSON `options`); a config without a
 * known kind is checked as a ViT's. Throws a {@link ConfigFileError} naming `source` and every problem.
 */
export function checkTrainConfig(value: unknown, source: string): TrainConfig<BackboneConfig> {
  const problems: string[] = [];
  const isObject = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);
  /** The keys of `obj` (at `prefix`) that are neither a key of the schema nor a group of keys. */
  const kind = kindOf(value) ?? 'vit';
  const unknownKeys = (obj: Record<string, unknown>, prefix: string) => {
    for (const key of Object.keys(obj)) {
      const path = prefix + key;
      if (!specOf(path, kind) && !SCHEMA_GROUPS.includes(path)) problems.push(`unknown key "${path}"${kind !== 'vit' && prefix === 'backbone.' ? ` for a ${kind} backbone` : ''}`);
    }
  };
  if (!isObject(value)) problems.push(`the config must be an object, got ${typeOf(value)}`);
  else {
    unknownKeys(value, '');
    for (const group of SCHEMA_GROUPS) {
      if (!(group in value)) problems.push(`"${group}" is missing`);
      else if (!isObject(value[group])) problems.push(`"${group}" must be an object, got ${typeOf(value[group])}`);
      else unknownKeys(value[group], `${group}.`);
    }
    for (const key of keysOf(kind)) {
      const dot = key.indexOf('.');
      const parent = dot < 0 ? value : value[key.slice(0, dot)];
      if (!isObject(parent)) continue; // its group is reported above
      const leaf = key.slice(dot + 1);
      const spec = specOf(key, kind)!;
      if (!(leaf in parent)) {
        if (!isOptional(spec)) problems.push(`"${key}" is missing`);
        continue;
      }
      const problem = valueProblem(key, spec, parent[leaf], '');
      if (problem) problems.push(problem);
    }
  }
  if (!problems.length) {
    try { augmentConfig((value as TrainConfig).augment); } catch (e) { problems.push(`augment: ${(e as Error).message}`); }
  }
  if (problems.length) throw new ConfigFileError(source, problems);
  return value as TrainConfig<BackboneConfig>;
}

/** A config file that is not a TrainConfig: names the file and every problem. */
export class ConfigFileError extends Error {
  constructor(readonly source: string, readonly problems: readonly string[]) {
    super(`${source} is not a valid training config:\n  ${problems.join('\n  ')}\nfix it by hand (config.json: the checkpoint holds the config it was trained with), or start a new run`);
    this.name = 'ConfigFileError';
  }
}

/** Config keys a resumed run may change: its length (the schedules are then recomputed over the new length). */
export const RESUMABLE_KEYS: readonly ConfigKey[] = SCHEMA_KEYS.filter((k) => CONFIG_SCHEMA[k].resumable);

/** Whether a resumed run may change the config key `key` (a dotted path). */
export function resumableKey(key: string): boolean {
  return specOf(key)?.resumable === true; // no backbone key is resumable, of any kind
}

/** The schema's keys that main_dino.py has a flag for, with the flag (dashes) and the key's row. */
export function dinoFlagKeys(): { readonly flag: string; readonly key: ConfigKey; readonly spec: KeySpec }[] {
  return SCHEMA_KEYS.flatMap((key) => {
    const spec = CONFIG_SCHEMA[key];
    return spec.dinoFlag ? [{ flag: spec.dinoFlag, key, spec }] : [];
  });
}

/** The graph-level part of a training config. */
export function stepConfig(cfg: TrainConfig<BackboneConfig>): DinoStepConfig {
  return {
    backbone: cfg.backbone, head: cfg.head, batch: cfg.batch,
    globalSize: cfg.augment.globalSize, localSize: cfg.augment.localSize, localCrops: cfg.augment.localCrops,
    studentTemp: cfg.studentTemp, centerMomentum: cfg.centerMomentum, clipGrad: cfg.clipGrad,
    ...(cfg.precision !== undefined && cfg.precision !== 'fp32' ? { precision: cfg.precision } : {}),
    ...(cfg.koleoWeight ? { koleoWeight: cfg.koleoWeight } : {}),
    ...(cfg.centering !== undefined && cfg.centering !== 'center' ? { centering: cfg.centering } : {}),
  };
}

/** `cfg` training in `precision`; fp32 leaves the key out, as configs from before the option have it. */
export function withPrecision<B extends BackboneConfig = ViTConfig>(cfg: TrainConfig<B>, precision: TrainPrecision): TrainConfig<B> {
  const { precision: _, ...rest } = cfg;
  return precision === 'fp32' ? rest : { ...rest, precision };
}

/** A config key whose value differs between two configs (a checkpoint's and the one it is resumed with). */
export interface ConfigChange {
  readonly key: string;
  readonly was: unknown;
  readonly now: unknown;
}

export const formatConfigChange = (c: ConfigChange): string => `${c.key}: ${JSON.stringify(c.was) ?? 'absent'} -> ${JSON.stringify(c.now) ?? 'absent'}`;

/**
 * The dotted keys whose values differ between two configs (`backbone.depth`, `augment.localCrops`, ...), each with
 * both values, in key order. A key absent from one side differs from any value on the other.
 */
export function configDifferences(a: TrainConfig<BackboneConfig>, b: TrainConfig<BackboneConfig>): ConfigChange[] {
  const out: ConfigChange[] = [];
  const walk = (x: unknown, y: unknown, key: string) => {
    const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
    if (isObj(x) && isObj(y)) {
      for (const k of [...new Set([...Object.keys(x), ...Object.keys(y)])].sort()) walk(x[k], y[k], key ? `${key}.${k}` : k);
    } else if (JSON.stringify(x) !== JSON.stringify(y)) out.push({ key, was: x, now: y });
  };
  walk(a, b, '');
  return out;
}
