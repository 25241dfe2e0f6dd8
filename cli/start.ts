/**
 * `npm start`: the embedded default job. Trains `fmnist-quick` on Fashion-MNIST for its budget, exports
 * the teacher, and reports weighted k-NN (k=20, T=0.07, the 10,000 test images against all 60,000 train
 * images) next to the same evaluation of the random-init teacher and of raw pixels. The full train split
 * matters: against 10,000 or 3,000 train images the short run's gain over the random-init teacher turns
 * into a loss (docs/fmnist-quick.md), so a smaller memory bank would misreport it.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { knnEvaluate, rawPixelKnn, writeReport } from '../exports/index.ts';
import { loadFashionMnist } from '../runtime/data/fashion-mnist.ts';
import { applyOverrides, getPreset } from '../runtime/dino/config.ts';
import { train } from '../runtime/dino/train.ts';
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

export const startCommand = defineCommand(
  {
    name: 'start',
    summary: 'The default job: train DINO (fmnist-quick) on Fashion-MNIST, export the teacher, k-NN against the random-init teacher and raw pixels.',
    options: {
      out: { kind: 'string', default: 'runs/start', placeholder: 'DIR', help: 'run folder; replaced when an earlier dino start made it, refused otherwise' },
      steps: { kind: 'int', min: 1, help: 'training steps (default: the preset\'s)' },
      'limit-train': { kind: 'int', min: 1, placeholder: 'N', help: 'k-NN memory of N evenly spaced train images (default: all 60,000)' },
      'limit-test': { kind: 'int', min: 1, placeholder: 'N', help: 'N evenly spaced test images (default: all 10,000)' },
    },
  },
  async ({ options: o }) => {
    const out = o.out;
    const config = applyOverrides(getPreset('fmnist-quick'), o.steps !== undefined ? [`steps=${o.steps}`] : []);
    prepareStartFolder(out);
    const initRun = join(out, 'random-init');
    console.log(`dino-ts default job: DINO (${config.preset}) on Fashion-MNIST, ${config.steps} steps of ${config.batch} images -> ${out}`);
    const data = await loadFashionMnist();
    const quiet = { progress: 'none', log: () => {} } as const;
    await train({ config, out: initRun, dataset: data, stopAfter: 0, ...quiet }); // the teacher before any step
    const r = await train({ config, out, dataset: data });
    const m = r.lastMetrics;
    console.log(`trained ${r.steps} steps: loss ${m['loss']?.toFixed(4)}, teacher entropy ${m['teacher_entropy']?.toFixed(3)} (log K = ${Math.log(config.head.outDim).toFixed(3)}), teacher KL to batch mean ${m['teacher_kl']?.toFixed(3)}`);

    const limits = {
      ...(o['limit-train'] !== undefined ? { limitTrain: o['limit-train'] } : {}),
      ...(o['limit-test'] !== undefined ? { limitTest: o['limit-test'] } : {}),
    };
    const log = (msg: string) => process.stderr.write(`  ${msg}\n`);
    const trained = await knnEvaluate({ run: out, ...limits, log });
    const random = await knnEvaluate({ run: initRun, ...limits, save: false, log });
    const raw = await rawPixelKnn(data, { ...limits, mean: config.augment.mean, std: config.augment.std });
    const row = (name: string, top1: Record<string, number>) => `  ${name.padEnd(26)} ${top1['20']!.toFixed(2).padStart(6)}%`;
    const summary = [
      `weighted k-NN top-1 (k=20, T=0.07), ${trained.result.n_test} test images vs ${trained.result.n_train} train images:`,
      row(`DINO teacher, ${r.steps} steps`, trained.result.top1),
      row('random-init teacher', random.result.top1),
      row('raw pixels', raw.top1),
      '', trained.table,
    ].join('\n');
    console.log(summary);
    writeFileSync(join(out, 'summary.txt'), summary + '\n');
    const report = await writeReport({ run: out, knn: trained.result, log });
    console.log(`\nrun folder: ${out} (teacher.onnx, checkpoint.safetensors, metrics.jsonl, knn.json, report: ${report})`);
  },
);
