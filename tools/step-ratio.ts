/**
 * Step time of candidate configs relative to a reference (default `fmnist-quick`), measured in one process with the
 * steps interleaved (reference, candidate 1, candidate 2, ..., reference, ...) so that load from other processes on
 * a shared machine hits all of them alike. The ratio, not the absolute time, is what sizes a candidate's budget:
 * steps = reference steps / ratio costs what the reference run costs.
 *
 *   npx tsx tools/step-ratio.ts --rounds 12 --cand 'lr=0.004' --cand 'backbone.patchSize=7;augment.localSize=14'
 *
 * `--set key=value` (repeatable) overrides the reference preset; each `--cand` is a `;`-separated list of `key=value`
 * overrides of that reference. Prints one JSON line per
 * candidate: {cand, median_ms, ref_median_ms, ratio}. Training uses the recompute mode the training loop uses.
 */
import { parseArgs } from 'node:util';
import { Prng } from '../dsl/index.ts';
import { applyOverrides, type TrainConfig } from '../runtime/dino/config.ts';
import { getPreset } from '../runtime/dino/presets.ts';
import { DEFAULT_RECOMPUTE } from '../runtime/dino/train.ts';
import { StepRunner } from '../runtime/step-runner.ts';
import { TrainState } from '../runtime/state.ts';
import { MultiCropLoader } from '../runtime/data/loader.ts';
import { loadFashionMnist } from '../runtime/data/fashion-mnist.ts';
import { buildStepGraph, midRunScalars, stepInputs } from '../bench/train.ts';
import { median } from '../bench/measure.ts';

const { values } = parseArgs({
  options: {
    preset: { type: 'string', default: 'fmnist-quick' }, rounds: { type: 'string', default: '10' },
    cand: { type: 'string', multiple: true }, warmup: { type: 'string', default: '2' }, set: { type: 'string', multiple: true },
  },
});
const ref = applyOverrides(getPreset(values.preset!), values.set ?? []);
const cands = (values.cand ?? []).map((c) => ({ name: c, cfg: applyOverrides(ref, c.split(';').filter(Boolean)) }));
const data = await loadFashionMnist({ split: 'val' });

async function prepare(cfg: TrainConfig) {
  const runner = await StepRunner.compile(buildStepGraph(cfg, { recompute: DEFAULT_RECOMPUTE }).graph, { ep: 'cpu', threads: 0 });
  const prng = Prng.seeded(cfg.seed);
  const state = TrainState.init(runner.signature.state, prng);
  const loader = new MultiCropLoader({ dataset: data, batchSize: cfg.batch, seed: cfg.seed, augment: cfg.augment, workers: 1, prefetch: 1 });
  const crops = await loader.next();
  await loader.close();
  const inputs = stepInputs(cfg, crops, prng);
  const scalars = midRunScalars(cfg);
  const times: number[] = [];
  return {
    times,
    step: async () => {
      const t0 = performance.now();
      await runner.run(state, inputs, scalars);
      times.push(performance.now() - t0);
    },
  };
}

const all = [{ name: values.preset!, cfg: ref }, ...cands];
const prepared: Awaited<ReturnType<typeof prepare>>[] = [];
for (const c of all) prepared.push(await prepare(c.cfg));
for (let w = 0; w < Number(values.warmup); w++) for (const p of prepared) await p.step();
for (const p of prepared) p.times.length = 0;
for (let r = 0; r < Number(values.rounds); r++) for (const p of prepared) await p.step();
const refMs = median(prepared[0]!.times);
all.forEach((c, i) => {
  const ms = median(prepared[i]!.times);
  console.log(JSON.stringify({ cand: c.name, batch: c.cfg.batch, median_ms: +ms.toFixed(1), ref_median_ms: +refMs.toFixed(1), ratio: +(ms / refMs).toFixed(3) }));
});
process.exit(0);
