/**
 * `mpirun -np 2 dino train` equals one process with the global batch: 2 ranks × 4 images against 1 process × 8,
 * 3 steps, the whole checkpointed state (student, teacher, both moments, step counts, center) compared to float32
 * reduction-order tolerance, and the metrics logged; rank 0 alone writes the run folder and prints; a stop signal
 * stops every rank after the same step.
 * Skipped, with the reason printed, where Open MPI's mpirun is absent.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readCheckpointMeta } from '../../../runtime/dino/checkpoint.ts';
import { mpiUnavailable } from './mpi-launch.ts';
import { TINY, dinoTrain, stateDifference } from './train-launch.ts';

const DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'dino-train-mpi-'));
test.after(() => fs.rmSync(DIR, { recursive: true, force: true }));
const skip = mpiUnavailable();
if (skip) console.log(`  skipped: ${skip}`);

/**
 * The tolerance: the two roads add the same float32 terms in another order (each rank sums its 4 images, then the
 * all-reduce adds the two sums), which moves the state by ~1e-5 relative after 3 steps here; the step-level parity
 * (test/runtime/dist/dino-step-split.test.ts) measures the one process's own summation-order noise at up to 8e-5.
 */
const STATE_TOLERANCE = 1e-4;

const metrics = (dir: string) => fs.readFileSync(path.join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);

(skip ? test.skip : test)('2 ranks × 4 = 1 process × 8 after 3 steps: the whole state and the metrics; rank 0 alone writes and prints', async () => {
  const ranks = await dinoTrain(2, DIR, [...TINY, '--batch', '4', '--steps', '3', '--out', 'ranks']).done;
  assert.is(ranks.code, 0, ranks.stderr);
  const one = await dinoTrain(0, DIR, [...TINY, '--batch', '8', '--steps', '3', '--out', 'one']).done;
  assert.is(one.code, 0, one.stderr);

  const { worst, where } = stateDifference(path.join(DIR, 'ranks/checkpoint.safetensors'), path.join(DIR, 'one/checkpoint.safetensors'));
  console.log(`  2 ranks × 4 vs 1 × 8: largest relative state difference ${worst.toExponential(2)} (${where})`);
  assert.ok(worst < STATE_TOLERANCE, `state differs: ${where}`);
  const got = metrics(path.join(DIR, 'ranks')), want = metrics(path.join(DIR, 'one'));
  assert.is(got.length, 3);
  got.forEach((m, k) => {
    for (const name of ['loss', 'teacher_entropy', 'grad_norm', 'lr', 'wd', 'momentum', 'teacher_temp']) {
      assert.ok(Math.abs(m[name]! - want[k]![name]!) <= 1e-5 * Math.abs(want[k]![name]!), `step ${k + 1} ${name}: ${m[name]} vs ${want[k]![name]}`);
    }
  });

  // The global batch is recorded (and scales the lr as one process's batch 8 does); the checkpoint names its ranks.
  assert.is(JSON.parse(fs.readFileSync(path.join(DIR, 'ranks/config.json'), 'utf8')).batch, 8);
  assert.is(readCheckpointMeta(path.join(DIR, 'ranks/checkpoint.safetensors')).ranks, 2);
  assert.is(readCheckpointMeta(path.join(DIR, 'one/checkpoint.safetensors')).ranks, undefined);
  assert.equal(fs.readdirSync(path.join(DIR, 'ranks')).sort(), ['checkpoint.safetensors', 'config.json', 'metrics.jsonl']);
  // Rank 1 prints nothing: every line appears once.
  assert.is(ranks.stderr.match(/compiled the training step/g)?.length, 1, ranks.stderr);
  assert.match(ranks.stderr, /data-parallel on 2 ranks: a global batch of 8 images, 4 per rank/);
  assert.is(ranks.stdout.match(/done after 3 steps/g)?.length, 1, ranks.stdout);
});

(skip ? test.skip : test)('2 ranks refuse K steps per run, naming the flag, before writing anything', async () => {
  const k = await dinoTrain(2, DIR, [...TINY, '--batch', '4', '--steps', '3', '--steps-per-run', '2', '--out', 'k']).done;
  assert.is.not(k.code, 0);
  assert.match(k.stderr, /--steps-per-run 2: 2 processes run one step per ONNX Runtime call/);
  assert.not.ok(fs.existsSync(path.join(DIR, 'k')));
});

(skip ? test.skip : test)('SIGTERM to mpirun: the ranks agree on the step, rank 0 saves it and prints the resume command', async () => {
  const run = dinoTrain(2, DIR, [...TINY, '--batch', '4', '--steps', '500', '--out', 'term']);
  const file = path.join(DIR, 'term/metrics.jsonl');
  const metricLines = () => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).length : 0);
  for (let waited = 0; metricLines() < 2 && waited < 60_000; waited += 20) await new Promise((r) => setTimeout(r, 20));
  run.child.kill('SIGTERM'); // mpirun forwards it to every rank
  const r = await run.done;
  assert.match(r.stderr, /SIGTERM: finishing this step and saving a checkpoint/);
  const stoppedAt = Number(/interrupted after (\d+) steps/.exec(r.stdout)?.[1]);
  assert.ok(stoppedAt >= 2 && stoppedAt < 500, r.stdout + r.stderr);
  assert.match(r.stdout, /resume with: npx dino train --resume term/);
  assert.is(readCheckpointMeta(path.join(DIR, 'term/checkpoint.safetensors')).step, stoppedAt);
  assert.is(metricLines(), stoppedAt);
});

test.run();
