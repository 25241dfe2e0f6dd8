/**
 * Faults of `mpirun -np 2 dino train`: a rank killed with SIGKILL mid-run stops the whole job with a message naming
 * it, the last checkpoint intact; `--resume` on 2 ranks then ends bit for bit where the uninterrupted 2-rank run
 * ends; resuming the same checkpoint on 1 process (the same global batch) says what that means and ends equal to
 * float32 tolerance. Skipped, with the reason printed, where Open MPI's mpirun is absent.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadCheckpoint } from '../../../runtime/dino/checkpoint.ts';
import { mpiUnavailable } from './mpi-launch.ts';
import { TINY, dinoTrain, stateDifference } from './train-launch.ts';

const DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'dino-train-mpi-faults-'));
test.after(() => fs.rmSync(DIR, { recursive: true, force: true }));
const skip = mpiUnavailable();
if (skip) console.log(`  skipped: ${skip}`);

const RUN = [...TINY, '--batch', '4', '--steps', '10', '--checkpoint-every', '2'];
const metricLines = (dir: string) => {
  const file = path.join(dir, 'metrics.jsonl');
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).length : 0;
};

/** The pid of the process whose environment holds `DINO_TEST_TAG=tag` and is MPI rank `rank`, if it runs. */
function rankPid(tag: string, rank: number): number | undefined {
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let env: string;
    try {
      env = fs.readFileSync(`/proc/${entry}/environ`, 'utf8');
    } catch {
      continue;
    }
    const vars = env.split('\0');
    if (vars.includes(`DINO_TEST_TAG=${tag}`) && vars.includes(`OMPI_COMM_WORLD_RANK=${rank}`)) return Number(entry);
  }
  return undefined;
}

(skip ? test.skip : test)('a killed rank stops the job, the checkpoint intact; resumed on 2 ranks = uninterrupted, bit for bit; on 1 process, to tolerance', async () => {
  const whole = await dinoTrain(2, DIR, [...RUN, '--out', 'whole']).done;
  assert.is(whole.code, 0, whole.stderr);

  const tag = `kill-${process.pid}`;
  const killed = dinoTrain(2, DIR, [...RUN, '--out', 'killed'], tag);
  const dir = path.join(DIR, 'killed');
  // Past the checkpoint of step 2 (saved right after step 2's metrics line), kill rank 1 outright.
  for (let waited = 0; metricLines(dir) < 3 && waited < 60_000; waited += 20) await new Promise((r) => setTimeout(r, 20));
  const pid = rankPid(tag, 1);
  assert.ok(pid !== undefined, 'rank 1 not found');
  process.kill(pid, 'SIGKILL');
  const k = await killed.done;
  assert.is.not(k.code, 0);
  assert.match(k.stderr, /rank 1 .*exited on signal 9|signal 9/s, k.stderr);
  const stoppedAt = loadCheckpoint(path.join(dir, 'checkpoint.safetensors')).meta.step; // loads: intact
  assert.ok(stoppedAt >= 2 && stoppedAt < 10 && stoppedAt % 2 === 0, `checkpoint at step ${stoppedAt}`);
  console.log(`  rank 1 killed after ${metricLines(dir)} logged steps; checkpoint at step ${stoppedAt}`);
  fs.cpSync(dir, path.join(DIR, 'one'), { recursive: true });

  const resumed = await dinoTrain(2, DIR, ['--resume', 'killed', '--threads', '1', '--num-workers', '1']).done;
  assert.is(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, new RegExp(`resuming from step ${stoppedAt}`));
  const same = stateDifference(path.join(dir, 'checkpoint.safetensors'), path.join(DIR, 'whole/checkpoint.safetensors'));
  assert.ok(same.identical, `resumed on 2 ranks differs from the uninterrupted run: ${same.where}`);
  assert.is(metricLines(dir), 10);

  const single = await dinoTrain(0, DIR, ['--resume', 'one', '--threads', '1', '--num-workers', '1']).done;
  assert.is(single.code, 0, single.stderr);
  assert.match(single.stderr, /the checkpoint was written by 2 process\(es\), this run has 1: the same global batch of 8/);
  const close = stateDifference(path.join(DIR, 'one/checkpoint.safetensors'), path.join(DIR, 'whole/checkpoint.safetensors'));
  console.log(`  resumed on 1 process: largest relative state difference ${close.worst.toExponential(2)} from the 2-rank run`);
  // Rounding differences compound over the 8 steps after the checkpoint (1.0e-4 measured; 9e-6 after 3 steps in
  // train-mpi.test.ts); other crops or another batch would differ by far more than 1e-3.
  assert.ok(close.worst < 1e-3, close.where);
});

test.run();
