/**
 * `dino train`: flags -> a resolved TrainConfig (and initial weights) -> the training loop; and `--resume`, which
 * takes the config from the run folder and accepts only the flags a resumed run may change.
 */
import { join, resolve } from 'node:path';
// A run's config here holds any backbone (a ViT preset, --arch resnet50, a resumed ResNet or registered backbone).
import { BACKBONE_SCHEMAS, CONFIG_SCHEMA, type ConfigKey, type KeySpec, type AnyTrainConfig as TrainConfig, applyOverrides, dinoFlagKeys, formatConfigChange as formatChange, withPrecision, withValues } from '../runtime/dino/config.ts';
import { getPreset, presetNames } from '../runtime/dino/presets.ts';
import { PRECISIONS } from '../dsl/autocast.ts';
import { loadTrainingData, train } from '../runtime/dino/train.ts';
import { checkDataFits } from '../runtime/dino/data-fit.ts';
import { DINO_ARCHS, dinoVitConfig, withEpochSteps, withEpochs } from '../runtime/dino/vit-presets.ts';
import { DINO_RESNET_ARCHS, dinoResNetConfig, isDinoResNetArch } from '../runtime/dino/resnet-presets.ts';
import { RUN_FILES, RunFolder, resumeProblem } from '../runtime/dino/run-folder.ts';
import { readDinoWeights } from '../runtime/io/weights.ts';
import { defaultStepsPerRun } from '../runtime/ep/steps-per-run.ts';
import { RECOMPUTE_MODES } from '../models/vit.ts';
import { EXECUTION_PROVIDERS } from '../runtime/ep/records.ts';
import type { Dataset } from '../runtime/data/dataset.ts';
import type { FolderIndex } from '../runtime/data/folder-index.ts';
import { type OptionSpec, type Parsed, UsageError, defineCommand, parseCommand } from './args.ts';
import { type Collective, abortOnUncaughtError, openCollective } from '../runtime/dist/collective.ts';

/** False on the ranks but 0 of a data-parallel run: they print nothing but errors. */
let printsLog = true;
const log = (m: string) => {
  if (printsLog) process.stderr.write(m + '\n');
};

/**
 * The flags of main_dino.py that set one config key each, derived from the config schema (its `dinoFlag`, help and
 * range; runtime/dino/config.ts): --lr, --min-lr, --weight-decay, --momentum-teacher, --out-dim, --norm-last-layer, ...
 * Flags main_dino.py has for keys this command declares itself (below) are left out here.
 */
const OWN_DINO_FLAGS = new Set(['batch-size-per-gpu', 'epochs', 'seed', 'patch-size', 'local-crops-number']);
const SCHEMA_FLAGS = dinoFlagKeys().filter(({ flag, spec }) => !OWN_DINO_FLAGS.has(flag) && (['number', 'integer', 'boolean'].includes(spec.type) || spec.length !== undefined));

/** `text` broken at spaces into lines of at most `width` characters. */
function wrap(text: string, width: number): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) { lines.push(line); line = word; }
    else line = line ? `${line} ${word}` : word;
  }
  return [...lines, line].join('\n');
}

function schemaFlagOption(spec: KeySpec): OptionSpec {
  const range = { ...(spec.min !== undefined ? { min: spec.min } : {}), ...(spec.max !== undefined ? { max: spec.max } : {}) };
  if (spec.type === 'boolean') return { kind: 'choice', choices: ['true', 'false'], help: spec.help };
  if (spec.type === 'integer') return { kind: 'int', ...range, help: spec.help };
  if (spec.type === 'number[]') return { kind: 'numbers', count: spec.length!, placeholder: spec.length === 2 ? 'LO HI' : 'N...', help: spec.help };
  return { kind: 'number', ...range, ...(spec.exclusiveMin ? { exclusiveMin: true } : {}), help: spec.help };
}

