/**
 * `dino train`: flags -> a resolved TrainConfig (and initial weights) -> the training loop; and `--resume`, which
 * takes the config from the run folder and accepts only the flags a resumed run may change.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { type TrainConfig, RESUMABLE_KEYS, applyOverrides, configDifferences, getPreset, presetNames, withPrecision } from '../runtime/dino/config.ts';
import { PRECISIONS } from '../dsl/autocast.ts';
import { formatConfigChange as formatChange, loadTrainingData, train } from '../runtime/dino/train.ts';
import { checkDataFits } from '../runtime/dino/data-fit.ts';
import { DINO_ARCHS, dinoVitConfig, withEpochSteps, withEpochs } from '../runtime/dino/vit-presets.ts';
import { readCheckpointMeta } from '../runtime/dino/checkpoint.ts';
import { readDinoWeights } from '../runtime/io/weights.ts';
import { defaultStepsPerRun } from '../runtime/ep/steps-per-run.ts';
import { RECOMPUTE_MODES } from '../models/vit.ts';
import { EXECUTION_PROVIDERS } from '../runtime/ep/ort-select.ts';
import type { Dataset } from '../runtime/data/dataset.ts';
import type { FolderIndex } from '../runtime/data/folder-index.ts';
import { type Parsed, UsageError, defineCommand, parseCommand } from './args.ts';

const log = (m: string) => process.stderr.write(m + '\n');

/** main_dino.py's hyper-parameter flags (defaults are the preset's: DINO's own for --arch). */
const DINO_FLAGS = {
  lr: { kind: 'number', min: 0, help: 'peak learning rate for a batch of 256 (scaled by batch / 256), after warm-up' },
  'min-lr': { kind: 'number', min: 0, help: 'final learning rate of the cosine' },
  'warmup-epochs': { kind: 'int', min: 0, help: 'epochs of linear lr warm-up (with --epochs)' },
  'weight-decay': { kind: 'number', min: 0, help: 'weight decay at the start (cosine schedule)' },
  'weight-decay-end': { kind: 'number', min: 0, help: 'weight decay at the end' },
  'momentum-teacher': { kind: 'number', min: 0, max: 1, help: 'teacher EMA momentum at the start, cosine to 1 (DINO: 0.996; higher for small batches)' },
  'teacher-temp': { kind: 'number', min: 0, exclusiveMin: true, help: 'final teacher temperature (DINO: 0.04; above 0.07 is unstable)' },
  'warmup-teacher-temp': { kind: 'number', min: 0, exclusiveMin: true, help: 'teacher temperature at the start of its warm-up' },
  'warmup-teacher-temp-epochs': { kind: 'int', min: 0, help: 'epochs of teacher-temperature warm-up (with --epochs)' },
  'freeze-last-layer': { kind: 'int', min: 0, help: 'epochs during which the head\'s last layer is not updated (with --epochs, or --arch and --steps on a folder: epochs of that folder)' },
  'clip-grad': { kind: 'number', min: 0, help: 'per-parameter gradient-norm clipping (0: off)' },
  'drop-path-rate': { kind: 'number', min: 0, max: 1, help: 'stochastic depth rate' },
  'out-dim': { kind: 'int', min: 1, help: 'K, the head\'s output dimension' },
  'norm-last-layer': { kind: 'choice', choices: ['true', 'false'], help: 'weight-normalised last layer with weight_g fixed to 1' },
  'batch-size-per-gpu': { kind: 'int', min: 1, help: 'the same as --batch (one device)' },
  'output-dir': { kind: 'string', placeholder: 'DIR', help: 'the same as --out' },
  'data-path': { kind: 'string', placeholder: 'FOLDER', help: 'the same as --data' },
} as const;

