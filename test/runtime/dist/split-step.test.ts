/**
 * The data-parallel step split (dsl/train/split-step.ts, runtime/dist/data-parallel.ts) against the one-graph step:
 * gradient graph -> sum over ranks -> apply graph gives the one-graph step's losses and whole state, over 3 steps
 * with clipping acting and a gate closing, for 1 rank, 2 simulated ranks, and 2 real MPI ranks (mpirun, skipped
 * with the reason printed where it is absent).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import { Graph, Prng, Scope, addGradientOutputs, cast, mul, packedEntry, sumAll } from '../../../dsl/index.ts';
import { StepRunner } from '../../../runtime/step-runner.ts';
import { TrainState } from '../../../runtime/state.ts';
import { SingleProcess } from '../../../runtime/dist/collective.ts';
import { DataParallelStep } from '../../../runtime/dist/data-parallel.ts';
import { GLOBAL_BATCH, SCHEDULE, initialValues, oneGraphStep, rankFeeds, splitStep } from './split-model.ts';
import { mpiUnavailable, mpirun } from './mpi-launch.ts';

const worker = fileURLToPath(new URL('./split-step-worker.ts', import.meta.url));

/** The reference: one process, the one-graph step on the whole batch, 3 steps. */
async function reference(): Promise<{ state: Map<string, Float32Array>; losses: number[] }> {
  const runner = await StepRunner.compile(oneGraphStep(), { threads: 1 });
  const state = TrainState.init(runner.signature.state, Prng.seeded(0), initialValues());
  const losses: number[] = [];
  for (const [step, scalars] of SCHEDULE.entries()) losses.push((await runner.run(state, rankFeeds(step, 0, 1), scalars))['loss']!);
  await runner.release();
  return { state: new Map(state.names().map((n) => [n, Float32Array.from(state.values(n))])), losses };
}

/**
 * `ranks` simulated in one process: each rank's gradients on its slice from the same state, summed here, then applied.
 * One rank goes through `DataParallelStep.run` with the single-process collective.
 */
async function simulated(ranks: number): Promise<{ state: Map<string, Float32Array>; losses: number[] }> {
  const { gradient, apply, layout } = splitStep(ranks);
  const step = await DataParallelStep.compile(gradient, apply, layout, new SingleProcess(), { threads: 1 });
  const state = TrainState.init(step.stateSpecs, Prng.seeded(0), initialValues());
  const losses: number[] = [];
  for (const [k, scalars] of SCHEDULE.entries()) {
    if (ranks === 1) {
      // One rank: the driver's own road (gradients, the SingleProcess all-reduce, apply, the sums read back).
      losses.push((await step.run(state, rankFeeds(k, 0, 1), scalars)).sums['loss']![0]!);
      continue;
    }
    const sum = new Float32Array(layout.total);
    for (let r = 0; r < ranks; r++) {
      const { packed } = await step.gradients(state, rankFeeds(k, r, ranks));
      for (let i = 0; i < sum.length; i++) sum[i]! += packed[i]!;
    }
    await step.apply(state, sum, scalars);
    losses.push(sum[layout.entries.find((e) => e.name === 'loss')!.offset]!);
  }
  await step.release();
  return { state: new Map(state.names().map((n) => [n, Float32Array.from(state.values(n))])), losses };
}

/** Largest |a - b| / (|b| + floor) over every element of every state tensor; names must match exactly. */
function compareStates(got: Map<string, Float32Array>, want: Map<string, Float32Array>): { worst: number; where: string } {
  assert.equal([...got.keys()].sort(), [...want.keys()].sort(), 'state tensor names differ');
  let worst = 0, where = '';
  for (const [name, w] of want) {
    const g = got.get(name)!;
    assert.is(g.length, w.length, `${name}: length`);
    // Second moments are squares of gradients (~1e-6 here): measured against their own scale, not against 1.
    const floor = name.startsWith('optim.v.') ? Math.max(...w.map(Math.abs)) : 1e-3;
    for (let i = 0; i < w.length; i++) {
      const err = Math.abs(g[i]! - w[i]!) / (Math.abs(w[i]!) + floor);
      if (!(err <= worst)) [worst, where] = [err, `${name}[${i}]: ${g[i]} vs ${w[i]}`];
    }
  }
  return { worst, where };
}

let ref: Awaited<ReturnType<typeof reference>>;

