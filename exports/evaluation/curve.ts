/**
 * Learning curves: train a config while evaluating its teacher at chosen steps. Training runs in chunks, `train()`
 * up to the next point (`stopAfter`), then resumed from the checkpoint; resume is bit-identical on CPU, so the
 * chunked run ends with the same checkpoint as an uninterrupted one (test/exports/evaluation/curve.test.ts).
 *
 * Each point is scored on a {@link Yardstick}: weighted k-NN (k = 20, T = 0.07) of evenly spaced test images against
 * a class-balanced, evenly spaced bank of train images, and a linear probe trained on the bank's features and
 * tested on the same images. Labels reach only these evaluations, never training. One yardstick for every point
 * (the random-init teacher at step 0 included) and for raw pixels keeps a curve comparable with itself; a small
 * bank reads lower than the full 60,000 (docs/fmnist-quick.md), so headline figures stay on the full splits.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createSession } from '../../runtime/backend.ts';
import type { Dataset } from '../../runtime/data/dataset.ts';
import { FolderIndex } from '../../runtime/data/folder-index.ts';
import { RunFolder, runFile } from '../../runtime/dino/run-folder.ts';
import type { TrainConfig } from '../../runtime/dino/config.ts';
import { type TrainOptions, type TrainResult, train } from '../../runtime/dino/train.ts';
import { KNN_TEMPERATURE, knnClassify } from './knn.ts';
import { indexEvalFolder } from './eval-data.ts';
import { type FeatureSet, evenlySpaced } from './extract-features.ts';
import { type EvalImages, datasetEvalImages, featureModel, folderEvalImages, imageFeatures } from './features.ts';
import { type PixelNormalization, rawPixelFeatures } from './raw-pixels.ts';
import { type ProbeOptions, trainLinearProbe } from './linear.ts';
import { exportTeacher } from '../export/teacher.ts';

/** How a curve point is scored. */
export interface Yardstick {
  /** Memory bank / probe training set: this many evenly spaced train images (class-balanced on class-major data); all when absent. */
  readonly limitTrain?: number;
  /** Evaluated images: this many evenly spaced test images; all when absent. */
  readonly limitTest?: number;
  /** The k of the weighted k-NN (default 20). */
  readonly k?: number;
  /** The probe's settings, or false for k-NN only. */
  readonly probe?: ProbeOptions | false;
}

/**
 * The linear probe of a curve point: 30 epochs of SGD at lr 0.3 (per 256 images), standardised features. On a
 * bank of 10,000 teacher features it reaches the train accuracy of 100 epochs at lr 0.1 in under a second.
 */
export const CURVE_PROBE: ProbeOptions = { epochs: 30, lr: 0.3 };

/**
 * `npm start`'s yardstick: 10,000 train images (1,000 per class) against 5,000 test images (500 per class), so a point
 * sends 15,000 images through the teacher. Five points and raw pixels: ~70 s at a quiet 2-core CPU's ~1,450 images/s
 * (bench/RESULTS.md, "default job"). A smaller bank risks the ordering error of a 3,000-image one
 * (docs/fmnist-quick.md); all 10,000 test images would bring the curve near 90 s.
 */
export const CURVE_YARDSTICK: Yardstick = { limitTrain: 10_000, limitTest: 5_000, k: 20, probe: CURVE_PROBE };

/** Top-1 accuracies (percent) of one set of features on a yardstick. */
export interface YardstickScore {
  readonly knn_top1: number;
  /** Null when the yardstick has no probe. */
  readonly linear_top1: number | null;
  readonly n_train: number;
  readonly n_test: number;
}

/** One evaluation during training. */
export interface CurvePoint extends YardstickScore {
  readonly step: number;
  /** Training wall time up to this step: the run's own step times summed (compile, checkpoints and evaluation excluded). */
  readonly train_seconds: number;
  /** The step's metrics (null at step 0, before any step). */
  readonly loss: number | null;
  readonly teacher_entropy: number | null;
  readonly teacher_kl: number | null;
  /** What scoring this point cost (export, features, k-NN, probe). */
  readonly eval_seconds: number;
}

/** DIR/curve.json. */
export interface CurveFile {
  readonly yardstick: { readonly n_train: number; readonly n_test: number; readonly k: number; readonly temperature: number; readonly probe: ProbeOptions | false };
  /** The teacher at each point; step 0 is the random-init teacher. */
  readonly points: readonly CurvePoint[];
  /** Raw pixels on the same yardstick. */
  readonly raw_pixels?: YardstickScore;
}