/** main_dino.py's other flags (defaults are the preset's: DINO's own for --arch). */
const DINO_FLAGS = {
  'warmup-epochs': { kind: 'int', min: 0, help: 'epochs of linear lr warm-up (with --epochs)' },
  'warmup-teacher-temp-epochs': { kind: 'int', min: 0, help: 'epochs of teacher-temperature warm-up (with --epochs)' },
  'freeze-last-layer': { kind: 'int', min: 0, help: 'epochs during which the head\'s last layer is not updated (with --epochs, or --arch and --steps on a folder: epochs of that folder)' },
  optimizer: { kind: 'choice', choices: ['adamw', 'sgd', 'lars'], help: 'adamw (DINO\'s default, the one the step compiles); sgd and lars are refused (--arch resnet50 trains with AdamW instead of DINO\'s SGD)' },
  'saveckp-freq': { kind: 'int', min: 1, placeholder: 'N', help: 'also save every N epochs (--checkpoint-every counts steps; the latest is always DIR/checkpoint.safetensors)' },
  'dist-url': { kind: 'string', help: 'refused: several processes are launched by mpirun -np N or srun (the MPI library connects them); leave it out' },
  'local-rank': { kind: 'int', help: 'refused: each process learns its rank from the MPI library (mpirun -np N, srun); leave it out' },
  'batch-size-per-gpu': { kind: 'int', min: 1, help: 'the same as --batch: images per process (the global batch is N times that under mpirun -np N)' },
  'output-dir': { kind: 'string', placeholder: 'DIR', help: 'the same as --out' },
  'data-path': { kind: 'string', placeholder: 'FOLDER', help: 'the same as --data' },
} as const;

export const trainCommand = defineCommand(
  {
    name: 'train',
    summary: 'Train DINO: a student on all crops, an EMA teacher on the global crops, in one compiled ONNX step graph.',
    options: {
      preset: { kind: 'choice', choices: presetNames(), help: 'model, crops and hyper-parameters (default: fmnist-quick)' },
      arch: { kind: 'choice', choices: [...DINO_ARCHS, ...DINO_RESNET_ARCHS], help: 'a DINO ViT with main_dino.py\'s defaults, or a ResNet with DINO\'s ResNet-50 settings (BN head, weight decay 1e-4, crop scales 0.14-1 / 0.05-0.14) but AdamW at lr 0.0005 where DINO uses SGD at 0.03 (the step compiles AdamW only); resnet18 at a small --image-size fits a CPU. For RGB image folders (instead of --preset)' },
      'patch-size': { kind: 'int', min: 1, help: 'ViT patch size with --arch (default 16; DINO also publishes 8)' },
      'image-size': { kind: 'int', min: 1, help: 'global crop side and model input (--arch default 224; local crops keep 96/224 of it)' },
      steps: { kind: 'int', min: 1, help: 'length of the run in steps; every schedule spans it' },
      epochs: { kind: 'int', min: 1, help: 'length in passes over the data (steps = N x floor(images / batch)); DINO\'s warm-ups are converted to steps. --arch defaults to 100' },
      batch: { kind: 'int', min: 1, help: 'images per step and process (under mpirun -np N the global batch is N times that; lr scales with the global batch / 256)' },
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
      ...(Object.fromEntries(SCHEMA_FLAGS.map(({ flag, spec }) => [flag, schemaFlagOption(spec)])) as Record<string, OptionSpec>),
    },
    epilog: `Resuming: \`dino train --resume DIR\` reads DIR/config.json and DIR/checkpoint.safetensors and continues; a run
stopped with Ctrl-C or SIGTERM (timeout, docker stop, SLURM) saves a checkpoint first, and resumed equals the run not
stopped, bit for bit on CPU with the same --threads (the default, one per core, is the same on the same machine). On
resume only --steps or --epochs (to lengthen the run: the schedules are then recomputed over the new length, as
DINO's --epochs), --ep, --threads, --recompute, --steps-per-run, --checkpoint-every, --saveckp-freq and
--skip-bad-images may be given; a flag that would change anything else is refused, naming the config key.

Config keys for --set KEY=VALUE (each key's type and DINO's advice: CONFIG_SCHEMA in runtime/dino/config.ts):
${wrap(Object.keys(CONFIG_SCHEMA).filter((k) => !CONFIG_SCHEMA[k as ConfigKey].setBy).join(', '), 116)}
(the backbone.* keys above are a ViT's; a ResNet's, with --arch resnet50|resnet18: ${Object.keys(BACKBONE_SCHEMAS.resnet).filter((k) => !BACKBONE_SCHEMAS.resnet[k]!.setBy).join(', ')})`,
  },
  async (p): Promise<void> => {
    for (const flag of ['dist-url', 'local-rank'] as const) {
      if (p.given.has(flag)) throw new UsageError(`--${flag} is main_dino.py's torch.distributed flag; here several processes are launched by mpirun -np N (or srun) and learn their rank from the MPI library: leave it out`, 'train');
    }
    // Under mpirun / srun the MPI library gives this process its rank; without a launcher no MPI library is loaded.
    const collective = await openCollective();
    if (collective.kind === 'single') return trainCommandRun(p, collective);
    // Under a launcher (even with one process, which trains as without one), every rank ends by MPI_Finalize or MPI_Abort.
    abortOnUncaughtError(collective);
    printsLog = collective.rank === 0;
    try {
      await trainCommandRun(p, collective);
    } catch (e) {
      // Every rank stops: without MPI_Abort the others would wait in their next all-reduce.
      const { wordError } = await import('./errors.ts');
      collective.abort(e instanceof UsageError ? 2 : 1, `error: ${e instanceof UsageError ? e.message : wordError(e)}`);
    }
    collective.finalize();
  },
);

