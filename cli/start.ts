/**
 * `npm start`: the embedded default job. Trains `fmnist-quick` on Fashion-MNIST for its budget while scoring the
 * teacher at 0, 25, 50, 75 and 100% of the steps (`trainCurve`, exports/evaluation/curve.ts), exports the teacher, and reports
 * weighted k-NN (k=20, T=0.07) and a linear probe next to the same evaluations of the random-init teacher and of raw
 * pixels.
 *
 * Two yardsticks. The headline figures use the full splits: the 10,000 test images against all 60,000 train images
 * (the k-NN memory bank, and the probe's training set, on the features k-NN extracted). The full train split
 * matters: against 10,000 or 3,000 train images the short run's gain over the random-init teacher once turned into a
 * loss (docs/fmnist-quick.md). The curve during training uses a cheaper fixed one, `CURVE_YARDSTICK`: a
 * class-balanced bank of 10,000 train images against 5,000 test images, the same for every point, the random-init
 * teacher (step 0) and raw pixels, so the curve compares with itself (its absolute values sit below the headline's).
 * The curve costs about 70 s on a quiet 2-core CPU (five points of 15,000 images at ~1,450 images/s, raw pixels,
 * four restarts of the training loop), the three linear probes on the full splits ~5-15 s (bench/RESULTS.md).
 *
 * Writes to the run folder: config.json, metrics.jsonl, checkpoint.safetensors, teacher.onnx, knn.json, curve.json,
 * summary.txt, report.html, and random-init/ (the step-0 checkpoint the full-split random-init figures use).
 */
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runFile } from '../runtime/dino/run-folder.ts';
import {
  CURVE_PROBE, CURVE_YARDSTICK, type CurveFile, type FeatureSet, type KnnResult, curveSteps, describeYardstick, formatCurveTable, knnEvaluate, rawPixelFeatures, runNormalization,
  knnClassify, scoreRawPixels, trainCurve, trainLinearProbe, writeCurve, writeReport,
} from '../exports/index.ts';
import { loadFashionMnist } from '../runtime/data/fashion-mnist.ts';
import { withValues } from '../runtime/dino/config.ts';
import { fashionMnistPresetNames, getPreset } from '../runtime/dino/presets.ts';
import { train } from '../runtime/dino/train.ts';
import type { Dataset } from '../runtime/data/dataset.ts';
import { UsageError, defineCommand } from './args.ts';

/** Marks a folder as made by `dino start`, so a later `dino start` may replace it (and only such a folder). */
const MARKER = '.dino-start';

/**
 * Makes `out` ready for a fresh default job: a missing or empty folder is used, a folder that an earlier `dino start`
 * made (it holds the marker) is cleared; anything else is refused, so a typo in --out never deletes a user's files.
 */
export function prepareStartFolder(out: string): void {
  if (existsSync(out) && readdirSync(out).length > 0) {
    if (!existsSync(join(out, MARKER))) {
      throw new UsageError(`${out} exists and was not made by dino start; nothing was deleted. Choose another --out, or remove it yourself`, 'start');
    }
    rmSync(out, { recursive: true, force: true });
  }
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, MARKER), 'made by `dino start`; a later `dino start --out` with this folder replaces it\n');
}

/** One row of the headline table: k-NN top-1 (k = 20) and linear-probe top-1, in percent. */
export interface HeadlineRow {
  readonly knn: KnnResult;
  readonly linear: number;
}

/**
 * summary.txt (and stdout): the full-split table (trained teacher, random init, raw pixels), the curve table on its
 * yardstick, and the trained teacher's k-NN table for every k.
 */
export function startSummary(r: { steps: number; trained: HeadlineRow; random: HeadlineRow; raw: HeadlineRow; curve: CurveFile; knnTable: string }): string {
  const pct = (v: number) => `${v.toFixed(2)}%`.padStart(8);
  const row = (name: string, h: HeadlineRow) => `  ${name.padEnd(26)}${pct(h.knn.top1['20']!)}${pct(h.linear)}`;
  return [
    `top-1 on the full splits: ${r.trained.knn.n_test} test images; weighted k-NN (k=20, T=0.07) against ${r.trained.knn.n_train} train images, linear probe trained on their features:`,
    `  ${''.padEnd(26)}${'k-NN'.padStart(8)}${'linear'.padStart(8)}`,
    row(`DINO teacher, ${r.steps} steps`, r.trained),
    row('random-init teacher', r.random),
    row('raw pixels', r.raw),
    '', formatCurveTable(r.curve),
    '', r.knnTable,
  ].join('\n');
}

/** The probe of `train` / `test` features with the curve's settings; `seconds` adds its time. */
async function probe(train: FeatureSet, test: FeatureSet, seconds: { total: number }): Promise<number> {
  const t0 = performance.now();
  const r = await trainLinearProbe(train, test, { ...CURVE_PROBE, numClasses: 10 });
  seconds.total += (performance.now() - t0) / 1000;
  return r.top1;
}


