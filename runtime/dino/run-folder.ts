/**
 * A training run's folder (docs/ARCHITECTURE.md, "Runs and resume"): the one owner of its file names, of how they
 * are written (atomically, runtime/io/atomic.ts) and read (checked), of the resume check, and of the metrics log.
 *
 * - `config.json`: the TrainConfig, checked when read (`checkTrainConfig`).
 * - `checkpoint.safetensors`: the whole training state with its metadata (runtime/dino/checkpoint.ts).
 * - `metrics.jsonl`: one JSON row per step; on resume it is cut back to the checkpoint's step, so the steps a
 *   killed run did after its last checkpoint (and a torn last line) are not counted twice.
 * - `data-index.tsv`: the image folder's files the run trains on (runtime/data/folder-index.ts), read back as
 *   recorded on resume, so a resumed run sees the same files in the same order.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BackboneConfig } from '../../models/presets.ts';
import type { TrainState } from '../state.ts';
import { writeBytesAtomic } from '../io/atomic.ts';
import { readSafetensorsMetadata } from '../io/safetensors.ts';
import { type CheckpointMeta, type LoadedCheckpoint, loadCheckpoint, readCheckpointMeta, saveCheckpoint } from './checkpoint.ts';
import { type ConfigChange, type TrainConfig, checkTrainConfig, configDifferences, formatConfigChange, resumableKey } from './config.ts';

/**
 * The files of a run folder, by role: those training writes, then those its evaluations add (the exported teacher,
 * `dino knn`'s result, the accuracy curve, the report, `dino start`'s summary).
 */
export const RUN_FILES = {
  config: 'config.json', metrics: 'metrics.jsonl', checkpoint: 'checkpoint.safetensors', dataIndex: 'data-index.tsv',
  teacher: 'teacher.onnx', knn: 'knn.json', curve: 'curve.json', report: 'report.html', summary: 'summary.txt',
} as const;

/** DIR's file of `role` (RUN_FILES). */
export function runFile(dir: string, role: keyof typeof RUN_FILES): string {
  return path.join(dir, RUN_FILES[role]);
}

export class RunFolder {
  readonly configFile: string;
  readonly metricsFile: string;
  readonly checkpointFile: string;
  readonly dataIndexFile: string;

  constructor(readonly dir: string) {
    this.configFile = runFile(dir, 'config');
    this.metricsFile = runFile(dir, 'metrics');
    this.checkpointFile = runFile(dir, 'checkpoint');
    this.dataIndexFile = runFile(dir, 'dataIndex');
  }

  hasCheckpoint(): boolean {
    return fs.existsSync(this.checkpointFile);
  }

  hasConfig(): boolean {
    return fs.existsSync(this.configFile);
  }

  /** A new run here would overwrite a checkpoint: refused (a folder whose run stopped before its first checkpoint is not). */
  checkFresh(): void {
    if (this.hasCheckpoint()) throw new RunFolderError({ kind: 'exists', checkpoint: this.checkpointFile });
  }

  /** The run's TrainConfig: config.json, checked; else the checkpoint's metadata. Errors name the path and what to do. */
  readConfig(): TrainConfig<BackboneConfig> {
    if (!fs.existsSync(this.dir) || !fs.statSync(this.dir).isDirectory()) {
      throw new Error(`run folder ${this.dir} does not exist: train one first (npx dino train --out ${this.dir})`);
    }
    if (this.hasConfig()) return checkTrainConfig(this.readConfigJson(), this.configFile);
    const ckpt = this.requireCheckpoint();
    const meta = readSafetensorsMetadata(ckpt)['config']; // the header alone, not the tensors
    if (!meta) throw new Error(`${this.dir} has no ${RUN_FILES.config} and ${ckpt} carries no config metadata: is this a run folder written by \`dino train\`?`);
    return checkTrainConfig(JSON.parse(meta), `the config in ${ckpt}'s metadata`);
  }

  /** config.json as JSON, unchecked (the caller checks it or compares it). */
  private readConfigJson(): unknown {
    try {
      return JSON.parse(fs.readFileSync(this.configFile, 'utf8'));
    } catch (e) {
      throw new Error(`${this.configFile}: not valid JSON (${(e as Error).message}); restore it from the checkpoint's metadata or re-run training`);
    }
  }

  /**
   * How config.json differs from `recorded` (the checkpoint's config, the one a resumed run uses); none when there
   * is no config.json. A hand edit shows here instead of being ignored without a word.
   */
  configDrift(recorded: TrainConfig<BackboneConfig>): ConfigChange[] {
    return this.hasConfig() ? configDifferences(recorded, this.readConfigJson() as TrainConfig) : [];
  }