export const trainCommand = defineCommand(
  {
    name: 'train',
    summary: 'Train DINO: a student on all crops, an EMA teacher on the global crops, in one compiled ONNX step graph.',
    options: {
      preset: { kind: 'choice', choices: presetNames(), help: 'model, crops and hyper-parameters (default: fmnist-quick)' },
      arch: { kind: 'choice', choices: DINO_ARCHS, help: 'a DINO ViT with main_dino.py\'s defaults, for RGB image folders (instead of --preset)' },
      'patch-size': { kind: 'int', min: 1, help: 'ViT patch size with --arch (default 16; DINO also publishes 8)' },
      'image-size': { kind: 'int', min: 1, help: 'global crop side and model input (--arch default 224; local crops keep 96/224 of it)' },
      steps: { kind: 'int', min: 1, help: 'length of the run in steps; every schedule spans it' },
      epochs: { kind: 'int', min: 1, help: 'length in passes over the data (steps = N x floor(images / batch)); DINO\'s warm-ups are converted to steps. --arch defaults to 100' },
      batch: { kind: 'int', min: 1, help: 'images per step (lr scales with batch / 256)' },
      seed: { kind: 'int', min: 0, help: 'the run\'s seed (init, shuffling, augmentation, stochastic depth)' },
      out: { kind: 'string', placeholder: 'DIR', help: 'run folder (config.json, metrics.jsonl, checkpoint.safetensors); default runs/<preset>-<seed>' },
      resume: { kind: 'string', placeholder: '[DIR]', optionalValue: true, help: 'continue the run in DIR (or in --out) from its checkpoint, with its own config' },
      data: { kind: 'string', placeholder: 'FOLDER', help: 'train on an image folder (class subfolders give labels for evaluation); default: Fashion-MNIST' },
      'skip-bad-images': { kind: 'flag', help: 'skip unreadable images instead of stopping (they are named and counted in the log; the same files on resume)' },
      'num-workers': { kind: 'int', min: 0, placeholder: 'N', help: 'loader threads that decode and crop images (DINO\'s --num_workers; same crops for any N). Default: cores - 1 for an image folder, 1 for Fashion-MNIST' },
      holdout: { kind: 'number', min: 0, max: 1, placeholder: 'F', help: 'hold out this fraction of each class of a plain --data folder for knn/linear (not trained on). Default: train on every image' },
      ep: { kind: 'choice', choices: EXECUTION_PROVIDERS, default: 'cpu', help: 'ONNX Runtime execution provider' },
      threads: { kind: 'int', min: 0, default: 0, help: 'intra-op threads (0: one per core)' },
      precision: { kind: 'choice', choices: PRECISIONS, help: 'fp16: mixed precision as DINO\'s --use_fp16 (float16 matrix products, dynamic loss scaling); bf16: bfloat16 matrix products, no loss scaling. Both for GPUs (bf16 on a CPU is emulated, slower). Default fp32' },
      'use-fp16': { kind: 'choice', choices: ['true', 'false'], help: 'DINO\'s name: true is --precision fp16' },
      recompute: { kind: 'choice', choices: RECOMPUTE_MODES, default: 'mlp', help: 'activations the backward pass recomputes instead of keeping (same results): mlp ~2% more CPU, blocks least memory ~17% more' },
      'steps-per-run': { kind: 'int', min: 1, placeholder: 'K', help: 'K steps per ONNX Runtime call through an ONNX Loop (same results; the state crosses host <-> device once per K steps). Default 1; with --ep cuda the largest K <= 8 dividing --checkpoint-every' },
      'checkpoint-every': { kind: 'int', min: 1, placeholder: 'K', help: 'also save every K steps (the latest is always DIR/checkpoint.safetensors)' },
      init: { kind: 'string', placeholder: 'FILE', help: 'start student and teacher from weights (.safetensors, .pth, .bin; DINO, timm or Hugging Face names)' },
      augment: { kind: 'choice', choices: ['dino', 'none'], help: 'none: global crops = whole image, local crops = whole image resized' },
      'local-crops-number': { kind: 'int', min: 0, placeholder: 'N', help: 'local crops per image (DINO\'s name; --local-crops is the same)' },
      'local-crops': { kind: 'int', min: 0, help: 'local crops per image' },
      set: { kind: 'repeated', placeholder: 'KEY=VALUE', help: 'override any config field, e.g. --set lr=0.002 --set head.outDim=1024 (repeatable)' },
      // main_dino.py's hyper-parameters under its own names (written with dashes; its underscores work too).
      ...DINO_FLAGS,
    },
    epilog: `Resuming: \`dino train --resume DIR\` reads DIR/config.json and DIR/checkpoint.safetensors and continues; a run
stopped with Ctrl-C and resumed equals the run not stopped, bit for bit on CPU with the same --threads (the default,
one per core, is the same on the same machine). On resume only --steps or --epochs (to
lengthen the run: the schedules are then recomputed over the new length, as DINO's --epochs), --ep, --threads,
--recompute, --steps-per-run, --checkpoint-every and --skip-bad-images may be given; a flag that would change
anything else is refused, naming the config key.`,
  },
  async (p) => {
    const resumeDir = p.given.has('resume') ? resumeFolder(p) : undefined;
    const ep = p.options.ep;
    const { config, dataset } = resumeDir ? await resumedConfig(p, resumeDir) : await newRunConfig(p);
    const out = resumeDir ?? alias(p.options.out, p.options['output-dir'], 'out', 'output-dir') ?? join('runs', `${config.preset}-${config.seed}`);
    const initWeights = p.options.init !== undefined ? readInitWeights(p.options.init) : undefined;
    const stepsPerRun = p.options['steps-per-run'] ?? (ep === 'cuda' ? defaultStepsPerRun(ep, [p.options['checkpoint-every']]) : undefined);
    const r = await train({
      config, out, ep,
      ...(resumeDir ? { resume: true } : {}),
      ...(dataset ? { dataset } : {}),
      ...(p.options['skip-bad-images'] ? { skipBadImages: true } : {}),
      ...(p.options['num-workers'] !== undefined ? { numWorkers: p.options['num-workers'] } : {}),
      threads: p.options.threads,
      recompute: p.options.recompute,
      ...(stepsPerRun !== undefined ? { stepsPerRun } : {}),
      ...(p.options['checkpoint-every'] !== undefined ? { checkpointEvery: p.options['checkpoint-every'] } : {}),
      ...(initWeights ? { initWeights } : {}),
    });
    console.log(`${r.interrupted ? 'interrupted' : 'done'} after ${r.steps} steps; checkpoint ${r.checkpoint}; metrics ${join(out, 'metrics.jsonl')}`);
    if (r.interrupted) {
      console.log(`resume with: npx dino train --resume ${out}`);
      process.exitCode = 130; // stopped by the user (the checkpoint is saved): not a finished run
    }
  },
);

