/**
 * The DINO training loop: data -> multi-crop (worker thread, overlapped) -> compiled step graph ->
 * metrics JSONL, progress, atomic checkpoints, resume, NaN stop, Ctrl-C save.
 */
import type { BackboneConfig } from '../../models/presets.ts';
import { appendFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as E from 'fp-ts/lib/Either.js';
import { type Precision, Prng, formatError, initialValues, type ParamSpec } from '../../dsl/index.ts';
import { type DinoMetrics, type DinoStepGraph, type DinoStepInputs, type ScheduledScalars, STUDENT, buildDinoStep, teacherFromStudent } from '../../models/dino-step.ts';
import type { Recompute } from '../../models/vit.ts';
import type { ExecutionProvider, ort } from '../backend.ts';
import { StepRunner, stackSteps } from '../step-runner.ts';
import { TrainState } from '../state.ts';
import type { Dataset } from '../data/dataset.ts';
import { MultiCropLoader, decodeThreadsNote, defaultLoaderWorkers } from '../data/loader.ts';
import { derivePrng } from '../data/seeds.ts';
import { loadFashionMnist } from '../data/fashion-mnist.ts';
import { FolderIndex, indexImageFolder } from '../data/folder-index.ts';
import { indexTarShards, isShardPattern } from '../data/tar-shards.ts';
import { RESUMABLE_KEYS, type TrainConfig, configDifferences, stepConfig } from './config.ts';
import { loadCheckpoint, restoreState, saveCheckpoint } from './checkpoint.ts';
import { stepScalars } from './schedules.ts';
import { dinoStepFeeds } from './step-feeds.ts';
import { checkDataFits } from './data-fit.ts';
import { stateToHost } from '../ep/device-state.ts';

/** The training loop's activation recomputation unless told otherwise (see TrainOptions.recompute). */
export const DEFAULT_RECOMPUTE: Recompute = 'mlp';

/** PRNG stream for stochastic-depth masks (streams 1-2 are the loader's: see runtime/data/seeds.ts). */
const DROP_PATH_STREAM = 3;

export interface TrainOptions {
  /** Any backbone the DINO step builds (ViT, ResNet, a registered one); the CLI's are ViTs. */
  readonly config: TrainConfig<BackboneConfig>;
  /** Run folder: config.json, metrics.jsonl, checkpoint.safetensors. */
  readonly out: string;
  /**
   * Continue from `out/checkpoint.safetensors`. The config must be the checkpoint's, except its length (`steps`,
   * `epochs`: see RESUMABLE_KEYS), which may grow: the schedules then span the new length, as DINO's `--epochs` on
   * resume. With the length unchanged the resumed run equals the uninterrupted one bit for bit on CPU.
   */
  readonly resume?: boolean;
  readonly skipBadImages?: boolean;
  /**
   * Loader worker threads that read, decode and crop the images (`--num-workers`). Default: for an image folder
   * one per core but one (runtime/data/loader.ts `defaultLoaderWorkers`); for Fashion-MNIST, whose crops are
   * cheap, 1. The crops are the same for any number.
   */
  readonly numWorkers?: number;
  readonly ep?: ExecutionProvider;
  readonly threads?: number;
  /**
   * Student activations the backward pass recomputes instead of keeping (models/vit.ts `Recompute`): the same
   * numbers, less memory for more compute (bench/RESULTS.md). Default `mlp`.
   */
  readonly recompute?: Recompute;
  /**
   * Steps per ONNX Runtime call (default 1): K > 1 runs K steps in one call through an ONNX `Loop`
   * (StepRunner.runSteps), so the state crosses between host and device once per K steps instead of every step
   * (for CUDA, where graph outputs come back to the host). Same numbers; on CPU a small gain for one more copy
   * of the state in memory (bench/RESULTS.md, "Several steps per run").
   */
  readonly stepsPerRun?: number;
  /** Save every K steps (and always at the end). 0: only at the end. */
  readonly checkpointEvery?: number;
  /** Start student and teacher from these backbone/head weights (name -> values, DINO keys). */
  readonly initWeights?: ReadonlyMap<string, Float32Array>;
  /** Stop after this many steps of this invocation (for tests of resume); the schedules still span config.steps. */
  readonly stopAfter?: number;
  /**
   * Progress on stderr: `bar` redraws one line (for a terminal), `lines` prints a plain line every 10% of the run
   * or every 30 s (for logs), `none` is silent. Default: `bar` when stderr is a TTY, else `lines`.
   */
  readonly progress?: 'bar' | 'lines' | 'none';
  readonly log?: (line: string) => void;
  /** Data already loaded or indexed (tests and benches reuse it). */
  readonly dataset?: Dataset | FolderIndex;
}

export interface TrainResult {
  readonly steps: number;
  readonly lastMetrics: Record<string, number>;
  readonly state: TrainState;
  readonly checkpoint: string;
  readonly interrupted: boolean;
}

/** The run folder's record of its image folder's files (runtime/data/folder-index.ts), read back on resume. */
export const DATA_INDEX_FILE = 'data-index.tsv';

/**
 * The run's data: Fashion-MNIST in memory, or the image folder's index (its files are decoded per sample by the
 * loader). With `runDir`, the index is kept there; `resume` reads it back as recorded (the same files in the same
 * order, even if the folder changed since).
 */
export async function loadTrainingData(cfg: TrainConfig<BackboneConfig>, opts: Pick<TrainOptions, 'skipBadImages' | 'log'> & { runDir?: string; resume?: boolean }): Promise<Dataset | FolderIndex> {
  if (!cfg.data) return loadFashionMnist();
  // Tar shards are indexed again at each start (from their headers): there is no file list to record.
  if (isShardPattern(cfg.data)) return reportSkipped(await indexTarShards(cfg.data, { skipBadImages: opts.skipBadImages ?? false, holdout: cfg.holdout ?? 0 }), cfg.data, opts.log);
  const cacheFile = opts.runDir !== undefined ? join(opts.runDir, DATA_INDEX_FILE) : undefined;
  const frozen = opts.resume === true && cacheFile !== undefined && existsSync(cacheFile);
  const index = await indexImageFolder(cfg.data, {
    skipBadImages: opts.skipBadImages ?? false, holdout: cfg.holdout ?? 0,
    ...(cacheFile !== undefined ? { cacheFile, frozen } : {}),
  });
  if (cfg.holdout && index.layout === 'splits') opts.log?.(`note: ${cfg.data} has train/ and val/ (or test/) folders, which are its split; holdout ${cfg.holdout} applies to plain folders and is not used`);
  return reportSkipped(index, cfg.data, opts.log);
}

function reportSkipped(index: FolderIndex, data: string, log: ((line: string) => void) | undefined): FolderIndex {
  for (const s of index.skipped.slice(0, 5)) log?.(`skipped unreadable image ${s.file}: ${s.reason}`);
  if (index.skipped.length) log?.(`skipped ${index.skipped.length} unreadable image(s) of ${data} when indexing (--skip-bad-images)`);
  return index;
}

/** Fresh state: student drawn from the seed, teacher = copy of the student, zeros elsewhere. */
export function initialState(specs: readonly ParamSpec[], seed: number, initWeights?: ReadonlyMap<string, Float32Array>): TrainState {
  const studentSpecs = specs.filter((s) => s.name.startsWith(STUDENT));
  const values = initialValues(studentSpecs, Prng.seeded(seed));
  if (initWeights) {
    for (const [name, v] of initWeights) {
      const key = STUDENT + name;
      if (!values.has(key)) throw new InitWeightsError({ kind: 'unknown', name });
      const need = values.get(key)!.length;
      if (need !== v.length) throw new InitWeightsError({ kind: 'size', name, got: v.length, need });
      values.set(key, v);
    }
  }
  teacherFromStudent(values);
  return TrainState.init(specs, Prng.seeded(seed), values);
}

/**
 * The precision the step graph is built in on `ep`. ONNX Runtime has a bfloat16 MatMul kernel on CUDA only (its CPU
 * provider refuses a session with one: "Could not find an implementation for MatMul"), so on any other provider
 * `bf16` becomes `bf16-emulated`, float32 products of operands rounded to bfloat16, rounded again: the numbers of a
 * GPU's bfloat16 GEMM with float32 accumulation. float16 needs no such step: the CPU provider runs its MatMul.
 */
export function stepPrecision(precision: Precision, ep: ExecutionProvider): Precision {
  return precision === 'bf16' && ep !== 'cuda' ? 'bf16-emulated' : precision;
}

/**
 * The compiled-to-be step graph of a training run on `ep`: the one place the execution provider shapes the graph
 * (WebGPU has no LogSoftmax kernel, so the loss uses a composite that stays on the device: same values; only CUDA
 * has a bfloat16 MatMul kernel, so elsewhere `bf16` computes bfloat16's roundings in float32: same values, see
 * {@link stepPrecision}).
 */
export function trainingStepGraph(cfg: TrainConfig<BackboneConfig>, opts: Pick<TrainOptions, 'recompute' | 'ep'> = {}): DinoStepGraph {
  const step = stepConfig(cfg);
  const built = buildDinoStep({
    ...step, ...(step.precision ? { precision: stepPrecision(step.precision, opts.ep ?? 'cpu') } : {}),
    recompute: opts.recompute ?? DEFAULT_RECOMPUTE, ...(opts.ep === 'webgpu' ? { logSoftmax: 'composite' } : {}),
  });
  if (E.isLeft(built)) throw new Error(`the model config is invalid:\n  ${built.left.map(formatError).join('\n  ')}`);
  return built.right;
}

export async function train(opts: TrainOptions): Promise<TrainResult> {
  const log = opts.log ?? ((l: string) => process.stderr.write(l + '\n'));
  const cfg = opts.config;
  const stepsPerRun = opts.stepsPerRun ?? 1;
  if (!Number.isInteger(stepsPerRun) || stepsPerRun < 1) throw new Error(`stepsPerRun must be a positive integer, got ${stepsPerRun}`);
  await checkDataFits(cfg, cfg.data, opts.dataset instanceof FolderIndex ? undefined : opts.dataset); // before anything is compiled or written
  mkdirSync(opts.out, { recursive: true });
  const ckptPath = join(opts.out, 'checkpoint.safetensors');
  const metricsPath = join(opts.out, 'metrics.jsonl');

  const built = trainingStepGraph(cfg, opts);
  const compileStart = performance.now();
  const runner = await StepRunner.compile(built.graph, { ep: opts.ep ?? 'cpu', threads: opts.threads ?? 0, keepStateOnDevice: true });
  log(`compiled the training step (${(runner.onnxBytes.length / 1e6).toFixed(1)} MB ONNX, ${built.graph.nodes.length} nodes) in ${((performance.now() - compileStart) / 1000).toFixed(1)} s`);
  if (cfg.precision === 'fp16' && (opts.ep ?? 'cpu') === 'cpu') {
    log('note: precision fp16 on the CPU provider: ONNX Runtime runs float16 MatMul in float32 there (no gain); fp16 is meant for --ep cuda');
  }
  if (cfg.precision === 'bf16' && (opts.ep ?? 'cpu') !== 'cuda') {
    log(`note: precision bf16 on the ${opts.ep ?? 'cpu'} provider, which has no bfloat16 MatMul: the step rounds to bfloat16 in float32 (the same numbers, slower than fp32); bf16 is meant for --ep cuda`);
  }

  let state: TrainState;
  let startStep = 0;
  let loaderStart = { epoch: 0, batch: 0 };
  if (opts.resume) {
    const ckpt = loadCheckpoint(ckptPath);
    const changed = configDifferences(ckpt.meta.config, cfg).filter((d) => !RESUMABLE_KEYS.includes(d.key));
    if (changed.length) throw new RunFolderError({ kind: 'config-mismatch', checkpoint: ckptPath, config: join(opts.out, 'config.json'), changed });
    if (cfg.steps <= ckpt.meta.step && cfg.steps !== ckpt.meta.config.steps) {
      throw new RunFolderError({ kind: 'too-short', checkpoint: ckptPath, config: join(opts.out, 'config.json'), done: ckpt.meta.step, steps: cfg.steps });
    }
    if (cfg.steps !== ckpt.meta.config.steps) {
      log(`extending the run from ${ckpt.meta.config.steps} to ${cfg.steps} steps: the schedules now span ${cfg.steps} steps`);
      writeFileSync(join(opts.out, 'config.json'), JSON.stringify(cfg, null, 2) + '\n');
    }
    state = initialState(runner.signature.state, cfg.seed);
    restoreState(state, ckpt, ckptPath);
    startStep = ckpt.meta.step;
    loaderStart = ckpt.meta.loader;
    log(`resuming from step ${startStep}`);
  } else {
    if (existsSync(ckptPath)) throw new RunFolderError({ kind: 'exists', checkpoint: ckptPath });
    state = initialState(runner.signature.state, cfg.seed, opts.initWeights);
    writeFileSync(join(opts.out, 'config.json'), JSON.stringify(cfg, null, 2) + '\n');
    writeFileSync(metricsPath, '');
  }

  // A resumed run reads its recorded index back; a new one records the index it trains on.
  const recordedIndex = opts.resume && cfg.data !== undefined && !isShardPattern(cfg.data) && existsSync(join(opts.out, DATA_INDEX_FILE));
  const dataset = (recordedIndex ? undefined : opts.dataset) ?? (await loadTrainingData(cfg, { ...opts, runDir: opts.out, resume: opts.resume ?? false }));
  if (dataset instanceof FolderIndex && !dataset.sharded && !opts.resume) await dataset.save(join(opts.out, DATA_INDEX_FILE));
  const workers = opts.numWorkers ?? (dataset instanceof FolderIndex ? defaultLoaderWorkers() : 1);
  let skippedInRun = 0;
  const threadsNote = dataset instanceof FolderIndex ? decodeThreadsNote(workers) : undefined;
  if (threadsNote) log(threadsNote);
  const loader = new MultiCropLoader({
    dataset, batchSize: cfg.batch, seed: cfg.seed, augment: cfg.augment, workers, prefetch: 2, start: loaderStart,
    channels: cfg.backbone.inChans === 1 ? 1 : 3, skipBadImages: opts.skipBadImages ?? false,
    onSkip: (file, reason) => log(`skipping unreadable image ${file}: ${reason} (--skip-bad-images; ${++skippedInRun} so far; the same file is replaced on every epoch and on resume)`),
  });
  const b = cfg.batch;
  const shape = stepConfig(cfg);

  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    log('\ninterrupt: finishing this step and saving a checkpoint (Ctrl-C again to abort without saving)');
    process.once('SIGINT', () => process.exit(130));
  };
  process.once('SIGINT', onSigint);

  const save = (step: number, position = loader.position()) => saveCheckpoint(ckptPath, state, { config: cfg, step, seed: cfg.seed, loader: position });
  const end = Math.min(cfg.steps, startStep + (opts.stopAfter ?? Infinity));
  const progress = opts.progress ?? (process.stderr.isTTY ? 'bar' : 'lines');
  let lastLine = { step: startStep, at: performance.now() };
  const dataBound = new DataBoundMeter();
  let last: Record<string, number> = {};
  let step = startStep;
  const t0 = performance.now();
  try {
    while (step < end && !interrupted) {
      const chunkStart = performance.now();
      // Steps in this run: up to stepsPerRun, never past the end or a checkpoint boundary.
      let chunk = Math.min(stepsPerRun, end - step);
      if (opts.checkpointEvery) chunk = Math.min(chunk, opts.checkpointEvery - (step % opts.checkpointEvery));
      const feeds: DinoStepInputs<ort.Tensor>[] = [];
      const scalars: ScheduledScalars[] = [];
      const dataWaitMs: number[] = [];
      for (let k = 0; k < chunk; k++) {
        const at = step + k;
        // How long the step waits for its batch: the loader's lag behind the training step.
        const waitStart = performance.now();
        const batch = await loader.next();
        dataWaitMs.push(performance.now() - waitStart);
        // Masks from their own stream, indexed by step: a resumed run draws the same ones.
        feeds.push(dinoStepFeeds(shape, batch, () => derivePrng(cfg.seed, DROP_PATH_STREAM, at)));
        scalars.push(stepScalars(cfg, at));
      }
      const runStart = performance.now();
      // Every DINO_METRICS name is an output: buildDinoStep emits them from a record typed by that list.
      const metrics = (chunk === 1 ? [await runner.run(state, feeds[0]!, scalars[0]!)] : await runner.runSteps(state, stackSteps(feeds), scalars)) as DinoMetrics[];
      const stepMs = (performance.now() - runStart) / chunk;
      dataBound.add(dataWaitMs.reduce((a, w) => a + w, 0), performance.now() - chunkStart);
      const bad = metrics.findIndex((m) => !Number.isFinite(m.loss));
      if (bad >= 0) throw new NonFiniteLossError(step + bad + 1, metrics[bad]!.loss, existsSync(ckptPath) ? ckptPath : undefined);
      for (const [k, m] of metrics.entries()) {
        last = { ...m, ...scalars[k]!, step: step + k + 1, step_ms: stepMs, images_per_s: (b * 1000) / stepMs, data_wait_ms: dataWaitMs[k]! };
        appendFileSync(metricsPath, JSON.stringify(last) + '\n');
      }
      step += chunk;
      if (progress === 'bar') process.stderr.write(`\r${progressText(step, cfg.steps, startStep, t0, metrics[chunk - 1]!, b)}${dataBound.note()}   `);
      else if (progress === 'lines') {
        // A plain line every tenth of the run or every 30 s, whichever comes first: log files get no \r redraws.
        const now = performance.now();
        if (step === end || step - lastLine.step >= Math.max(1, Math.ceil(cfg.steps / 10)) || now - lastLine.at >= 30_000) {
          log(progressText(step, cfg.steps, startStep, t0, metrics[chunk - 1]!, b) + dataBound.note());
          lastLine = { step, at: now };
        }
      }
      if (opts.checkpointEvery && step % opts.checkpointEvery === 0 && step < end) {
        await stateToHost(state); // a no-op unless the state lives on the device (WebGPU)
        save(step);
      }
    }
    await stateToHost(state);
    save(step);
  } finally {
    process.removeListener('SIGINT', onSigint);
    if (progress === 'bar') process.stderr.write('\n');
    await loader.close();
    await runner.release();
  }
  return { steps: step, lastMetrics: last, state, checkpoint: ckptPath, interrupted };
}