  writeConfig(cfg: TrainConfig<BackboneConfig>): void {
    fs.mkdirSync(this.dir, { recursive: true });
    writeBytesAtomic(this.configFile, JSON.stringify(cfg, null, 2) + '\n', 'run config');
  }

  /** The checkpoint's file, or an error saying how to get one. */
  requireCheckpoint(): string {
    if (!this.hasCheckpoint()) {
      throw new Error(`${this.checkpointFile} not found: the run has not written a checkpoint yet (one is saved periodically and at the end of training); let it run or resume it with npx dino train --resume ${this.dir}`);
    }
    return this.checkpointFile;
  }

  /** The checkpoint's metadata (config, step, seed, loader position), from its header alone. */
  readCheckpointMeta(): CheckpointMeta {
    return readCheckpointMeta(this.checkpointFile);
  }

  loadCheckpoint(): LoadedCheckpoint {
    return loadCheckpoint(this.checkpointFile);
  }

  saveCheckpoint(state: TrainState, meta: Omit<CheckpointMeta, 'config'> & { readonly config: TrainConfig<BackboneConfig> }): void {
    saveCheckpoint(this.checkpointFile, state, meta);
  }

  /** An empty metrics log for a new run (replacing one left by a run that stopped before its first checkpoint). */
  startMetrics(): void {
    fs.mkdirSync(this.dir, { recursive: true });
    writeBytesAtomic(this.metricsFile, '', 'metrics log');
  }

  appendMetrics(rows: readonly Readonly<Record<string, number>>[]): void {
    if (rows.length) fs.appendFileSync(this.metricsFile, rows.map((r) => JSON.stringify(r) + '\n').join(''));
  }

  /**
   * Keeps the rows up to `step` (the checkpoint a run resumes from): rows of steps after it were trained by a run
   * that was killed before saving them, and the resumed run trains those steps again. A torn line (a kill mid-write)
   * goes too. Returns how many lines were dropped.
   */
  cutMetrics(step: number): number {
    if (!fs.existsSync(this.metricsFile)) return 0;
    const lines = fs.readFileSync(this.metricsFile, 'utf8').split('\n').filter((l) => l.trim() !== '');
    const kept = lines.filter((line) => {
      try {
        const row = JSON.parse(line) as { step?: unknown };
        return typeof row.step === 'number' && row.step <= step;
      } catch {
        return false;
      }
    });
    if (kept.length !== lines.length) writeBytesAtomic(this.metricsFile, kept.map((l) => l + '\n').join(''), 'metrics log');
    return lines.length - kept.length;
  }
}

/**
 * Why `cfg` cannot resume from a checkpoint with `meta`: a key that may not change differs (the schema says which
 * may: `resumableKey`), or the new length is one the run has already passed. Undefined: it can.
 */
export function resumeProblem(meta: CheckpointMeta, cfg: TrainConfig<BackboneConfig>):
  | { readonly kind: 'config-mismatch'; readonly changed: readonly ConfigChange[] }
  | { readonly kind: 'too-short'; readonly done: number; readonly steps: number }
  | undefined {
  const changed = configDifferences(meta.config, cfg).filter((d) => !resumableKey(d.key));
  if (changed.length) return { kind: 'config-mismatch', changed };
  if (cfg.steps <= meta.step && cfg.steps !== meta.config.steps) return { kind: 'too-short', done: meta.step, steps: cfg.steps };
  return undefined;
}

export type RunFolderProblem =
  /** A fresh run would overwrite this checkpoint. */
  | { readonly kind: 'exists'; readonly checkpoint: string }
  /** Resuming with a config that differs from the checkpoint's in keys that may not change. */
  | { readonly kind: 'config-mismatch'; readonly checkpoint: string; readonly config: string; readonly changed: readonly ConfigChange[] }
  /** Resuming with a new length that the run has already passed. */
  | { readonly kind: 'too-short'; readonly checkpoint: string; readonly config: string; readonly done: number; readonly steps: number };

/** A run folder that cannot be used as asked. The message names library options; the CLI words it with its flags (cli/errors.ts). */
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

/** Throws the {@link RunFolderError} for {@link resumeProblem}, if any. */
export function checkResume(folder: RunFolder, meta: CheckpointMeta, cfg: TrainConfig<BackboneConfig>): void {
  const p = resumeProblem(meta, cfg);
  if (p) throw new RunFolderError({ ...p, checkpoint: folder.checkpointFile, config: folder.configFile });
}
