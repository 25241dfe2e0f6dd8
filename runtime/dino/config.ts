/**
 * The typed DINO training configuration and its presets. Every field carries DINO's advice; defaults
 * are facebookresearch/dino's main_dino.py defaults unless the preset says otherwise.
 */
import type { DinoHeadConfig } from '../../models/head.ts';
import { type BackboneConfig, getPreset as getModelPreset } from '../../models/presets.ts';
import type { ViTConfig } from '../../models/vit.ts';
import type { DinoStepConfig } from '../../models/dino-step.ts';
import { CENTERINGS, type Centering } from '../../models/dino-loss.ts';
import { PRECISIONS, type TrainPrecision } from '../../dsl/autocast.ts';
import { type AugmentConfig, augmentConfig } from '../data/multicrop.ts';
import { FASHION_MNIST_MEAN, FASHION_MNIST_STD } from '../data/fashion-mnist.ts';
import { dinoVitPresets } from './vit-presets.ts';

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

type OptionalKey = 'koleoWeight' | 'centering';
/**
 * Optional keys (dotted paths) with the value their absence means. They are written only when set to another value,
 * so configs from before a key existed resume unchanged; `--set key=value` may add them.
 */
const OPTIONAL_KEYS: Readonly<Record<string, unknown>> = {
  koleoWeight: 0, centering: 'center', 'backbone.convStem': [],
} satisfies { readonly [K in OptionalKey]-?: NonNullable<TrainConfig[K]> } & { 'backbone.convStem': NonNullable<ViTConfig['convStem']> };
/** String-valued keys (dotted paths) that take one of a few values: an override naming another is refused. */
const KEY_CHOICES: Readonly<Record<string, readonly string[]>> = { centering: CENTERINGS };

function vitPreset(name: string): { backbone: ViTConfig; head: DinoHeadConfig } {
  const p = getModelPreset(name);
  if (p.backbone.kind !== 'vit') throw new Error(`preset ${name} is not a ViT`);
  return { backbone: p.backbone, head: p.head };
}
const FMNIST_MODEL = vitPreset('fmnist-tiny6');
const FMNIST_AUGMENT = augmentConfig({
  globalSize: 28, localSize: 12, localCrops: 6, mean: [FASHION_MNIST_MEAN], std: [FASHION_MNIST_STD],
});

/** `fmnist-tiny6`: DINO's defaults exactly (docs/ARCHITECTURE.md, "DINO reference"). */
const FMNIST_TINY6: TrainConfig = {
  preset: 'fmnist-tiny6',
  backbone: FMNIST_MODEL.backbone,
  head: FMNIST_MODEL.head,
  augment: FMNIST_AUGMENT,
  batch: 64, steps: 600, seed: 0,
  lr: 0.0005, minLr: 1e-6, warmupFraction: 0.1,
  weightDecay: 0.04, weightDecayEnd: 0.4,
  momentumTeacher: 0.996, warmupTeacherTemp: 0.04, teacherTemp: 0.04, warmupTeacherTempSteps: 0,
  studentTemp: 0.1, centerMomentum: 0.9, clipGrad: 3.0,
  freezeLastLayerSteps: Math.ceil(60000 / 64),
};