type TrainParsed = Parsed<typeof trainCommand.spec.options>;

/** The config key each of main_dino.py's numeric flags sets (DINO's advice is in TrainConfig's TSDoc). */
const DINO_KEYS = {
  lr: 'lr', 'min-lr': 'minLr', 'weight-decay': 'weightDecay', 'weight-decay-end': 'weightDecayEnd',
  'momentum-teacher': 'momentumTeacher', 'teacher-temp': 'teacherTemp', 'warmup-teacher-temp': 'warmupTeacherTemp',
  'clip-grad': 'clipGrad', 'drop-path-rate': 'backbone.dropPathRate', 'out-dim': 'head.outDim',
} as const;

/** Flags that may accompany --resume: they change how the run is executed or how long it is, not what it is. */
const RESUMABLE_FLAGS = new Set(['resume', 'out', 'output-dir', 'steps', 'epochs', 'ep', 'threads', 'recompute', 'steps-per-run', 'checkpoint-every', 'skip-bad-images', 'num-workers']);

function resumeFolder(p: TrainParsed): string {
  const dir = p.options.resume || p.options.out || p.options['output-dir'];
  if (!dir) throw new UsageError('--resume needs the run folder: dino train --resume DIR', 'train');
  if (p.options.resume && p.options.out !== undefined && resolve(p.options.out) !== resolve(p.options.resume)) {
    throw new UsageError(`--resume ${p.options.resume} and --out ${p.options.out} name different folders: give one`, 'train');
  }
  if (p.options.init !== undefined) throw new UsageError('--init starts a new run from weights; a resumed run continues from its checkpoint', 'train');
  return dir;
}

