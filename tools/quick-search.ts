/**
 * The fmnist-quick search harness: trains a config in chunks and evaluates the teacher's weighted k-NN
 * (k=20, T=0.07) after each chunk, so the whole curve is seen. Resume is bit-identical, so chunks = one run.
 *
 * Model selection never touches the test split: by default (`--split val`) training uses the 55,000-image train part
 * of `loadFashionMnist({ split: 'val' })` and k-NN classifies its 5,000 validation images against all 55,000 train
 * images (the k-NN memory bank). `--split test` trains on the 60,000 and classifies the 10,000 test images, as
 * `npm start` reports; use it once, for the chosen setting. `--limit-train` / `--limit-test` shrink the memory
 * bank / evaluated images to evenly spaced class-balanced subsets (a small bank misled an earlier search:
 * docs/fmnist-quick.md), and `--limit-train-final` applies another bank size to the last evaluation only.
 *
 *   npx tsx tools/quick-search.ts --out runs/learn/a --eval-at 0,150,300 --set steps=300 --set lr=0.004 ...
 *
 * `--init-only` evaluates the random-init teacher and stops; `--skip-init-eval` does not evaluate it.
 *
 * Appends one JSON line per evaluation to DIR/curve.jsonl: {step, knn20, n_train, n_test, loss, teacher_entropy,
 * teacher_kl, train_seconds (training wall time so far, compile excluded), eval_seconds, seconds (total)}.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { readFileSync as readBytes } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { applyOverrides, getPreset } from '../runtime/dino/config.ts';
import { train } from '../runtime/dino/train.ts';
import { loadFashionMnist } from '../runtime/data/fashion-mnist.ts';
import { evenlySpaced, extractFeatures, knnClassify, runModel } from '../exports/knn.ts';
import { createSession } from '../runtime/backend.ts';

const { values } = parseArgs({
  options: {
    out: { type: 'string' }, preset: { type: 'string', default: 'fmnist-quick' }, every: { type: 'string', default: '100' },
    'eval-at': { type: 'string' }, split: { type: 'string', default: 'val' }, 'skip-init-eval': { type: 'boolean', default: false }, 'init-only': { type: 'boolean', default: false },
    'limit-train': { type: 'string' }, 'limit-test': { type: 'string' }, 'limit-train-final': { type: 'string' }, set: { type: 'string', multiple: true },
  },
});
const out = values.out!;
const cfg = applyOverrides(getPreset(values.preset!), values.set ?? []);
const split = values.split === 'test' ? 'test' : 'val';
const data = await loadFashionMnist({ split });
const evalAt = values['eval-at']
  ? values['eval-at'].split(',').map(Number).filter((s) => s > 0 && s <= cfg.steps)
  : Array.from({ length: Math.ceil(cfg.steps / Number(values.every)) }, (_, i) => Math.min(cfg.steps, (i + 1) * Number(values.every)));
if (evalAt.at(-1) !== cfg.steps) evalAt.push(cfg.steps);
const optNum = (v: string | undefined) => (v === undefined ? undefined : Number(v));
const t0 = performance.now();
let trainSeconds = 0;

async function evaluate(step: number, m: Record<string, number>): Promise<void> {
  const e0 = performance.now();
  const model = runModel({ run: out });
  const bytes = readBytes(model);
  const session = await createSession(bytes);
  const bank = step === cfg.steps && values['limit-train-final'] !== undefined ? optNum(values['limit-train-final']) : optNum(values['limit-train']);
  const extract = (set: typeof data.train, limit: number | undefined) =>
    extractFeatures(bytes, { channels: data.channels, height: data.height, width: data.width, set, indices: evenlySpaced(set.count, limit) }, { session });
  const trainF = await extract(data.train, bank);
  const testF = await extract(data.test, optNum(values['limit-test']));
  await session.release();
  const r = await knnClassify(trainF, testF, { ks: [20], numClasses: 10 });
  const line = {
    step, split, knn20: r.top1['20'], n_train: r.n_train, n_test: r.n_test, loss: m['loss'], teacher_entropy: m['teacher_entropy'],
    teacher_kl: m['teacher_kl'], train_seconds: +trainSeconds.toFixed(1), eval_seconds: +((performance.now() - e0) / 1000).toFixed(1),
    seconds: +((performance.now() - t0) / 1000).toFixed(1),
  };
  appendFileSync(join(out, 'curve.jsonl'), JSON.stringify(line) + '\n');
  console.log(JSON.stringify(line));
}

/** Training wall time of a chunk: the run's own per-step times (compile and checkpoint excluded). */
function stepSeconds(from: number): number {
  const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { step: number; step_ms: number });
  return lines.filter((l) => l.step > from).reduce((s, l) => s + l.step_ms, 0) / 1000;
}

let done = 0;
if (!existsSync(join(out, 'checkpoint.safetensors'))) {
  await train({ config: cfg, out, dataset: data, stopAfter: 0, progress: 'none', log: () => {} });
  if (!values['skip-init-eval']) await evaluate(0, {}); // the random-init teacher
  if (values['init-only']) process.exit(0);
} else {
  const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').filter(Boolean);
  done = metrics.length ? (JSON.parse(metrics.at(-1)!) as { step: number }).step : 0;
  trainSeconds = stepSeconds(0);
}
for (const target of evalAt) {
  if (target <= done) continue;
  const r = await train({ config: cfg, out, dataset: data, resume: true, stopAfter: target - done, progress: 'none', log: () => {} });
  trainSeconds += stepSeconds(done);
  done = r.steps;
  await evaluate(done, r.lastMetrics);
}
