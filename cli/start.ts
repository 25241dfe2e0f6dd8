/**
 * `npm start`: the embedded default job. Trains `fmnist-quick` on Fashion-MNIST for its budget, exports
 * the teacher, and reports weighted k-NN (k=20, T=0.07, the 10,000 test images against all 60,000 train
 * images) next to the same evaluation of the random-init teacher and of raw pixels. The full train split
 * matters: against 10,000 or 3,000 train images the short run's gain over the random-init teacher turns
 * into a loss (docs/fmnist-quick.md), so a smaller memory bank would misreport it.
 */
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { knnEvaluate, rawPixelKnn, writeReport } from '../exports/index.ts';
import { loadFashionMnist } from '../runtime/data/fashion-mnist.ts';
import { applyOverrides, getPreset } from '../runtime/dino/config.ts';
import { train } from '../runtime/dino/train.ts';

export async function startCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { out: { type: 'string', default: 'runs/start' }, steps: { type: 'string' }, 'limit-train': { type: 'string' }, 'limit-test': { type: 'string' } },
  });
  const out = values.out!;
  const config = applyOverrides(getPreset('fmnist-quick'), values.steps ? [`steps=${values.steps}`] : []);
  // The default job is a demo: it starts over each time rather than refusing an existing folder.
  if (existsSync(out)) rmSync(out, { recursive: true, force: true });
  const initRun = join(out, 'random-init');
  console.log(`dino-ts default job: DINO (${config.preset}) on Fashion-MNIST, ${config.steps} steps of ${config.batch} images -> ${out}`);
  const data = await loadFashionMnist();
  const quiet = { progress: false, log: () => {} };
  await train({ config, out: initRun, dataset: data, stopAfter: 0, ...quiet }); // the teacher before any step
  const r = await train({ config, out, dataset: data, progress: true });
  const m = r.lastMetrics;
  console.log(`trained ${r.steps} steps: loss ${m['loss']?.toFixed(4)}, teacher entropy ${m['teacher_entropy']?.toFixed(3)} (log K = ${Math.log(config.head.outDim).toFixed(3)}), teacher KL to batch mean ${m['teacher_kl']?.toFixed(3)}`);

  const limits = {
    ...(values['limit-train'] ? { limitTrain: Number(values['limit-train']) } : {}),
    ...(values['limit-test'] ? { limitTest: Number(values['limit-test']) } : {}),
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
}