export const startCommand = defineCommand(
  {
    name: 'start',
    summary: 'The default job: train DINO (fmnist-quick, or --preset) on Fashion-MNIST scoring the teacher during training, export it, k-NN and linear probe against the random-init teacher and raw pixels.',
    options: {
      out: { kind: 'string', default: 'runs/start', placeholder: 'DIR', help: 'run folder; replaced when an earlier dino start made it, refused otherwise' },
      preset: { kind: 'choice', choices: fashionMnistPresetNames(), help: 'fmnist-quick (default, ~9 min of training on a 2-core CPU), fmnist-long (~1 h), or DINO\'s defaults at 28 px' },
      steps: { kind: 'int', min: 1, help: 'training steps (default: the preset\'s)' },
      seed: { kind: 'int', min: 0, help: 'the run\'s seed (default: the preset\'s, 0)' },
      'limit-train': { kind: 'int', min: 1, placeholder: 'N', help: 'k-NN memory / probe training set of N evenly spaced train images (default: all 60,000; the curve uses at most 10,000)' },
      'limit-test': { kind: 'int', min: 1, placeholder: 'N', help: 'N evenly spaced test images (default: all 10,000; the curve uses at most 5,000)' },
    },
  },
  async ({ options: o }) => {
    const out = o.out;
    const config = withValues(getPreset(o.preset ?? 'fmnist-quick'), { ...(o.steps !== undefined ? { steps: o.steps } : {}), ...(o.seed !== undefined ? { seed: o.seed } : {}) });
    prepareStartFolder(out);
    const initRun = join(out, 'random-init');
    console.log(`dino-ts default job: DINO (${config.preset}) on Fashion-MNIST, ${config.steps} steps of ${config.batch} images -> ${out}`);
    const data: Dataset = await loadFashionMnist();
    const quiet = { progress: 'none', log: () => {} } as const;
    await train({ config, out: initRun, dataset: data, stopAfter: 0, ...quiet }); // the teacher before any step

    const yardstick = {
      ...CURVE_YARDSTICK,
      limitTrain: Math.min(CURVE_YARDSTICK.limitTrain!, o['limit-train'] ?? Infinity),
      limitTest: Math.min(CURVE_YARDSTICK.limitTest!, o['limit-test'] ?? Infinity),
    };
    const described = describeYardstick(yardstick, data);
    console.log(`scoring the teacher at steps ${curveSteps(config.steps).join(', ')} on ${described.n_train} train / ${described.n_test} test images (k-NN and linear probe)`);
    const log = (msg: string) => process.stderr.write(`  ${msg}\n`);
    const pct = (v: number | null) => (v === null ? '–' : `${v.toFixed(2)}%`);
    const c = await trainCurve({
      config, out, dataset: data, at: curveSteps(config.steps), yardstick,
      onPoint: (p) => console.log(`  step ${p.step}${p.step === 0 ? ' (random init)' : ''}: k-NN ${pct(p.knn_top1)}, linear ${pct(p.linear_top1)} (${p.eval_seconds.toFixed(1)} s to score)`),
    });
    if (c.interrupted || !c.result) {
      console.log(`interrupted: the run stopped at its last checkpoint in ${out}; continue it with npx dino train --resume ${out}`);
      return;
    }
    const r = c.result;
    const m = r.lastMetrics;
    console.log(`trained ${r.steps} steps: loss ${m['loss']?.toFixed(4)}, teacher entropy ${m['teacher_entropy']?.toFixed(3)} (log K = ${Math.log(config.head.outDim).toFixed(3)}), teacher KL to batch mean ${m['teacher_kl']?.toFixed(3)}`);
    const r0 = performance.now();
    const rawCurve = await scoreRawPixels(data, yardstick, runNormalization(config));
    const curve: CurveFile = { yardstick: described, points: c.points, raw_pixels: rawCurve };
    writeCurve(out, curve);
    const curveSeconds = c.points.reduce((s, p) => s + p.eval_seconds, 0) + (performance.now() - r0) / 1000;

    const limits = {
      ...(o['limit-train'] !== undefined ? { limitTrain: o['limit-train'] } : {}),
      ...(o['limit-test'] !== undefined ? { limitTest: o['limit-test'] } : {}),
    };
    const probeSeconds = { total: 0 };
    const trained = await knnEvaluate({ run: out, ...limits, keepFeatures: true, log });
    const random = await knnEvaluate({ run: initRun, ...limits, save: false, keepFeatures: true, log });
    // Raw pixels: one set of features for both k-NN and the probe.
    const rawTrain = rawPixelFeatures(data, data.train, { ...runNormalization(config), limit: limits.limitTrain });
    const rawTest = rawPixelFeatures(data, data.test, { ...runNormalization(config), limit: limits.limitTest });
    const raw = await knnClassify(rawTrain, rawTest, { numClasses: data.classes.length });
    const summary = startSummary({
      steps: r.steps,
      trained: { knn: trained.result, linear: await probe(trained.features!.train, trained.features!.test, probeSeconds) },
      random: { knn: random.result, linear: await probe(random.features!.train, random.features!.test, probeSeconds) },
      raw: { knn: raw, linear: await probe(rawTrain, rawTest, probeSeconds) },
      curve, knnTable: trained.table,
    });
    console.log(summary);
    console.log(`\n(scoring the curve took ${curveSeconds.toFixed(0)} s; the three linear probes on the full splits ${probeSeconds.total.toFixed(0)} s)`);
    writeFileSync(runFile(out, 'summary'), summary + '\n');
    const report = await writeReport({ run: out, knn: trained.result, curve, log });
    console.log(`\nrun folder: ${out} (teacher.onnx, checkpoint.safetensors, metrics.jsonl, knn.json, curve.json, summary.txt, report: ${report})`);
  },
);
