/**
 * The DINO training loop: data -> multi-crop (worker thread, overlapped) -> compiled step graph ->
 * metrics JSONL, progress, atomic checkpoints, resume, NaN stop, a checkpoint on Ctrl-C or SIGTERM.
 */
import { existsSync } from 'node:fs';
import { Prng, initialValues, type ParamSpec } from '../../dsl/index.ts';
import { type DinoMetrics, type DinoStepInputs, type ScheduledScalars, STUDENT, teacherFromStudent } from '../../models/dino-step.ts';
import type { BackboneConfig } from '../../models/presets.ts';
import type { Recompute } from '../../models/vit.ts';
import type { ExecutionProvider, ort } from '../backend.ts';
import { StepRunner, stackSteps } from '../step-runner.ts';
import { TrainState } from '../state.ts';
import type { Dataset } from '../data/dataset.ts';
import { type LoaderPosition, MultiCropLoader, decodeThreadsNote, defaultLoaderWorkers } from '../data/loader.ts';
import { derivePrng } from '../data/seeds.ts';
import { loadFashionMnist } from '../data/fashion-mnist.ts';
import { FolderIndex, indexImageFolder } from '../data/folder-index.ts';
import { indexTarShards, isShardPattern } from '../data/tar-shards.ts';
import { type TrainConfig, stepConfig } from './config.ts';
import { type CheckpointMeta, restoreState } from './checkpoint.ts';
import { RunFolder, checkResume, runFile } from './run-folder.ts';
import { stepScalars } from './schedules.ts';
import { dinoStepFeeds } from './step-feeds.ts';
import { checkDataFits } from './data-fit.ts';
import { stateToHost } from '../ep/device-state.ts';
import { EP_RECORDS, precisionNotes } from '../ep/records.ts';
import { DEFAULT_RECOMPUTE, trainingStepGraph } from './step-graph.ts';
import { type Collective, SingleProcess } from '../dist/collective.ts';
import { DinoDataParallelStep } from '../dist/dino-step.ts';

export { DEFAULT_RECOMPUTE, stepPrecision, trainingStepGraph } from './step-graph.ts';

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
  /**
   * The processes training together (runtime/dist/collective.ts `openCollective`; default one process). With
   * `size` N > 1 the run is data-parallel: `config.batch` is the global batch (schedules, epochs and the data's
   * order are its), each rank trains on its slice of `config.batch / N` images through the two-graph step
   * (runtime/dist/dino-step.ts) with one all-reduce per step, and rank 0 alone writes the run folder.
   */
  readonly collective?: Collective;
}

export interface TrainResult {
  readonly steps: number;
  readonly lastMetrics: Record<string, number>;
  readonly state: TrainState;
  readonly checkpoint: string;
  /** Stopped by a signal before the end (the checkpoint holds the state at `steps`). */
  readonly interrupted: boolean;
  /** The signal that stopped it, when one did. */
  readonly stoppedBy?: StopSignal;
}

/**
 * The run's data: Fashion-MNIST in memory, or the image folder's index (its files are decoded per sample by the
 * loader). With `runDir`, the index is kept there; `resume` reads it back as recorded (the same files in the same
 * order, even if the folder changed since).
 */