/** `dino train` on this process: one of a data-parallel run's ranks, or the whole run. */
async function trainCommandRun(p: TrainParsed, collective: Collective): Promise<void> {
  if (p.options.optimizer !== undefined && p.options.optimizer !== 'adamw') {
    throw new UsageError(`--optimizer ${p.options.optimizer}: the training step is compiled with AdamW (main_dino.py's default, which it recommends for ViTs); leave --optimizer out or give adamw`, 'train');
  }
  const resumeDir = p.given.has('resume') ? resumeFolder(p) : undefined;
  const ep = p.options.ep;
  const outFlag = alias(p.options.out, p.options['output-dir'], 'out', 'output-dir');
  // Refused before the data is read or anything compiled (train() checks again, for the default folder too).
  if (!resumeDir && outFlag !== undefined) new RunFolder(outFlag).checkFresh();
  const resolved = resumeDir ? await resumedConfig(p, resumeDir, collective.size) : await newRunConfig(p, collective.size);
  const config = resolved.config;
  const out = resumeDir ?? outFlag ?? join('runs', `${config.preset}-${config.seed}`);
  if (!resumeDir) new RunFolder(out).checkFresh();
  const { checkpointEvery, dataset } = await checkpointInterval(p, config, resolved.dataset);
  const initWeights = p.options.init !== undefined ? readInitWeights(p.options.init) : undefined;
  const stepsPerRunFlag = p.options['steps-per-run'];
  if (collective.size > 1 && stepsPerRunFlag !== undefined && stepsPerRunFlag > 1) {
    throw new UsageError(`--steps-per-run ${stepsPerRunFlag}: ${collective.size} processes run one step per ONNX Runtime call (the all-reduce sits between the step's two graphs); leave --steps-per-run out`, 'train');
  }
  const stepsPerRun = collective.size > 1 ? 1 : (stepsPerRunFlag ?? defaultStepsPerRun(ep, [checkpointEvery]));
  const r = await train({
    config, out, ep,
    ...(resumeDir ? { resume: true } : {}),
    ...(dataset ? { dataset } : {}),
    ...(p.options['skip-bad-images'] ? { skipBadImages: true } : {}),
    ...(p.options['num-workers'] !== undefined ? { numWorkers: p.options['num-workers'] } : {}),
    threads: p.options.threads,
    recompute: p.options.recompute,
    ...(stepsPerRun !== undefined ? { stepsPerRun } : {}),
    ...(checkpointEvery !== undefined ? { checkpointEvery } : {}),
    ...(initWeights ? { initWeights } : {}),
    ...(collective.size > 1 ? { collective } : {}),
  });
  if (collective.rank !== 0) return;
  console.log(`${r.interrupted ? 'interrupted' : 'done'} after ${r.steps} steps; checkpoint ${r.checkpoint}; metrics ${new RunFolder(out).metricsFile}`);
  if (r.interrupted) {
    console.log(`resume with: npx dino train --resume ${out}`);
    process.exitCode = r.stoppedBy === 'SIGTERM' ? 143 : 130; // stopped by a signal (the checkpoint is saved): not a finished run
  }
}

type TrainParsed = Parsed<typeof trainCommand.spec.options>;

