/**
 * Run under `mpirun -np N` by split-step.test.ts: each rank trains the split spirals step for 3 steps on its slice of
 * each global batch, all-reducing through MPI, and writes its losses and whole state to `<dir>/rank<r>.json`
 * (every rank writes here so that the test can compare them; a training run has rank 0 alone write).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Prng } from '../../../dsl/index.ts';
import { TrainState } from '../../../runtime/state.ts';
import { abortOnUncaughtError, openCollective } from '../../../runtime/dist/collective.ts';
import { DataParallelStep } from '../../../runtime/dist/data-parallel.ts';
import { SCHEDULE, initialValues, rankFeeds, splitStep } from './split-model.ts';

const dir = process.argv[2];
if (!dir) throw new Error('usage: split-step-worker.ts <output dir>');
const collective = await openCollective();
abortOnUncaughtError(collective);
const { gradient, apply, layout } = splitStep(collective.size);
const step = await DataParallelStep.compile(gradient, apply, layout, collective, { threads: 1 });
const state = TrainState.init(step.stateSpecs, Prng.seeded(0), initialValues());
const losses: number[] = [];
for (const [k, scalars] of SCHEDULE.entries()) {
  const r = await step.run(state, rankFeeds(k, collective.rank, collective.size), scalars);
  losses.push(r.sums['loss']![0]!);
}
await step.release();
const values = Object.fromEntries(state.names().map((n) => [n, [...state.values(n)]]));
writeFileSync(join(dir, `rank${collective.rank}.json`), JSON.stringify({ size: collective.size, losses, state: values }));
collective.finalize();
