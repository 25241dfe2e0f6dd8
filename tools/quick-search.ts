/**
 * The fmnist-quick search harness: trains a config in chunks and evaluates the teacher's weighted k-NN
 * (k=20, T=0.07) on a fixed class-balanced subset after each chunk, so the whole curve is seen (DINO can
 * dip below the random-init teacher before it rises). Resume is bit-identical, so chunks = one run.
 *
 *   npx tsx tools/quick-search.ts --out runs/search/a --every 100 [--limit-train 5000 --limit-test 2000] --set steps=500 --set lr=0.002 ...
 *
 * Appends one JSON line per evaluation to DIR/curve.jsonl: {step, knn20, loss, teacher_entropy, teacher_kl, seconds}.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { applyOverrides, getPreset } from '../runtime/dino/config.ts';
import { train } from '../runtime/dino/train.ts';
import { loadFashionMnist } from '../runtime/data/fashion-mnist.ts';
import { knnEvaluate } from '../exports/knn.ts';

const { values } = parseArgs({
  options: {
    out: { type: 'string' }, preset: { type: 'string', default: 'fmnist-quick' }, every: { type: 'string', default: '100' },
    'limit-train': { type: 'string', default: '5000' }, 'limit-test': { type: 'string', default: '2000' }, set: { type: 'string', multiple: true },
  },
});
const out = values.out!;
const cfg = applyOverrides(getPreset(values.preset!), values.set ?? []);
const every = Number(values.every);
const data = await loadFashionMnist();
const t0 = performance.now();
const evaluate = async (step: number, m: Record<string, number>) => {
  const r = await knnEvaluate({ run: out, limitTrain: Number(values['limit-train']), limitTest: Number(values['limit-test']), ks: [20], save: false });
  const line = { step, knn20: r.result.top1['20'], loss: m['loss'], teacher_entropy: m['teacher_entropy'], teacher_kl: m['teacher_kl'], seconds: (performance.now() - t0) / 1000 };
  appendFileSync(join(out, 'curve.jsonl'), JSON.stringify(line) + '\n');
  console.log(JSON.stringify(line));
};
let done = 0;
if (!existsSync(join(out, 'checkpoint.safetensors'))) {
  // step 0: the random-init teacher
  await train({ config: cfg, out, dataset: data, stopAfter: 0, progress: 'none', log: () => {} });
  await evaluate(0, {});
}
else done = JSON.parse(readFileSync(join(out, 'curve.jsonl'), 'utf8').trim().split('\n').at(-1)!).step;
while (done < cfg.steps) {
  const r = await train({ config: cfg, out, dataset: data, resume: true, stopAfter: every, progress: 'none', log: () => {} });
  done = r.steps;
  await evaluate(done, r.lastMetrics);
}