test('reference: clipping acts and the closed gate holds the head at step 0', async () => {
  ref = await reference();
  assert.ok(ref.losses.every(Number.isFinite), `losses ${ref.losses}`);
  assert.is(ref.state.get('optim.step.head')![0], 2, 'head stepped 2 times of 3 (gate closed at step 0)');
  assert.is(ref.state.get('optim.step')![0], 3);
  const init = initialValues();
  assert.not.equal([...ref.state.get('head.weight')!], [...init.get('head.weight')!], 'head never moved');
});

test('1 rank: gradient graph + apply graph = the one-graph step, bit for bit', async () => {
  const one = await simulated(1);
  const { worst, where } = compareStates(one.state, ref.state);
  assert.is(worst, 0, `largest difference ${where}`);
  assert.equal(one.losses, ref.losses);
});

test(`2 simulated ranks × ${GLOBAL_BATCH / 2} = 1 process × ${GLOBAL_BATCH}: losses and whole state over 3 steps`, async () => {
  const two = await simulated(2);
  const { worst, where } = compareStates(two.state, ref.state);
  console.log(`  2 simulated ranks: largest relative state difference ${worst.toExponential(2)} (${where})`);
  assert.ok(worst < 1e-4, `largest difference ${worst} at ${where}`);
  for (let k = 0; k < ref.losses.length; k++) assert.ok(Math.abs(two.losses[k]! - ref.losses[k]!) < 1e-6, `loss ${k}: ${two.losses[k]} vs ${ref.losses[k]}`);
});

test('the packed layout: gradients in parameter order, then the sums; refused sums are named', () => {
  const { gradient, layout } = splitStep(2);
  const grads = layout.entries.filter((e) => e.kind === 'grad');
  assert.equal(grads.map((e) => e.name), [...gradient.params.keys()]);
  assert.equal(layout.entries.filter((e) => e.kind === 'sum').map((e) => [e.name, e.size]), [['loss', 1], ['correct', 1]]);
  layout.entries.forEach((e, i) => assert.is(e.offset, i === 0 ? 0 : layout.entries[i - 1]!.offset + layout.entries[i - 1]!.size));
  assert.is(layout.total, layout.entries.at(-1)!.offset + layout.entries.at(-1)!.size);
  const packed = Float32Array.from({ length: layout.total }, (_, i) => i);
  assert.equal([...packedEntry(layout, packed, 'correct')], [layout.total - 1]);
  assert.throws(() => packedEntry(layout, packed, 'nope'), /no entry "nope"/);

  const clash = new Graph('clash');
  const w = new Scope(clash).param('w', [2], { kind: 'ones' });
  const loss = sumAll(mul(w, w));
  const named = addGradientOutputs(clash, { loss, sums: new Map([['w', loss]]) });
  assert.ok(E.isLeft(named) && /sum "w" has the name of a parameter/.test(named.left[0]!.message));
  const g2 = new Graph('int');
  const w2 = new Scope(g2).param('w', [2], { kind: 'ones' });
  const ints = addGradientOutputs(g2, { loss: sumAll(w2), sums: new Map([['n', cast(w2, 'int32')]]) });
  assert.ok(E.isLeft(ints) && /sum "n" is int32/.test(ints.left[0]!.message));
});

const unavailable = mpiUnavailable();
if (unavailable) {
  console.log(`skipping the mpirun parity test: ${unavailable}`);
} else {
  test(`mpirun -np 2, ${GLOBAL_BATCH / 2} each = 1 process × ${GLOBAL_BATCH}: every rank's whole state and the losses`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dino-split-'));
    try {
      const r = await mpirun(2, worker, [dir]);
      assert.is(r.code, 0, `mpirun failed (code ${r.code}):\n${r.stderr}`);
      const ranks = [0, 1].map((rank) => JSON.parse(readFileSync(join(dir, `rank${rank}.json`), 'utf8')) as { size: number; losses: number[]; state: Record<string, number[]> });
      const asMap = (s: Record<string, number[]>) => new Map(Object.entries(s).map(([n, v]) => [n, Float32Array.from(v)]));
      for (const rank of ranks) {
        assert.is(rank.size, 2);
        const { worst, where } = compareStates(asMap(rank.state), ref.state);
        assert.ok(worst < 1e-4, `largest difference ${worst} at ${where}`);
        for (let k = 0; k < ref.losses.length; k++) assert.ok(Math.abs(rank.losses[k]! - ref.losses[k]!) < 1e-6, `loss ${k}: ${rank.losses[k]} vs ${ref.losses[k]}`);
      }
      // Same summed buffer, same apply graph: the ranks agree exactly.
      assert.equal(ranks[1]!.state, ranks[0]!.state, 'rank 1 state differs from rank 0');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test.run();