/**
 * Typed errors of the training loop. Their messages name options as the library spells them; the CLI words
 * them with its flags (cli/errors.ts).
 */
export class NonFiniteLossError extends Error {
  constructor(
    readonly step: number,
    readonly loss: number,
    /** The last good checkpoint, kept as it was; undefined when none was written yet. */
    readonly checkpoint: string | undefined,
    advice = 'Lower the learning rate (lr), raise clipGrad or freezeLastLayerSteps, or check the data.',
  ) {
    super(`step ${step}: the loss is ${loss}; training stopped. The last good checkpoint (${checkpoint ?? 'none yet'}) is kept. ${advice}`);
    this.name = 'NonFiniteLossError';
  }
}

/** A config key whose value differs between a checkpoint and the config it is resumed with. */
export interface ConfigChange {
  readonly key: string;
  readonly was: unknown;
  readonly now: unknown;
}

export type RunFolderProblem =
  /** A fresh run would overwrite this checkpoint. */
  | { readonly kind: 'exists'; readonly checkpoint: string }
  /** Resuming with a config that differs from the checkpoint's in keys that may not change. */
  | { readonly kind: 'config-mismatch'; readonly checkpoint: string; readonly config: string; readonly changed: readonly ConfigChange[] }
  /** Resuming with a new length that the run has already passed. */
  | { readonly kind: 'too-short'; readonly checkpoint: string; readonly config: string; readonly done: number; readonly steps: number };

