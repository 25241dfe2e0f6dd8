/**
 * The fmnist-quick search harness: trains a config with `trainCurve` (exports/evaluation/curve.ts), which trains in chunks and
 * scores the teacher after each, weighted k-NN (k=20, T=0.07) and a linear probe on the bank's features, so the whole
 * curve is seen. Resume is bit-identical, so chunks = one run. An existing run folder is continued.
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
 * `--init-only` evaluates the random-init teacher and stops; `--skip-init-eval` does not evaluate it; `--knn-only`
 * leaves the linear probe out. `--threads N` trains with N intra-op threads (default: ORT's, one per core), e.g. 1 to
 * run two searches side by side on a 2-core machine.
 *
 * Appends one JSON line per evaluation to DIR/curve.jsonl: a `CurvePoint` (step, knn_top1, linear_top1, n_train,
 * n_test, loss, teacher_entropy, teacher_kl, train_seconds: training wall time so far, compile excluded,
 * eval_seconds) with the split and seconds (total). Lines written before the curve module name the k-NN `knn20`.
 */
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { applyOverrides } from '../runtime/dino/config.ts';
import { getPreset } from '../runtime/dino/presets.ts';
import { RunFolder } from '../runtime/dino/run-folder.ts';
import { loadFashionMnist } from '../runtime/data/fashion-mnist.ts';
import { CURVE_PROBE, type Yardstick, trainCurve } from '../exports/evaluation/curve.ts';

const { values } = parseArgs({
  options: {
    out: { type: 'string' }, preset: { type: 'string', default: 'fmnist-quick' }, every: { type: 'string', default: '100' },
    'eval-at': { type: 'string' }, split: { type: 'string', default: 'val' }, 'skip-init-eval': { type: 'boolean', default: false }, 'init-only': { type: 'boolean', default: false },
    'knn-only': { type: 'boolean', default: false }, threads: { type: 'string' },
    'limit-train': { type: 'string' }, 'limit-test': { type: 'string' }, 'limit-train-final': { type: 'string' }, set: { type: 'string', multiple: true },
  },
});
const out = values.out!;
const cfg = applyOverrides(getPreset(values.preset!), values.set ?? []);
const split = values.split === 'test' ? 'test' : 'val';
const data = await loadFashionMnist({ split });
let evalAt = values['eval-at']
  ? values['eval-at'].split(',').map(Number).filter((s) => s > 0 && s <= cfg.steps)
  : Array.from({ length: Math.ceil(cfg.steps / Number(values.every)) }, (_, i) => Math.min(cfg.steps, (i + 1) * Number(values.every)));
if (evalAt.at(-1) !== cfg.steps) evalAt.push(cfg.steps);
if (!values['skip-init-eval']) evalAt.unshift(0); // the random-init teacher
if (values['init-only']) evalAt = [0];
const optNum = (v: string | undefined) => (v === undefined ? undefined : Number(v));
const yardstick = (step: number): Yardstick => {
  const bank = step === cfg.steps && values['limit-train-final'] !== undefined ? values['limit-train-final'] : values['limit-train'];
  const limitTrain = optNum(bank), limitTest = optNum(values['limit-test']);
  return { k: 20, probe: values['knn-only'] ? false : CURVE_PROBE, ...(limitTrain !== undefined ? { limitTrain } : {}), ...(limitTest !== undefined ? { limitTest } : {}) };
};
const t0 = performance.now();
await trainCurve({
  config: cfg, out, dataset: data, at: evalAt, yardstick, resume: new RunFolder(out).hasCheckpoint(),
  trainOptions: { progress: 'none', log: () => {}, ...(values.threads !== undefined ? { threads: Number(values.threads) } : {}) },
  onPoint: (p) => {
    const line = { ...p, split, train_seconds: +p.train_seconds.toFixed(1), eval_seconds: +p.eval_seconds.toFixed(1), seconds: +((performance.now() - t0) / 1000).toFixed(1) };
    appendFileSync(join(out, 'curve.jsonl'), JSON.stringify(line) + '\n');
    console.log(JSON.stringify(line));
  },
});