/**
 * `fmnist-quick`: the `npm start` default, chosen for the most k-NN accuracy per CPU-minute on a 2-core CPU
 * (≤ 10 minutes of training). Selected on a validation split carved from the train images, never on the test
 * split; search and numbers in docs/learning-per-cpu-minute.md. Departures from DINO's defaults (`fmnist-tiny6`):
 * - **Patch 7** (a 4 x 4 grid + [CLS], 17 tokens instead of 50) and **local crops of 14 px** (2 x 2 patches; DINO's
 *   locals are a whole number of patches too): the step costs 0.3-0.4x fmnist-tiny6's at batch 32, so the same
 *   minutes buy ~2.5-3x the updates, and the patch-7 ViT's random-init features are already a far better k-NN
 *   space at 28 px (DINO's advice "smaller patches are better" holds for long runs, not for a 10-minute one).
 * - **Head 192 -> 512 -> 512 -> 128 -> K = 1024** instead of 2048/2048/256/4096: the 2048-wide head held
 *   ~2.3x the backbone's parameters (optimizer and EMA traffic, and most of the step at patch 7); K = 1024 still
 *   exceeds the images' evident modes by far.
 * - A 4x base learning rate (0.002: peak 2.5e-4 at batch 32), a faster teacher (momentum 0.99, cosine to 1) that is
 *   sharper (temperature 0.02, no warm-up), and the last layer trained from the second step: a run this short
 *   has no epoch to spend warming up or frozen (docs/fmnist-quick.md).
 * - Batch 32 for more updates per CPU-minute; blur sigmas scaled by 28/224 (DINO's are meant for 224 px crops).
 * - **KoLeo** (DINOv2's regulariser, models/koleo.ts) at weight 0.3 on the student's [CLS] features of each global
 *   crop: it spreads the features over the sphere, which is what k-NN reads. It is the largest single gain found.
 * - A **convolutional stem** (`ViTConfig.convStem`, Xiao et al. 2021): two 3x3 conv + GELU layers of 16 channels
 *   before the patch-7 embedding. It costs 1.17x the step (tools/step-ratio.ts), so the preset's training time buys
 *   957 steps: 1,119 steps without the stem (450 steps of the first preset, patch 4 with the large head, ~10 min on a
 *   quiet 2-core CPU, times their measured step-time ratio 1 / 0.402) divided by 1.17.
 *
 * Val k-NN (5,000 val vs 55,000 train images, equal training time): 80.96% / 81.76% at seeds 0 / 1 with the stem
 * after 957 steps, against 79.40% / 79.48% without it after 1,119 (KoLeo 0.1: 78.7%, 1.0: 78.9%; without KoLeo
 * 73.6%, seed 1 73.3%); 71.9% at random init; the first preset's architecture starts at 60.2%. Test split, once per
 * seed, 3 seeds: k-NN 81.29% ± 0.77, linear probe 81.39% ± 0.87 (without the stem 80.14% ± 0.34 / 79.73% ± 0.47;
 * raw pixels 85.92% / 83.55%).
 */
const FMNIST_QUICK: TrainConfig = {
  ...FMNIST_TINY6,
  preset: 'fmnist-quick',
  backbone: { ...FMNIST_MODEL.backbone, patchSize: 7, convStem: [16, 16] },
  head: { ...FMNIST_MODEL.head, hiddenDim: 512, bottleneckDim: 128, outDim: 1024 },
  augment: augmentConfig({ ...FMNIST_AUGMENT, localSize: 14, blurSigma: [0.1 * 28 / 224, 2.0 * 28 / 224] }),
  batch: 32,
  steps: 957,
  lr: 0.002,
  momentumTeacher: 0.99,
  warmupTeacherTemp: 0.02,
  teacherTemp: 0.02,
  freezeLastLayerSteps: 1,
  koleoWeight: 0.3,
};

/**
 * `fmnist-long`: fmnist-quick's settings (chosen on val) for a budget of up to an hour of training on a quiet 2-core
 * CPU: 6,800 steps, every schedule stretched over them (8,000 steps without the stem took 54.4 min; 6,800 x 1.17 of
 * them: 54 min on that VM; timed on a slower one: 62.7 min, ~57 quiet). On val the stem stayed ahead at twice
 * fmnist-quick's budget (82.36% against 81.80%), and val k-NN grows with the budget (+2.4 points from 1x to 2x
 * without the stem; docs/learning-per-cpu-minute.md). Test split, once per seed, 3 seeds: k-NN 86.25% ± 0.37,
 * linear probe 84.58% ± 0.22 (raw pixels 85.92% / 83.55%).
 */
const FMNIST_LONG: TrainConfig = { ...FMNIST_QUICK, preset: 'fmnist-long', steps: 6800 };

export const PRESETS: Readonly<Record<string, TrainConfig>> = {
  'fmnist-quick': FMNIST_QUICK,
  'fmnist-long': FMNIST_LONG,
  'fmnist-tiny6': FMNIST_TINY6,
  'fmnist-tiny12': { ...FMNIST_TINY6, preset: 'fmnist-tiny12', backbone: vitPreset('fmnist-tiny12').backbone },
  // DINO's RGB setups: vit_tiny|vit_small|vit_base (patch 16) and <arch>_p8.
  ...dinoVitPresets(),
};