export const formatConfigChange = (c: ConfigChange): string => `${c.key}: ${JSON.stringify(c.was) ?? 'absent'} -> ${JSON.stringify(c.now) ?? 'absent'}`;

export class RunFolderError extends Error {
  constructor(readonly problem: RunFolderProblem) {
    super(
      problem.kind === 'exists'
        ? `${problem.checkpoint} exists: resume that run (resume: true), or choose another run folder (nothing was overwritten)`
        : problem.kind === 'too-short'
          ? `${problem.checkpoint} has done ${problem.done} steps already; a resumed run can only grow (steps > ${problem.done}, got ${problem.steps})`
          : `${problem.checkpoint}: the checkpoint was trained with another config (${problem.changed.map(formatConfigChange).join('; ')}); resume with the run's own config (${problem.config}) or start a new run folder`,
    );
    this.name = 'RunFolderError';
  }
}

/** Initial weights that do not fit the model: a name it lacks, or a tensor of the wrong size. */
export class InitWeightsError extends Error {
  constructor(readonly problem: { readonly kind: 'unknown'; readonly name: string } | { readonly kind: 'size'; readonly name: string; readonly got: number; readonly need: number }) {
    super(
      problem.kind === 'unknown'
        ? `initial weights: the model has no parameter "${problem.name}"`
        : `initial weights: "${problem.name}" has ${problem.got} values, the model needs ${problem.need}`,
    );
    this.name = 'InitWeightsError';
  }
}