/** Flags that may accompany --resume: they change how the run is executed or how long it is, not what it is. */
const RESUMABLE_FLAGS = new Set(['resume', 'out', 'output-dir', 'steps', 'epochs', 'ep', 'threads', 'recompute', 'steps-per-run', 'checkpoint-every', 'saveckp-freq', 'skip-bad-images', 'num-workers']);

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
    if (isDinoResNetArch(o.arch)) {
      if (o['patch-size'] !== undefined) throw new UsageError(`--patch-size applies to a ViT; --arch ${o.arch} has no patches`, 'train');
      if (imageSize < 32) throw new UsageError(`--image-size ${imageSize}: a ResNet downsamples by 32, give at least 32`, 'train');
      cfg = dinoResNetConfig(o.arch, { imageSize });
    } else {
      if (imageSize % patchSize !== 0) throw new UsageError(`--patch-size ${patchSize} must divide --image-size ${imageSize}`, 'train');
      cfg = dinoVitConfig(o.arch, { patchSize, imageSize });
      if (imageSize !== 224) cfg = { ...cfg, preset: `${cfg.preset}_${imageSize}px` };
    }
  } else {
    if (o['patch-size'] !== undefined) throw new UsageError('--patch-size applies to --arch vit_tiny|vit_small|vit_base; for a preset use --set backbone.patchSize=N', 'train');
    if (o['image-size'] !== undefined) cfg = withValues(cfg, { 'backbone.imgSize': o['image-size'], 'augment.globalSize': o['image-size'] });
  }
  if (o['local-crops'] !== undefined && o['local-crops-number'] !== undefined) throw new UsageError('--local-crops and --local-crops-number are the same option: give one', 'train');
  const values: [ConfigKey, unknown][] = [];
  if (o.steps !== undefined) values.push(['steps', o.steps]);
  const batch = alias(o.batch, o['batch-size-per-gpu'], 'batch', 'batch-size-per-gpu');
  if (batch !== undefined) values.push(['batch', batch]);
  for (const { flag, key, spec } of SCHEMA_FLAGS) {
    const v = (o as Readonly<Record<string, unknown>>)[flag];
    if (v !== undefined) values.push([key, spec.type === 'boolean' ? v === 'true' : v]);
  }
  if (o.seed !== undefined) values.push(['seed', o.seed]);
  if (o.augment !== undefined) values.push(['augment.augment', o.augment]);
  const localCrops = o['local-crops-number'] ?? o['local-crops'];
  if (localCrops !== undefined) values.push(['augment.localCrops', localCrops]);
  cfg = applyOverrides(withValues(cfg, values), o.set);
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

/**
 * Steps between periodic checkpoints: --checkpoint-every K, or main_dino.py's --saveckp-freq N in epochs (N x the
 * steps of one pass over the data, which is then loaded here, once, and handed to the training loop).
 */