/** The config as the flags give it, on top of `base` (a preset, or a resumed run's own config). */
function configFromFlags(p: TrainParsed, base: TrainConfig): TrainConfig {
  const o = p.options;
  let cfg = base;
  if (o.arch !== undefined) {
    if (o.preset !== undefined) throw new UsageError(`--arch ${o.arch} and --preset ${o.preset} both choose the model: give one`, 'train');
    const imageSize = o['image-size'] ?? 224, patchSize = o['patch-size'] ?? 16;
    if (imageSize % patchSize !== 0) throw new UsageError(`--patch-size ${patchSize} must divide --image-size ${imageSize}`, 'train');
    cfg = dinoVitConfig(o.arch, { patchSize, imageSize });
    if (imageSize !== 224) cfg = { ...cfg, preset: `${cfg.preset}_${imageSize}px` };
  } else {
    if (o['patch-size'] !== undefined) throw new UsageError('--patch-size applies to --arch vit_tiny|vit_small|vit_base; for a preset use --set backbone.patchSize=N', 'train');
    if (o['image-size'] !== undefined) cfg = applyOverrides(cfg, [`backbone.imgSize=${o['image-size']}`, `augment.globalSize=${o['image-size']}`]);
  }
  if (o['local-crops'] !== undefined && o['local-crops-number'] !== undefined) throw new UsageError('--local-crops and --local-crops-number are the same option: give one', 'train');
  const sets: string[] = [];
  if (o.steps !== undefined) sets.push(`steps=${o.steps}`);
  const batch = alias(o.batch, o['batch-size-per-gpu'], 'batch', 'batch-size-per-gpu');
  if (batch !== undefined) sets.push(`batch=${batch}`);
  for (const [flag, key] of Object.entries(DINO_KEYS)) {
    const v = o[flag as keyof typeof DINO_KEYS];
    if (v !== undefined) sets.push(`${key}=${v}`);
  }
  if (o['norm-last-layer'] !== undefined) sets.push(`head.normLastLayer=${o['norm-last-layer']}`);
  if (o.seed !== undefined) sets.push(`seed=${o.seed}`);
  if (o.augment !== undefined) sets.push(`augment.augment="${o.augment}"`);
  const localCrops = o['local-crops-number'] ?? o['local-crops'];
  if (localCrops !== undefined) sets.push(`augment.localCrops=${localCrops}`);
  cfg = applyOverrides(cfg, [...sets, ...o.set]);
  const fp16 = o['use-fp16'] === undefined ? undefined : o['use-fp16'] === 'true' ? 'fp16' : 'fp32';
  const precision = alias(o.precision, fp16, 'precision', 'use-fp16');
  if (precision !== undefined) cfg = withPrecision(cfg, precision);
  const data = alias(o.data, o['data-path'], 'data', 'data-path');
  if (data !== undefined) cfg = { ...cfg, data: resolve(data) };
  if (o.holdout !== undefined) {
    if (cfg.data === undefined) throw new UsageError('--holdout holds out part of an image folder: give it with --data FOLDER (Fashion-MNIST has its own test split)', 'train');
    if (o.holdout > 0) cfg = { ...cfg, holdout: o.holdout };
  }
  return cfg;
}