/**
 * Whether training waits on its data: the share of recent wall time spent waiting for the loader (an exponential
 * average over about 20 chunks of steps). Above 10% the progress line says so, with the remedy.
 */
export class DataBoundMeter {
  private waitMs = 0;
  private totalMs = 0;
  add(waitMs: number, totalMs: number): void {
    this.waitMs = 0.95 * this.waitMs + waitMs;
    this.totalMs = 0.95 * this.totalMs + totalMs;
  }
  note(): string {
    const share = this.totalMs > 0 ? this.waitMs / this.totalMs : 0;
    return share > 0.1 ? `  data-bound: ${Math.round(100 * share)}% waiting for images (more --num-workers or cores)` : '';
  }
}

function progressText(step: number, total: number, start: number, t0: number, m: DinoMetrics, batch: number): string {
  const elapsed = (performance.now() - t0) / 1000;
  const rate = (step - start) / elapsed;
  const eta = (total - step) / rate;
  const width = 24, filled = Math.round((width * step) / total);
  const bar = '#'.repeat(filled) + '-'.repeat(width - filled);
  return `[${bar}] ${step}/${total}  loss ${m.loss.toFixed(4)}  H(t) ${m.teacher_entropy.toFixed(2)}  ${formatRate(rate * batch)} img/s  ETA ${formatSeconds(eta)}`;
}

function formatRate(imagesPerSecond: number): string {
  return imagesPerSecond >= 10 ? imagesPerSecond.toFixed(0) : imagesPerSecond.toFixed(2);
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${Math.round(s % 60).toString().padStart(2, '0')}s` : `${Math.round(s)}s`;
}