/** Weighted k-NN and the probe of `train` (the bank) and `test` features on `y`. */
export async function scoreFeatures(train: FeatureSet, test: FeatureSet, y: Yardstick, numClasses?: number): Promise<YardstickScore> {
  const k = y.k ?? 20;
  const classes = numClasses ? { numClasses } : {};
  const knn = await knnClassify(train, test, { ks: [k], ...classes });
  const probe = y.probe === false ? null : await trainLinearProbe(train, test, { ...CURVE_PROBE, ...y.probe, ...classes });
  return { knn_top1: knn.top1[String(k)]!, linear_top1: probe ? probe.top1 : null, n_train: knn.n_train, n_test: knn.n_test };
}

/**
 * Scores an exported teacher (ONNX bytes) on `data` with `y`: the training data, in memory (Fashion-MNIST) or an
 * indexed folder, whose images are then streamed through DINO's eval transform (features.ts), only the chosen rows
 * decoded and only their features kept.
 */
export async function scoreModel(model: Uint8Array, data: Dataset | FolderIndex, y: Yardstick): Promise<YardstickScore> {
  const shape = featureModel(model, 'the teacher');
  const images: EvalImages = data instanceof FolderIndex ? folderEvalImages(indexEvalFolder(data), shape) : datasetEvalImages(data, shape);
  const session = await createSession(model);
  try {
    const extract = (split: EvalImages['train'], limit: number | undefined) => imageFeatures(session, shape, split.images(evenlySpaced(split.count, limit)), { batch: 256 });
    const bank = await extract(images.train, y.limitTrain);
    const test = await extract(images.test, y.limitTest);
    return await scoreFeatures(bank, test, y, images.classes.length || undefined);
  } finally {
    await session.release();
  }
}

/**
 * Raw pixels, normalised with `norm` (the run's: `runNormalization`), on `data` with `y`. The pixels are the features
 * here, so this takes an in-memory dataset (Fashion-MNIST: 60,000 x 784 bytes); a yardstick's limits bound the
 * float copies it makes.
 */
export async function scoreRawPixels(data: Dataset, y: Yardstick, norm: PixelNormalization): Promise<YardstickScore> {
  const bank = rawPixelFeatures(data, data.train, { mean: norm.mean, std: norm.std, limit: y.limitTrain });
  const test = rawPixelFeatures(data, data.test, { mean: norm.mean, std: norm.std, limit: y.limitTest });
  return scoreFeatures(bank, test, y, data.classes.length || undefined);
}

/** `fractions` of a run of `steps` as whole steps, sorted, without repeats (default: 0, 25, 50, 75 and 100%). */
export function curveSteps(steps: number, fractions: readonly number[] = [0, 0.25, 0.5, 0.75, 1]): number[] {
  return [...new Set(fractions.map((f) => Math.round(f * steps)))].filter((s) => s >= 0 && s <= steps).sort((a, b) => a - b);
}

export interface TrainCurveOptions {
  readonly config: TrainConfig;
  /** The run folder, as for `train()`; DIR/teacher.onnx holds the teacher of the latest point. */
  readonly out: string;
  /**
   * Training data; its train split is the bank, its test split is evaluated: in memory (Fashion-MNIST) or an indexed
   * folder (`indexImageFolder`, with a holdout for a test split), streamed as train() streams it.
   */
  readonly dataset: Dataset | FolderIndex;
  /** Steps to evaluate at; 0 is the random-init teacher. Training stops at the last one. */
  readonly at: readonly number[];
  /** The yardstick, or one per step (e.g. a larger bank for the last point). */
  readonly yardstick: Yardstick | ((step: number) => Yardstick);
  /** Continue the run in `out` from its checkpoint; points at or before its step are skipped. */
  readonly resume?: boolean;
  /** Called after each point, as it is scored (to print it or append it to a file). */
  readonly onPoint?: (point: CurvePoint) => void;
  /** Passed to every `train()` call. */
  readonly trainOptions?: Pick<TrainOptions, 'progress' | 'log' | 'threads' | 'ep' | 'recompute' | 'stepsPerRun'>;
}

export interface TrainCurveResult {
  readonly points: CurvePoint[];
  /** The last `train()` call's result (undefined when no step was trained, e.g. only step 0 was asked for). */
  readonly result?: TrainResult;
  /** The run was interrupted (Ctrl-C): it stopped at its last checkpoint, later points were not scored. */
  readonly interrupted: boolean;
}