export async function loadTrainingData(cfg: TrainConfig<BackboneConfig>, opts: Pick<TrainOptions, 'skipBadImages' | 'log'> & { runDir?: string; resume?: boolean }): Promise<Dataset | FolderIndex> {
  if (!cfg.data) return loadFashionMnist();
  // Tar shards are indexed again at each start (from their headers): there is no file list to record.
  if (isShardPattern(cfg.data)) return reportSkipped(await indexTarShards(cfg.data, { skipBadImages: opts.skipBadImages ?? false, holdout: cfg.holdout ?? 0 }), cfg.data, opts.log);
  const cacheFile = opts.runDir !== undefined ? runFile(opts.runDir, 'dataIndex') : undefined;
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
  if (index.skipped.length) log?.(`skipped ${index.skipped.length} unreadable image(s) of ${data} when indexing (skipBadImages)`);
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
 * Trains (or resumes) a run: {@link openRun} checks the run before anything is compiled, the step graph is compiled
 * for the EP, {@link restoreOrInitialise} gives the state, {@link beginRun} writes the folder once all of that
 * worked, and {@link trainLoop} runs the steps, logs and saves until the end, a stop signal or a bad loss.
 */
export async function train(opts: TrainOptions): Promise<TrainResult> {
  const collective = opts.collective ?? new SingleProcess();
  // The other ranks of a data-parallel run print nothing (their errors reach the launcher's stderr through abort).
  const log = collective.rank !== 0 ? () => {} : (opts.log ?? ((l: string) => process.stderr.write(l + '\n')));
  const cfg = opts.config;
  const stepsPerRun = opts.stepsPerRun ?? 1;
  if (!Number.isInteger(stepsPerRun) || stepsPerRun < 1) throw new Error(`stepsPerRun must be a positive integer, got ${stepsPerRun}`);
  if (collective.size > 1) checkDataParallel(cfg, collective, stepsPerRun);
  const run = await openRun(opts, collective, log);

  const compileStart = performance.now();
  const step = collective.size > 1 ? await dataParallelStep(opts, collective) : await singleProcessStep(opts);
  log(`compiled the training step (${step.description}) in ${((performance.now() - compileStart) / 1000).toFixed(1)} s`);
  for (const note of precisionNotes(opts.ep ?? 'cpu', cfg.precision ?? 'fp32')) log(note);

  let loader: MultiCropLoader | undefined;
  try {
    const { state, step: startStep, loader: loaderStart } = restoreOrInitialise(run, step.stateSpecs, opts);
    loader = await openLoader(run, opts, loaderStart, log, collective);
    if (collective.rank === 0) beginRun(run, cfg, startStep, log, collective.size);
    return await trainLoop({ opts, folder: run.folder, step, loader, state, startStep, stepsPerRun, log, collective });
  } finally {
    await loader?.close();
    await step.release();
  }
}

/**
 * The compiled step the loop runs: the one graph of a single process (K steps per call through its Loop), or the
 * two graphs of a data-parallel rank with the all-reduce between them (one step per call).
 */
interface TrainingStep {
  /** For the log: what was compiled. */
  readonly description: string;
  readonly stateSpecs: readonly ParamSpec[];
  /** Runs the steps of `feeds` (this process's inputs) with their scalars; their metrics, the global batch's. */
  run(state: TrainState, feeds: readonly DinoStepInputs<ort.Tensor>[], scalars: readonly ScheduledScalars[]): Promise<DinoMetrics[]>;
  release(): Promise<void>;
}

async function singleProcessStep(opts: TrainOptions): Promise<TrainingStep> {
  const built = trainingStepGraph(opts.config, opts);
  const runner = await StepRunner.compile(built.graph, { ep: opts.ep ?? 'cpu', threads: opts.threads ?? 0, keepStateOnDevice: true });
  return {
    description: `${(runner.onnxBytes.length / 1e6).toFixed(1)} MB ONNX, ${built.graph.nodes.length} nodes`,
    stateSpecs: runner.signature.state,
    // Every DINO_METRICS name is an output: buildDinoStep emits them from a record typed by that list.
    run: async (state, feeds, scalars) => (feeds.length === 1 ? [await runner.run(state, feeds[0]!, scalars[0]!)] : await runner.runSteps(state, stackSteps([...feeds]), [...scalars])) as DinoMetrics[],
    release: () => runner.release(),
  };
}

/** A data-parallel run's refusals, before anything is read or compiled: each names the option and what to do. */
function checkDataParallel(cfg: TrainConfig<BackboneConfig>, collective: Collective, stepsPerRun: number): void {
  const n = collective.size;
  if (cfg.batch % n !== 0) throw new Error(`a data-parallel run of ${n} ranks needs a global batch (batch, here ${cfg.batch}) that ${n} divides: each rank trains on batch / ${n} images`);
  if (stepsPerRun > 1) throw new Error(`stepsPerRun ${stepsPerRun}: a data-parallel run of ${n} ranks runs one step per ONNX Runtime call (the all-reduce sits between the step's two graphs); leave stepsPerRun at 1`);
}

async function dataParallelStep(opts: TrainOptions, collective: Collective): Promise<TrainingStep> {
  const cfg = opts.config, ep = opts.ep ?? 'cpu';
  const rankConfig = { ...stepConfig(cfg), batch: cfg.batch / collective.size, recompute: opts.recompute ?? DEFAULT_RECOMPUTE };
  const step = await DinoDataParallelStep.compile(rankConfig, collective, { ep, threads: opts.threads ?? 0, target: EP_RECORDS[ep].target });
  return {
    description: `data-parallel on ${collective.size} ranks of ${rankConfig.batch} images: a gradient graph and an apply graph`,
    stateSpecs: step.stateSpecs,
    // metrics.jsonl records the all-reduce's wall time beside the step's (allreduce_ms).
    run: async (state, feeds, scalars) => {
      const r = await step.run(state, feeds[0]!, scalars[0]!);
      return [{ ...r.metrics, allreduce_ms: r.allreduceMs }];
    },
    release: () => step.release(),
  };
}

/** A run checked and ready to start: its folder, and the checkpoint's metadata when it resumes. */
interface OpenedRun {
  readonly folder: RunFolder;
  readonly resumeFrom?: CheckpointMeta;
}

/**
 * Checks a run before anything is compiled or written: the data fits the model, a new run would overwrite no
 * checkpoint, a resumed one keeps its checkpoint's config (runtime/dino/run-folder.ts `resumeProblem`).
 */
async function openRun(opts: TrainOptions, collective: Collective, log: (line: string) => void): Promise<OpenedRun> {
  await checkDataFits(opts.config, opts.config.data, opts.dataset instanceof FolderIndex ? undefined : opts.dataset);
  const folder = new RunFolder(opts.out);
  if (!opts.resume) {
    folder.checkFresh();
    return { folder };
  }
  const resumeFrom = folder.readCheckpointMeta();
  checkResume(folder, resumeFrom, opts.config);
  if ((resumeFrom.ranks ?? 1) !== collective.size) {
    log(
      `note: the checkpoint was written by ${resumeFrom.ranks ?? 1} process(es), this run has ${collective.size}: the same global batch of ${opts.config.batch} ` +
        `(${opts.config.batch / collective.size} per rank), so the same images and crops at every step; the sums are added in another order, so the run continues ` +
        `equal to the uninterrupted one to float32 rounding, not bit for bit (resume with ${resumeFrom.ranks ?? 1} for that)`,
    );
  }
  return { folder, resumeFrom };
}

/** The state the loop starts from (the checkpoint's, or a fresh one) and where the step count and the data resume. */
function restoreOrInitialise(run: OpenedRun, specs: readonly ParamSpec[], opts: TrainOptions): { state: TrainState; step: number; loader: LoaderPosition } {
  if (!run.resumeFrom) return { state: initialState(specs, opts.config.seed, opts.initWeights), step: 0, loader: { epoch: 0, batch: 0 } };
  const ckpt = run.folder.loadCheckpoint();
  const state = initialState(specs, opts.config.seed);
  restoreState(state, ckpt, run.folder.checkpointFile);
  return { state, step: ckpt.meta.step, loader: ckpt.meta.loader };
}

/**
 * The loader of the run's data from `start`. An image folder's index is recorded in the run folder
 * (RUN_FILES.dataIndex) by a new run and read back as recorded by a resumed one: the same files in the same order,
 * even if the folder changed since. Tar shards are indexed again from their headers at each start.
 */
async function openLoader(run: OpenedRun, opts: TrainOptions, start: LoaderPosition, log: (line: string) => void, collective: Collective): Promise<MultiCropLoader> {
  const cfg = opts.config;
  const indexFile = run.folder.dataIndexFile;
  const recordedIndex = run.resumeFrom !== undefined && cfg.data !== undefined && !isShardPattern(cfg.data) && existsSync(indexFile);
  // Rank 0 alone records a new run's index; the other ranks index the folder for themselves (the same files in the
  // same order) and read the recorded index on resume.
  const writes = collective.rank === 0;
  const runDir = writes || run.resumeFrom !== undefined ? { runDir: run.folder.dir } : {};
  const given = recordedIndex ? undefined : opts.dataset;
  const dataset = given ?? (await loadTrainingData(cfg, { ...opts, ...runDir, resume: run.resumeFrom !== undefined }));
  // An index loaded here was kept in the run folder by indexImageFolder (its cacheFile); one passed in is recorded now.
  if (given instanceof FolderIndex && !given.sharded && run.resumeFrom === undefined && writes) await given.save(indexFile);
  const workers = opts.numWorkers ?? (dataset instanceof FolderIndex ? defaultLoaderWorkers() : 1);
  const threadsNote = dataset instanceof FolderIndex ? decodeThreadsNote(workers) : undefined;
  if (threadsNote) log(threadsNote);
  let skippedInRun = 0;
  return new MultiCropLoader({
    dataset, batchSize: cfg.batch, seed: cfg.seed, augment: cfg.augment, workers, prefetch: 2, start,
    ...(collective.size > 1 ? { slice: { rank: collective.rank, ranks: collective.size } } : {}),
    channels: cfg.backbone.inChans === 1 ? 1 : 3, skipBadImages: opts.skipBadImages ?? false,
    onSkip: (file, reason) => log(`skipping unreadable image ${file}: ${reason} (skipBadImages; ${++skippedInRun} so far; the same file is replaced on every epoch and on resume)`),
  });
}

/**
 * The run folder's first writes, once the step compiled and the data is ready (a run that cannot start leaves no
 * folder): a new run's config and empty metrics log; a resumed run's new length and its log cut back to the checkpoint.
 */
function beginRun(run: OpenedRun, cfg: TrainConfig<BackboneConfig>, startStep: number, log: (line: string) => void, ranks: number): void {
  if (ranks > 1) log(`data-parallel on ${ranks} ranks: a global batch of ${cfg.batch} images, ${cfg.batch / ranks} per rank; rank 0 writes ${run.folder.dir}`);
  if (!run.resumeFrom) {
    run.folder.writeConfig(cfg);
    run.folder.startMetrics();
    return;
  }
  if (cfg.steps !== run.resumeFrom.config.steps) {
    log(`extending the run from ${run.resumeFrom.config.steps} to ${cfg.steps} steps: the schedules now span ${cfg.steps} steps`);
    run.folder.writeConfig(cfg);
  }
  run.folder.cutMetrics(startStep);
  log(`resuming from step ${startStep}`);
}

/**
 * The signals that stop a run with a checkpoint: Ctrl-C, and SIGTERM, which `timeout`, `docker stop`, Kubernetes and
 * SLURM send before they kill. The step in flight finishes and the state is saved; a second signal exits at once
 * without saving, with the shell's code for the signal (128 + its number).
 */
const STOP_SIGNALS = { SIGINT: 130, SIGTERM: 143 } as const;
export type StopSignal = keyof typeof STOP_SIGNALS;

/** Every rank's stop request after an all-reduce of the flags: if any rank was asked to stop, all stop now. */
function agreeOnStop(stop: StopRequest, collective: Collective): void {
  const flags = Float32Array.of(stop.signal === 'SIGINT' ? 1 : 0, stop.signal === 'SIGTERM' ? 1 : 0);
  collective.allreduceSum(flags);
  if (!stop.signal && flags[0]! + flags[1]! > 0) stop.signal = flags[1]! > 0 ? 'SIGTERM' : 'SIGINT';
}

/** Listens for the stop signals while the loop runs; `signal` is the first one received. */
class StopRequest {
  signal: StopSignal | undefined;
  private readonly listeners = new Map<StopSignal, () => void>();

  constructor(log: (line: string) => void) {
    for (const name of Object.keys(STOP_SIGNALS) as StopSignal[]) {
      const listener = () => {
        if (this.signal) process.exit(STOP_SIGNALS[name]);
        this.signal = name;
        log(name === 'SIGINT'
          ? '\ninterrupt: finishing this step and saving a checkpoint (Ctrl-C again to abort without saving)'
          : '\nSIGTERM: finishing this step and saving a checkpoint (a second signal aborts without saving)');
      };
      this.listeners.set(name, listener);
      process.on(name, listener);
    }
  }

  dispose(): void {
    for (const [name, listener] of this.listeners) process.removeListener(name, listener);
  }
}

/** Progress on stderr (TrainOptions.progress): a redrawn bar, or a plain line every tenth of the run or every 30 s. */
class ProgressReport {
  private lastLine: { step: number; at: number };
  private readonly t0 = performance.now();

  constructor(
    private readonly mode: 'bar' | 'lines' | 'none',
    private readonly total: number,
    private readonly startStep: number,
    private readonly end: number,
    private readonly batch: number,
    private readonly log: (line: string) => void,
  ) {
    this.lastLine = { step: startStep, at: this.t0 };
  }

  /** `note` ends the line (the data-bound note, or nothing). */
  update(step: number, metrics: DinoMetrics, note = ''): void {
    if (this.mode === 'bar') process.stderr.write(`\r${progressText(step, this.total, this.startStep, this.t0, metrics, this.batch)}${note}   `);
    else if (this.mode === 'lines') {
      // Log files get no \r redraws.
      const now = performance.now();
      if (step === this.end || step - this.lastLine.step >= Math.max(1, Math.ceil(this.total / 10)) || now - this.lastLine.at >= 30_000) {
        this.log(progressText(step, this.total, this.startStep, this.t0, metrics, this.batch) + note);
        this.lastLine = { step, at: now };
      }
    }
  }

  close(): void {
    if (this.mode === 'bar') process.stderr.write('\n');
  }
}

interface LoopContext {
  readonly opts: TrainOptions;
  readonly folder: RunFolder;
  readonly step: TrainingStep;
  readonly collective: Collective;
  readonly loader: MultiCropLoader;
  readonly state: TrainState;
  readonly startStep: number;
  readonly stepsPerRun: number;
  readonly log: (line: string) => void;
}

/** Runs the steps from `startStep`: feeds, step, metrics log, progress, periodic and final checkpoints, stop signals. */
async function trainLoop({ opts, folder, step: trainingStep, collective, loader, state, startStep, stepsPerRun, log }: LoopContext): Promise<TrainResult> {
  const cfg = opts.config;
  const b = cfg.batch;
  const shape = stepConfig(cfg);
  const slice = collective.size > 1 ? { rank: collective.rank, ranks: collective.size } : undefined;
  // Rank 0 alone writes the run folder (every rank holds the same state).
  const writes = collective.rank === 0;
  const stop = new StopRequest(log);
  const save = (step: number, position = loader.position()) => {
    if (writes) folder.saveCheckpoint(state, { config: cfg, step, seed: cfg.seed, loader: position, ...(collective.size > 1 ? { ranks: collective.size } : {}) });
  };
  const end = Math.min(cfg.steps, startStep + (opts.stopAfter ?? Infinity));
  const progress = new ProgressReport(!writes ? 'none' : (opts.progress ?? (process.stderr.isTTY ? 'bar' : 'lines')), cfg.steps, startStep, end, b, log);
  const dataBound = new DataBoundMeter();
  let last: Record<string, number> = {};
  let step = startStep;
  try {
    while (step < end && !stop.signal) {
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
        feeds.push(dinoStepFeeds(shape, batch, () => derivePrng(cfg.seed, DROP_PATH_STREAM, at), slice));
        scalars.push(stepScalars(cfg, at));
      }
      const runStart = performance.now();
      const metrics = await trainingStep.run(state, feeds, scalars);
      const stepMs = (performance.now() - runStart) / chunk;
      dataBound.add(dataWaitMs.reduce((a, w) => a + w, 0), performance.now() - chunkStart);
      const bad = metrics.findIndex((m) => !Number.isFinite(m.loss));
      if (bad >= 0) throw new NonFiniteLossError(step + bad + 1, metrics[bad]!.loss, folder.hasCheckpoint() ? folder.checkpointFile : undefined);
      const rows = metrics.map((m, k) => ({ ...m, ...scalars[k]!, step: step + k + 1, step_ms: stepMs, images_per_s: (b * 1000) / stepMs, data_wait_ms: dataWaitMs[k]! }));
      if (writes) folder.appendMetrics(rows);
      last = rows[rows.length - 1]!;
      step += chunk;
      progress.update(step, metrics[chunk - 1]!, dataBound.note());
      // A stop signal reaches the ranks at different steps: they agree (any rank's) before the next step, so all stop
      // after the same step and rank 0's checkpoint is every rank's state.
      if (collective.size > 1) agreeOnStop(stop, collective);
      if (opts.checkpointEvery && step % opts.checkpointEvery === 0 && step < end) {
        await stateToHost(state); // a no-op unless the state lives on the device (WebGPU)
        save(step);
      }
    }
    await stateToHost(state);
    save(step);
  } finally {
    stop.dispose();
    progress.close();
  }
  return { steps: step, lastMetrics: last, state, checkpoint: folder.checkpointFile, interrupted: stop.signal !== undefined, ...(stop.signal ? { stoppedBy: stop.signal } : {}) };
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
    return share > 0.1 ? `  data-bound: ${Math.round(100 * share)}% waiting for images (more loader workers, numWorkers, or cores)` : '';
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