/** The value of a flag given under either of its two names (refused when both are given). */
function alias<T>(a: T | undefined, b: T | undefined, nameA: string, nameB: string): T | undefined {
  if (a !== undefined && b !== undefined) throw new UsageError(`--${nameA} and --${nameB} are the same option: give one`, 'train');
  return a ?? b;
}

/** DINO's epoch-based schedule flags, for withEpochs; they need the length in epochs. */
function epochSchedule(p: TrainParsed, epochs: number | undefined): { warmupEpochs?: number; freezeLastLayerEpochs?: number; warmupTeacherTempEpochs?: number } {
  const o = p.options;
  const given = (['warmup-epochs', 'freeze-last-layer', 'warmup-teacher-temp-epochs'] as const).filter((f) => o[f] !== undefined);
  if (given.length && epochs === undefined) {
    throw new UsageError(`--${given[0]} counts epochs: give the length with --epochs N (with --steps, use --set warmupFraction=F, freezeLastLayerSteps=N or warmupTeacherTempSteps=N)`, 'train');
  }
  return {
    ...(o['warmup-epochs'] !== undefined ? { warmupEpochs: o['warmup-epochs'] } : {}),
    ...(o['freeze-last-layer'] !== undefined ? { freezeLastLayerEpochs: o['freeze-last-layer'] } : {}),
    ...(o['warmup-teacher-temp-epochs'] !== undefined ? { warmupTeacherTempEpochs: o['warmup-teacher-temp-epochs'] } : {}),
  };
}

/**
 * The run's length in epochs (`--epochs`, or the epochs an --arch preset carries when no --steps is given) needs
 * the data set's size: the data is then loaded here, once, and handed to the training loop.
 */
async function withLength(cfg: TrainConfig, p: TrainParsed, epochs: number | undefined): Promise<{ config: TrainConfig; dataset?: Dataset | FolderIndex }> {
  if (epochs === undefined) {
    // An --arch preset's schedules count epochs: with --steps on a folder, they are scaled to the folder's epoch.
    if (cfg.epochs !== undefined && p.options.steps !== undefined && cfg.data !== undefined && !p.given.has('resume')) return withDataEpoch(cfg, p);
    epochSchedule(p, undefined); // refuses epoch-based flags without a length in epochs
    return { config: cfg };
  }
  await checkDataFits(cfg, cfg.data);
  const dataset = await loadTrainingData(cfg, { skipBadImages: p.options['skip-bad-images'], log });
  const config = withEpochs(cfg, epochs, dataset.train.count, epochSchedule(p, epochs));
  log(`${epochs} epochs of ${dataset.train.count} images at batch ${config.batch}: ${config.steps} steps`);
  return { config, dataset };
}

/** A run given in steps whose epoch-based schedules are scaled to one epoch of its data (the --set overrides win). */
async function withDataEpoch(cfg: TrainConfig, p: TrainParsed): Promise<{ config: TrainConfig; dataset: Dataset | FolderIndex }> {
  await checkDataFits(cfg, cfg.data);
  const dataset = await loadTrainingData(cfg, { skipBadImages: p.options['skip-bad-images'], log });
  const config = applyOverrides(withEpochSteps(cfg, dataset.train.count, epochSchedule(p, 1)), p.options.set);
  log(`one epoch of ${dataset.train.count} images at batch ${config.batch} is ${config.epochSteps} steps: last layer frozen ${config.freezeLastLayerSteps} steps, lr warm-up ${Math.round(config.warmupFraction * config.steps)} of ${config.steps} steps`);
  return { config, dataset };
}

async function newRunConfig(p: TrainParsed): Promise<{ config: TrainConfig; dataset?: Dataset | FolderIndex }> {
  if (p.options.steps !== undefined && p.options.epochs !== undefined) throw new UsageError('--epochs and --steps both set the length of the run: give one', 'train');
  const base = getPreset(p.options.preset ?? 'fmnist-quick');
  const cfg = configFromFlags(p, base);
  const epochs = p.options.epochs ?? (p.options.steps === undefined && cfg.epochs !== undefined ? cfg.epochs : undefined);
  return withLength(cfg, p, epochs);
}