async function checkpointInterval(p: TrainParsed, cfg: TrainConfig, dataset: Dataset | FolderIndex | undefined): Promise<{ checkpointEvery?: number; dataset?: Dataset | FolderIndex }> {
  const epochs = p.options['saveckp-freq'];
  if (epochs === undefined) return { ...(p.options['checkpoint-every'] !== undefined ? { checkpointEvery: p.options['checkpoint-every'] } : {}), ...(dataset ? { dataset } : {}) };
  if (p.options['checkpoint-every'] !== undefined) throw new UsageError('--saveckp-freq (epochs) and --checkpoint-every (steps) both set how often to save: give one', 'train');
  if (!dataset) await checkDataFits(cfg, cfg.data);
  const data = dataset ?? (await loadTrainingData(cfg, { skipBadImages: p.options['skip-bad-images'], log }));
  return { checkpointEvery: epochs * Math.max(1, Math.floor(data.train.count / cfg.batch)), dataset: data };
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

/**
 * `cfg` with its batch, given per process (--batch, --batch-size-per-gpu, or the preset's), made the global batch
 * of `ranks` processes, as DINO's: the config records the global batch, which the schedules, the lr scaling and
 * the epochs use; each rank trains on batch / ranks images.
 */
function globalBatch(cfg: TrainConfig, ranks: number): TrainConfig {
  return ranks === 1 ? cfg : { ...cfg, batch: cfg.batch * ranks };
}

async function newRunConfig(p: TrainParsed, ranks = 1): Promise<{ config: TrainConfig; dataset?: Dataset | FolderIndex }> {
  if (p.options.steps !== undefined && p.options.epochs !== undefined) throw new UsageError('--epochs and --steps both set the length of the run: give one', 'train');
  const base = getPreset(p.options.preset ?? 'fmnist-quick');
  if (ranks > 1 && (p.options.set ?? []).some((kv) => kv.trim().startsWith('batch='))) {
    throw new UsageError(`--set batch=... sets the config's batch, which under ${ranks} processes is the global one: give each process's batch with --batch (or --batch-size-per-gpu)`, 'train');
  }
  const cfg = globalBatch(configFromFlags(p, base), ranks);
  if (ranks > 1) log(`${ranks} processes of ${cfg.batch / ranks} images: a global batch of ${cfg.batch} (lr scales with ${cfg.batch} / 256)`);
  const epochs = p.options.epochs ?? (p.options.steps === undefined && cfg.epochs !== undefined ? cfg.epochs : undefined);
  return withLength(cfg, p, epochs);
}

/**
 * A resumed run's config: the checkpoint's, with only a new length allowed. Every other flag that would change it
 * is refused before anything is compiled, naming the config key and both values.
 */
async function resumedConfig(p: TrainParsed, dir: string, ranks: number): Promise<{ config: TrainConfig; dataset?: Dataset | FolderIndex }> {
  const folder = new RunFolder(dir);
  if (!folder.hasCheckpoint()) {
    const hint = folder.hasConfig() ? 'the run stopped before its first checkpoint; start it again without --resume' : `is ${dir} a run folder written by dino train?`;
    throw new UsageError(`--resume ${dir}: no ${RUN_FILES.checkpoint} there (${hint})`, 'train');
  }
  const meta = folder.readCheckpointMeta();
  const recorded = meta.config;
  if (recorded.backbone.kind === 'custom') {
    throw new UsageError(`--resume ${dir}: the run trains the registered backbone "${recorded.backbone.name}", code of your program that the CLI cannot import; resume it from your script: registerBackbone, then train({ config, out, resume: true }) (README, "Your own backbone, from a script")`, 'train');
  }
  const drift = folder.configDrift(recorded);
  if (drift.length) log(`note: ${folder.configFile} differs from the checkpoint's config (${drift.map(formatChange).join('; ')}); the checkpoint's is used`);
  const extra = [...p.given].filter((f) => !RESUMABLE_FLAGS.has(f));
  if (p.options.steps !== undefined && p.options.epochs !== undefined) throw new UsageError('--epochs and --steps both set the length of the run: give one', 'train');
  let cfg = recorded;
  if (extra.length) {
    // Flags given again with the run's own values are harmless; any real change is refused with its key.
    const flagged = configFromFlags(p, p.options.preset !== undefined ? getPreset(p.options.preset) : recorded); // --arch sets its own base
    // A batch given per process: the recorded one is the global batch.
    const perProcess = p.options.batch !== undefined || p.options['batch-size-per-gpu'] !== undefined || p.options.preset !== undefined || p.options.arch !== undefined;
    const wanted = perProcess ? globalBatch(flagged, ranks) : flagged;
    const problem = resumeProblem({ ...meta, step: 0 }, wanted); // the length is checked below, once it is known
    if (problem?.kind === 'config-mismatch') {
      throw new UsageError(
        `a resumed run keeps its config, but ${extra.map((f) => `--${f}`).join(', ')} would change ${problem.changed.map(formatChange).join('; ')}. ` +
          `Resume without ${extra.length > 1 ? 'them' : 'it'}, or start a new run with another --out`,
        'train',
      );
    }
  }
  if (p.options.steps !== undefined) cfg = { ...cfg, steps: p.options.steps };
  if (cfg.batch % ranks !== 0) throw new UsageError(`--resume ${dir}: the run's global batch of ${cfg.batch} images does not split into ${ranks} processes; resume with a number of processes that divides ${cfg.batch}`, 'train');
  const r = await withLength(cfg, p, p.options.epochs);
  const problem = resumeProblem(meta, r.config);
  if (problem?.kind === 'too-short') {
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