/** Sum of the per-step times in DIR/metrics.jsonl up to `step`, in seconds. */
function stepSeconds(out: string, step: number): number {
  const file = new RunFolder(out).metricsFile;
  if (!fs.existsSync(file)) return 0;
  let ms = 0;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    let row: { step?: number; step_ms?: number };
    try {
      row = JSON.parse(line) as typeof row;
    } catch {
      continue; // a torn last line of a killed run
    }
    if ((row.step ?? Infinity) <= step) ms += row.step_ms ?? 0;
  }
  return ms / 1000;
}

/** Trains `config` in `out` up to the last of `at`, scoring the teacher at each of `at`. */
export async function trainCurve(opts: TrainCurveOptions): Promise<TrainCurveResult> {
  const { config, out, dataset } = opts;
  const at = [...new Set(opts.at)].sort((a, b) => a - b);
  const bad = at.find((s) => !(Number.isInteger(s) && s >= 0 && s <= config.steps));
  if (bad !== undefined) throw new Error(`curve steps must be integers from 0 to ${config.steps} (the run's steps), got ${bad}`);
  const yardstick = typeof opts.yardstick === 'function' ? opts.yardstick : () => opts.yardstick as Yardstick;
  let done = opts.resume ? new RunFolder(out).readCheckpointMeta().step : 0;
  let started = opts.resume === true;
  let result: TrainResult | undefined;
  const points: CurvePoint[] = [];
  for (const target of at) {
    if (started && target <= done) continue;
    // The first call starts the run (a 0-step call only writes the initial checkpoint), later ones resume it.
    result = await train({ config, out, dataset, stopAfter: target - done, ...(started ? { resume: true } : {}), ...opts.trainOptions });
    started = true;
    done = result.steps;
    if (result.interrupted) return { points, result, interrupted: true };
    const e0 = performance.now();
    const model = runFile(out, 'teacher');
    exportTeacher({ run: out, out: model });
    const score = await scoreModel(fs.readFileSync(model), dataset, yardstick(done));
    const m = result.lastMetrics;
    const metric = (k: string) => (done > 0 && typeof m[k] === 'number' ? m[k]! : null);
    const ms = (seconds: number) => Math.round(seconds * 1000) / 1000;
    const point: CurvePoint = {
      step: done, train_seconds: ms(stepSeconds(out, done)), ...score,
      loss: metric('loss'), teacher_entropy: metric('teacher_entropy'), teacher_kl: metric('teacher_kl'),
      eval_seconds: ms((performance.now() - e0) / 1000),
    };
    points.push(point);
    opts.onPoint?.(point);
  }
  return { points, ...(result ? { result } : {}), interrupted: false };
}

/** The yardstick's description for DIR/curve.json. */
export function describeYardstick(y: Yardstick, data: Dataset | FolderIndex): CurveFile['yardstick'] {
  return {
    n_train: evenlySpaced(data.train.count, y.limitTrain).length, n_test: evenlySpaced(data.test.count, y.limitTest).length,
    k: y.k ?? 20, temperature: KNN_TEMPERATURE, probe: y.probe === false ? false : { ...CURVE_PROBE, ...y.probe },
  };
}

export function writeCurve(dir: string, curve: CurveFile): string {
  const file = runFile(dir, 'curve');
  fs.writeFileSync(file, JSON.stringify(curve, null, 2) + '\n');
  return file;
}

/** DIR/curve.json, or undefined when there is none. */
export function readCurve(dir: string): CurveFile | undefined {
  const file = runFile(dir, 'curve');
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as CurveFile) : undefined;
}

const pct = (v: number | null | undefined) => (typeof v === 'number' ? `${v.toFixed(2)}%` : '–').padStart(7);

/**
 * The curve as a fixed-width table: step, minutes of training, k-NN and linear top-1, then raw pixels on the same
 * yardstick. Step 0 is marked as the random-init teacher.
 */
export function formatCurveTable(curve: CurveFile): string {
  const y = curve.yardstick;
  const lines = [
    `during training, on ${y.n_train} evenly spaced train images (k-NN bank, probe training set) / ${y.n_test} test images:`,
    `  ${'step'.padStart(6)}  ${'minutes'.padStart(7)}  ${'k-NN'.padStart(7)}  ${'linear'.padStart(7)}`,
  ];
  for (const p of curve.points) {
    lines.push(`  ${String(p.step).padStart(6)}  ${(p.train_seconds / 60).toFixed(1).padStart(7)}  ${pct(p.knn_top1)}  ${pct(p.linear_top1)}${p.step === 0 ? '  random-init teacher' : ''}`);
  }
  if (curve.raw_pixels) lines.push(`  ${'raw pixels'.padEnd(15)}  ${pct(curve.raw_pixels.knn_top1)}  ${pct(curve.raw_pixels.linear_top1)}`);
  return lines.join('\n');
}