export function presetNames(): string[] {
  return Object.keys(PRESETS);
}

/** The presets made for Fashion-MNIST's 1-channel 28 px images (`fmnist-quick` first, the default). */
export function fashionMnistPresetNames(): string[] {
  return presetNames().filter((name) => PRESETS[name]!.backbone.inChans === 1 && PRESETS[name]!.augment.globalSize === 28);
}

export function getPreset(name: string): TrainConfig {
  const p = PRESETS[name];
  if (!p) throw new Error(`unknown preset "${name}"; available: ${presetNames().join(', ')}`);
  return p;
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
export function withPrecision(cfg: TrainConfig, precision: TrainPrecision): TrainConfig {
  const { precision: _, ...rest } = cfg;
  return precision === 'fp32' ? rest : { ...rest, precision };
}

/**
 * Applies `key=value` overrides (dotted paths, e.g. `lr=0.002`, `head.outDim=1024`,
 * `augment.blurSigma=[0.0125,0.25]`). An unknown key or a value of the wrong type is an error naming the key;
 * every problem is reported at once.
 */
export function applyOverrides(cfg: TrainConfig, sets: readonly string[]): TrainConfig {
  const out: any = structuredClone(cfg);
  const problems: string[] = [];
  for (const set of sets) {
    const eq = set.indexOf('=');
    if (eq < 1) { problems.push(`"${set}" is not key=value`); continue; }
    const key = set.slice(0, eq), raw = set.slice(eq + 1);
    const path = key.split('.');
    let obj = out;
    for (const part of path.slice(0, -1)) obj = obj && typeof obj === 'object' ? obj[part] : undefined;
    const leaf = path[path.length - 1]!;
    const optional = Object.hasOwn(OPTIONAL_KEYS, key) ? OPTIONAL_KEYS[key] : undefined;
    if (!obj || typeof obj !== 'object' || !(leaf in obj || optional !== undefined)) { problems.push(`unknown config key "${key}"`); continue; }
    const current = leaf in obj ? obj[leaf] : optional;
    let value: unknown;
    try { value = typeof current === 'string' ? (raw.startsWith('"') ? JSON.parse(raw) : raw) : JSON.parse(raw); }
    catch { problems.push(`"${key}": cannot parse "${raw}" as ${typeOf(current)}`); continue; }
    if (!sameType(value, current)) { problems.push(`"${key}" must be ${typeOf(current)}, got ${typeOf(value)} (${raw})`); continue; }
    const choices = Object.hasOwn(KEY_CHOICES, key) ? KEY_CHOICES[key] : undefined;
    if (choices && !choices.includes(value as string)) { problems.push(`"${key}" must be one of ${choices.join(', ')}, got "${String(value)}"`); continue; }
    if (optional !== undefined && JSON.stringify(value) === JSON.stringify(optional)) delete obj[leaf];
    else obj[leaf] = value;
  }
  if (problems.length) throw new ConfigOverrideError(problems);
  out.augment = augmentConfig(out.augment);
  return out as TrainConfig;
}

/** Every `key=value` override that could not be applied, one line each (the CLI words it as `--set`). */
export class ConfigOverrideError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid config overrides:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigOverrideError';
  }
}

function typeOf(v: unknown): string {
  if (Array.isArray(v)) return `array of ${v.length ? typeOf(v[0]) : 'any'}`;
  return typeof v;
}

/** Keys a config file may hold beyond those of every preset, with a value of the type each takes. */
const FILE_ONLY_KEYS: Readonly<Record<string, unknown>> = { epochs: 0, epochSteps: 0, holdout: 0, precision: 'fp32' };
/** `data`, the run's data record (a path, or an object from older runs), has its own parser that names what is wrong. */
const UNCHECKED_KEYS: readonly string[] = ['data'];
const FILE_KEY_CHOICES: Readonly<Record<string, readonly string[]>> = { ...KEY_CHOICES, precision: PRECISIONS };

/**
 * A TrainConfig read from a file (a run's config.json, a checkpoint's metadata), checked before anything builds on
 * it: every key every preset has, with the preset's type; the optional keys (`koleoWeight`, `centering`,
 * `backbone.convStem`, `data`, `epochs`, `precision`) only with their own type or choices; no other key; then the
 * augmentation's own checks. Throws a {@link ConfigFileError} naming `source` and every problem.
 */
