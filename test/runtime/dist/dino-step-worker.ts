/**
 * Run under `mpirun -np N` by dino-step-split.test.ts: each rank trains the tiny DINO split step for 3 steps on its
 * slice of each global batch, all-reducing through MPI, and writes its metrics and whole state to `<dir>/rank<r>.json`
 * (every rank writes here so that the test can compare them; a training run has rank 0 alone write).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Prng } from '../../../dsl/index.ts';
import { TrainState } from '../../../runtime/state.ts';
import { abortOnUncaughtError, openCollective } from '../../../runtime/dist/collective.ts';
import { DinoDataParallelStep } from '../../../runtime/dist/dino-step.ts';
import { SCHEDULE, initialValues, rankConfig, rankInputs } from './dino-split-model.ts';

const dir = process.argv[2];
if (!dir) throw new Error('usage: dino-step-worker.ts <output dir>');
const collective = await openCollective();
abortOnUncaughtError(collective);
const step = await DinoDataParallelStep.compile(rankConfig(collective.size), collective, { threads: 1 });
const state = TrainState.init(step.stateSpecs, Prng.seeded(0), initialValues());
const metrics: Record<string, number>[] = [];
for (const [k, scalars] of SCHEDULE.entries()) metrics.push((await step.run(state, rankInputs(k, collective.rank, collective.size), scalars)).metrics);
await step.release();
const values = Object.fromEntries(state.names().map((n) => [n, [...state.values(n)]]));
writeFileSync(join(dir, `rank${collective.rank}.json`), JSON.stringify({ size: collective.size, metrics, state: values }));
collective.finalize();