/**
 * A resumed run's config: the checkpoint's, with only a new length allowed. Every other flag that would change it
 * is refused before anything is compiled, naming the config key and both values.
 */
async function resumedConfig(p: TrainParsed, dir: string): Promise<{ config: TrainConfig; dataset?: Dataset | FolderIndex }> {
  const ckptPath = join(dir, 'checkpoint.safetensors');
  if (!existsSync(ckptPath)) {
    const hint = existsSync(join(dir, 'config.json')) ? 'the run stopped before its first checkpoint; start it again without --resume' : `is ${dir} a run folder written by dino train?`;
    throw new UsageError(`--resume ${dir}: no checkpoint.safetensors there (${hint})`, 'train');
  }
  const meta = readCheckpointMeta(ckptPath);
  const recorded = meta.config;
  const configJson = join(dir, 'config.json');
  if (existsSync(configJson)) {
    const onDisk = JSON.parse(readFileSync(configJson, 'utf8')) as TrainConfig;
    const drift = configDifferences(recorded, onDisk);
    if (drift.length) log(`note: ${configJson} differs from the checkpoint's config (${drift.map(formatChange).join('; ')}); the checkpoint's is used`);
  }
  const extra = [...p.given].filter((f) => !RESUMABLE_FLAGS.has(f));
  if (p.options.steps !== undefined && p.options.epochs !== undefined) throw new UsageError('--epochs and --steps both set the length of the run: give one', 'train');
  let cfg = recorded;
  if (extra.length) {
    // Flags given again with the run's own values are harmless; any real change is refused with its key.
    const wanted = configFromFlags(p, p.options.preset !== undefined || p.options.arch !== undefined ? getPreset(p.options.preset ?? p.options.arch!) : recorded);
    const changed = configDifferences(recorded, wanted).filter((d) => !RESUMABLE_KEYS.includes(d.key));
    if (changed.length) {
      throw new UsageError(
        `a resumed run keeps its config, but ${extra.map((f) => `--${f}`).join(', ')} would change ${changed.map(formatChange).join('; ')}. ` +
          `Resume without ${extra.length > 1 ? 'them' : 'it'}, or start a new run with another --out`,
        'train',
      );
    }
  }
  if (p.options.steps !== undefined) cfg = { ...cfg, steps: p.options.steps };
  const r = await withLength(cfg, p, p.options.epochs);
  if (r.config.steps <= meta.step && r.config.steps !== recorded.steps) {
    throw new UsageError(`--resume ${dir}: the run has done ${meta.step} steps already; a longer run needs --steps > ${meta.step} (got ${r.config.steps})`, 'train');
  }
  return r;
}

/** The config (and the data, when the length is given in epochs) that these `dino train` arguments give a new run. */
export async function newRunFromArgs(argv: readonly string[]): Promise<{ config: TrainConfig; dataset?: Dataset | FolderIndex }> {
  const p = parseCommand(trainCommand.spec, argv);
  if (p === 'help') throw new UsageError('--help is no run', 'train');
  return newRunConfig(p);
}

/**
 * Student/teacher start weights from a file (runtime/io/weights.ts reads it: the teacher of a checkpoint holding
 * both), named as the step graph names them without the `student.` prefix: `backbone.<key>` and `head.<key>`.
 */
export function readInitWeights(file: string): Map<string, Float32Array> {
  const { backbone, head } = readDinoWeights(file, 'teacher');
  const out = new Map<string, Float32Array>();
  for (const [prefix, tensors] of [['backbone.', backbone], ['head.', head]] as const) {
    for (const [k, t] of tensors) {
      if (t.dtype !== 'float32') throw new Error(`${file}: "${prefix}${k}" is ${t.dtype}; initial weights must be float32`);
      out.set(prefix + k, t.data as Float32Array);
    }
  }
  return out;
}