export function checkTrainConfig(value: unknown, source: string): TrainConfig {
  const problems: string[] = [];
  const reference = FMNIST_TINY6 as unknown as Record<string, unknown>;
  const walk = (v: unknown, ref: Record<string, unknown>, prefix: string) => {
    if (!v || typeof v !== 'object' || Array.isArray(v)) { problems.push(`${prefix || 'the config'} must be an object, got ${typeOf(v)}`); return; }
    const obj = v as Record<string, unknown>;
    for (const [key, expected] of Object.entries(ref)) {
      const path = prefix + key;
      if (!(key in obj)) problems.push(`"${path}" is missing`);
      else if (expected && typeof expected === 'object' && !Array.isArray(expected)) walk(obj[key], expected as Record<string, unknown>, `${path}.`);
      else if (!sameType(obj[key], expected)) problems.push(`"${path}" must be ${typeOf(expected)}, got ${typeOf(obj[key])}`);
    }
    for (const key of Object.keys(obj).filter((k) => !(k in ref))) {
      const path = prefix + key;
      if (UNCHECKED_KEYS.includes(path)) continue;
      const example = Object.hasOwn(OPTIONAL_KEYS, path) ? OPTIONAL_KEYS[path] : Object.hasOwn(FILE_ONLY_KEYS, path) ? FILE_ONLY_KEYS[path] : undefined;
      if (example === undefined) { problems.push(`unknown key "${path}"`); continue; }
      const choices = FILE_KEY_CHOICES[path];
      if (!sameType(obj[key], example) || (Array.isArray(example) && (obj[key] as unknown[]).some((e) => typeof e !== 'number'))) {
        problems.push(`"${path}" must be ${Array.isArray(example) ? 'array of number' : typeOf(example)}, got ${typeOf(obj[key])}`);
      } else if (choices && !choices.includes(obj[key] as string)) {
        problems.push(`"${path}" must be one of ${choices.join(', ')}, got ${JSON.stringify(obj[key])}`);
      }
    }
  };
  walk(value, reference, '');
  if (!problems.length) {
    try { augmentConfig((value as TrainConfig).augment); } catch (e) { problems.push(`augment: ${(e as Error).message}`); }
  }
  if (problems.length) throw new ConfigFileError(source, problems);
  return value as TrainConfig;
}

/** A config file that is not a TrainConfig: names the file and every problem. */
export class ConfigFileError extends Error {
  constructor(readonly source: string, readonly problems: readonly string[]) {
    super(`${source} is not a valid training config:\n  ${problems.join('\n  ')}\nfix it by hand (config.json: the checkpoint holds the config it was trained with), or start a new run`);
    this.name = 'ConfigFileError';
  }
}

/** An empty array (an optional list's absence) takes an array of any element type. */
function sameType(value: unknown, current: unknown): boolean {
  if (Array.isArray(value) && Array.isArray(current) && (value.length === 0 || current.length === 0)) return true;
  return typeOf(value) === typeOf(current);
}

/**
 * Config keys a resumed run may change: its length (the schedules are then recomputed over the new length).
 * `warmupFraction` belongs to it: a length given in epochs keeps DINO's 10 warm-up epochs as the run grows.
 */
export const RESUMABLE_KEYS: readonly string[] = ['steps', 'epochs', 'warmupFraction'];

/**
 * The dotted keys whose values differ between two configs (`backbone.depth`, `augment.localCrops`, ...), each with
 * both values, in key order. A key absent from one side differs from any value on the other.
 */
export function configDifferences(a: TrainConfig<BackboneConfig>, b: TrainConfig<BackboneConfig>): { key: string; was: unknown; now: unknown }[] {
  const out: { key: string; was: unknown; now: unknown }[] = [];
  const walk = (x: unknown, y: unknown, key: string) => {
    const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
    if (isObj(x) && isObj(y)) {
      for (const k of [...new Set([...Object.keys(x), ...Object.keys(y)])].sort()) walk(x[k], y[k], key ? `${key}.${k}` : k);
    } else if (JSON.stringify(x) !== JSON.stringify(y)) out.push({ key, was: x, now: y });
  };
  walk(a, b, '');
  return out;
}
