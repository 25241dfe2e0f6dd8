/**
 * DINO's data-parallel step (models/dino-step-split.ts, runtime/dist/dino-step.ts) against the one-graph step on the
 * whole batch: 1 rank of 8, 2 simulated ranks of 4 and 2 real MPI ranks of 4 (mpirun; skipped with the reason printed
 * where it is absent) give the one process's metrics and whole state (student, teacher, both moments, step counts,
 * center) over 3 steps with clipping acting and the last layer frozen at the first step. Also: the packed layout and
 * fp16's loss scaling through growths and an overflow, and the refusals (KoLeo, Sinkhorn, batch norm), each naming
 * its option.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import { type PackedLayout, Prng, formatError, packedEntry } from '../../../dsl/index.ts';
import { CENTER, STUDENT, dinoMetricNames } from '../../../models/dino-step.ts';
import { buildDinoStepSplit } from '../../../models/dino-step-split.ts';
import { TrainState } from '../../../runtime/state.ts';
import type { Collective } from '../../../runtime/dist/collective.ts';
import { DinoDataParallelStep } from '../../../runtime/dist/dino-step.ts';
import { GLOBAL_BATCH, type RunVariant, SCHEDULE, type StateValues, initialValues, rankConfig, rankInputs, reference, stateValues } from './dino-split-model.ts';
import { GROWTH_TRACKER, LOSS_SCALE } from '../../../dsl/train/loss-scale.ts';
import { ort } from '../../../runtime/backend.ts';
import { mpiUnavailable, mpirun } from './mpi-launch.ts';

const worker = fileURLToPath(new URL('./dino-step-worker.ts', import.meta.url));

/** `size` ranks simulated in this process: the test sums the ranks' packed buffers itself, so no collective is called. */
function simulatedRanks(size: number): Collective {
  const notHere = (): never => {
    throw new Error('simulated ranks: the test runs the gradient and apply graphs itself');
  };
  return { kind: 'single', rank: 0, size, allreduceSum: notHere, broadcast: notHere, barrier: notHere, abort: notHere, finalize: () => {} };
}

/** `ranks` simulated in one process: each rank's gradient graph on its slice from the same state, summed here, then applied. */
async function simulated(ranks: number, variant: RunVariant = {}): Promise<{ state: StateValues; metrics: Record<string, number>[]; firstPacked: Float32Array; layout: PackedLayout }> {
  const step = await DinoDataParallelStep.compile(rankConfig(ranks, variant.overrides), simulatedRanks(ranks), { threads: 1 });
  const state = TrainState.init(step.stateSpecs, Prng.seeded(0), initialValues(variant.overrides));
  const metrics: Record<string, number>[] = [];
  const summed: Float32Array[] = [];
  for (const [k, scalars] of SCHEDULE.entries()) {
    variant.beforeStep?.(k, state);
    const sum = new Float32Array(step.split.layout.total);
    for (let r = 0; r < ranks; r++) {
      const packed = await step.gradients(state, rankInputs(k, r, ranks), scalars);
      for (let i = 0; i < sum.length; i++) sum[i]! += packed[i]!;
    }
    summed.push(Float32Array.from(sum));
    metrics.push(await step.apply(state, sum, scalars));
  }
  await step.release();
  return { state: stateValues(state), metrics, firstPacked: summed[0]!, layout: step.split.layout };
}

/** Largest |a - b| / (|b| + floor) over every element of every state tensor; the names must match exactly. */
function compareStates(got: StateValues, want: StateValues): { worst: number; where: string } {
  assert.equal([...got.keys()].sort(), [...want.keys()].sort(), 'state tensor names differ');
  let worst = 0, where = '';
  for (const [name, w] of want) {
    const g = got.get(name)!;
    assert.is(g.length, w.length, `${name}: length`);
    // Second moments are squares of gradients: measured against their own scale, not against 1e-3.
    const floor = name.startsWith('optim.v.') ? Math.max(...w.map(Math.abs)) : 1e-3;
    // The attention key bias has an exactly zero gradient (softmax ignores a constant added to a row), so Adam turns
    // its rounding noise into steps of size lr on any road: those elements are skipped, the rest of the tensor compared.
    const keyBias = name.endsWith('attn.qkv.bias') ? [w.length / 3, (2 * w.length) / 3] : [0, 0];
    for (let i = 0; i < w.length; i++) {
      if (i >= keyBias[0]! && i < keyBias[1]!) continue;
      const err = Math.abs(g[i]! - w[i]!) / (Math.abs(w[i]!) + floor);
      if (!(err <= worst)) [worst, where] = [err, `${name}[${i}]: ${g[i]} vs ${w[i]}`];
    }
  }
  return { worst, where };
}

/**
 * The metrics of the split against the reference's: relative 1e-5 (loss, entropy, grad norm); the KL, a difference
 * of two numbers near log K in the split (models/dino-loss.ts `teacherKlFromShares`), to 2e-6 absolute.
 */
function compareMetrics(got: readonly Record<string, number>[], want: readonly Record<string, number>[]): string {
  assert.is(got.length, want.length);
  const worst: Record<string, number> = {};
  want.forEach((w, k) => {
    assert.equal(Object.keys(got[k]!).sort(), Object.keys(w).sort(), `step ${k}: metric names`);
    for (const [name, value] of Object.entries(w)) {
      const diff = Math.abs(got[k]![name]! - value), tolerance = name === 'teacher_kl' ? 2e-6 : 1e-5 * Math.abs(value);
      assert.ok(diff <= tolerance, `step ${k} ${name}: ${got[k]![name]} vs ${value}`);
      worst[name] = Math.max(worst[name] ?? 0, name === 'teacher_kl' ? diff : diff / Math.abs(value));
    }
  });
  return Object.entries(worst).map(([n, d]) => `${n} ${d.toExponential(1)}${n === 'teacher_kl' ? ' abs' : ''}`).join(', ');
}

let ref: Awaited<ReturnType<typeof reference>>;
/** How far the one process moves from itself when only the summation order changes (its batch's images reversed). */
let orderNoise: number;
/** The tolerance of the N-rank parity: a little above `orderNoise`, as the ranks change the summation order too. */
const stateTolerance = () => Math.max(3 * orderNoise, 1e-5);

test('reference: clipping acts, the frozen last layer holds at step 0; the summation-order yardstick', async () => {
  ref = await reference();
  assert.equal(Object.keys(ref.metrics[0]!), [...dinoMetricNames()]);
  assert.ok(ref.metrics.every((m) => Object.values(m).every(Number.isFinite)), JSON.stringify(ref.metrics));
  assert.is(ref.state.get('optim.step.last_layer')![0], 2, 'last layer stepped 2 times of 3');
  assert.is(ref.state.get('optim.step')![0], 3);
  // Some parameter's gradient norm exceeds clipGrad: with all at most c, the global norm is at most c·sqrt(count).
  const trained = [...ref.state.keys()].filter((n) => n.startsWith('optim.m.')).length;
  for (const m of ref.metrics) assert.ok(m['grad_norm']! > rankConfig(1).clipGrad * Math.sqrt(trained), `grad_norm ${m['grad_norm']}: clipping may not act`);
  assert.ok(ref.metrics[0]!['teacher_kl']! > 1e-3, `teacher_kl ${ref.metrics[0]!['teacher_kl']} too small to compare`);
  const reversed = await reference({ reversed: true });
  const noise = compareStates(reversed.state, ref.state);
  orderNoise = noise.worst;
  console.log(`  one process, its images reversed: largest relative state difference ${orderNoise.toExponential(2)} (${noise.where})`);
  // Adam divides each gradient element by its own running magnitude, so rounding in near-zero elements (the attention
  // key bias has an exactly zero gradient) reaches the weights as visible steps; still far below a real difference.
  assert.ok(orderNoise > 0 && orderNoise < 1e-3, `summation-order noise ${orderNoise}`);
  console.log(`  one process, its images reversed: largest metric differences ${compareMetrics(reversed.metrics, ref.metrics)}`);
});

test('1 rank: the split step = the one-graph step, bit for bit (state and metrics but the KL, to 2e-6)', async () => {
  const one = await simulated(1);
  const { worst, where } = compareStates(one.state, ref.state);
  assert.is(worst, 0, `largest difference ${where}`);
  compareMetrics(one.metrics, ref.metrics);
  one.metrics.forEach((m, k) => {
    for (const name of ['loss', 'teacher_entropy', 'grad_norm']) assert.is(m[name], ref.metrics[k]![name], `step ${k} ${name}`);
  });
});

test(`2 simulated ranks × ${GLOBAL_BATCH / 2} = 1 process × ${GLOBAL_BATCH}: the summed buffer, the metrics and the whole state over 3 steps`, async () => {
  const [two, one] = [await simulated(2), await simulated(1)];
  // The first step's summed buffer (same state on both roads): every gradient and sum as one rank of 8 computes it,
  // to float32 rounding; an absolute floor for gradients that are zero (the attention key bias).
  const gradNorm = Math.hypot(...one.firstPacked.subarray(0, one.layout.entries.filter((e) => e.kind === 'grad').reduce((n, e) => n + e.size, 0)));
  for (const e of two.layout.entries) {
    const got = packedEntry(two.layout, two.firstPacked, e.name), want = packedEntry(one.layout, one.firstPacked, e.name);
    const diff = Math.hypot(...got.map((x, i) => x - want[i]!)), size = Math.hypot(...want);
    assert.ok(diff <= 1e-5 * size + (e.kind === 'grad' ? 1e-7 * gradNorm : 0), `step 0 ${e.kind} ${e.name}: |difference| ${diff}, |value| ${size}`);
  }
  const { worst, where } = compareStates(two.state, ref.state);
  console.log(`  2 simulated ranks: largest relative state difference ${worst.toExponential(2)} (${where}); tolerance ${stateTolerance().toExponential(2)}`);
  assert.ok(worst <= stateTolerance(), `largest difference ${worst} at ${where}`);
  assert.ok([...two.state.get(CENTER)!].some((c) => c !== 0), 'the center never moved');
  console.log(`  2 simulated ranks: largest metric differences ${compareMetrics(two.metrics, ref.metrics)}`);
});

test('the packed layout: the student\'s trained gradients, then DINO\'s sums; the scalars split between the graphs', () => {
  const built = buildDinoStepSplit(rankConfig(2), undefined, { ranks: 2 });
  if (E.isLeft(built)) throw new Error(built.left.map(formatError).join('\n'));
  const { layout, gradient, apply, globalBatch } = built.right;
  assert.is(globalBatch, GLOBAL_BATCH);
  const k = rankConfig(2).head.outDim;
  assert.equal(layout.entries.filter((e) => e.kind === 'sum').map((e) => [e.name, e.size]), [['dino.loss', 1], ['dino.teacher_entropy', 1], ['dino.teacher_probs', k], ['dino.teacher_mean', k]]);
  const grads = layout.entries.filter((e) => e.kind === 'grad').map((e) => e.name);
  assert.ok(grads.length > 0 && grads.every((n) => n.startsWith(STUDENT)));
  assert.ok(!grads.some((n) => n.endsWith('last_layer.weight_g')), 'the frozen weight_g is not trained');
  const names = (g: typeof gradient) => g.inputs.map((t) => t.name);
  assert.equal(names(gradient), ['globals', 'locals', 'drop_path.globals', 'drop_path.locals', 'teacher_temp']);
  assert.equal(names(apply).sort(), ['gate.last_layer', 'lr', 'momentum', 'packed', 'wd']);
});

test('fp16 (dynamic loss scaling): 1 rank = the one-graph step bit for bit; 2 simulated ranks decide as 1 process through two growths and an overflow; a skipped step keeps the whole state', async () => {
  // growthInterval 1: every finite step doubles the scale (4 -> 8 -> 16); before step 2 the scale is set to
  // 2^100, so the float16 cotangents overflow on every rank: the step is skipped everywhere and the scale halves.
  const variant: RunVariant = {
    overrides: { precision: 'fp16-emulated', lossScaling: { initScale: 4, growthInterval: 1 } },
    beforeStep: (k, state) => { if (k === 2) state.set(LOSS_SCALE, new ort.Tensor('float32', Float32Array.of(2 ** 100), [])); },
  };
  let beforeSkip: StateValues | undefined;
  const want = await reference(variant);
  const two = await simulated(2, { ...variant, beforeStep: (k, state) => { variant.beforeStep!(k, state); if (k === 2) beforeSkip = stateValues(state); } });
  assert.equal(want.metrics.map((m) => [m['loss_scale'], m['skipped']]), [[4, 0], [8, 0], [2 ** 100, 1]], 'the reference grows twice, then skips');
  assert.equal(two.metrics.map((m) => [m['loss_scale'], m['skipped']]), [[4, 0], [8, 0], [2 ** 100, 1]], 'the ranks decide as the one process');
  assert.equal([two.state.get(LOSS_SCALE)![0], two.state.get(GROWTH_TRACKER)![0]], [2 ** 99, 0]);
  // The finite steps' metrics as the fp32 parity holds them; the skipped step's gradient norm is not finite on both.
  compareMetrics(two.metrics.slice(0, 2), want.metrics.slice(0, 2));
  assert.not.ok(Number.isFinite(two.metrics[2]!['grad_norm']!) || Number.isFinite(want.metrics[2]!['grad_norm']!));
  // One rank is the one-graph fp16 step itself, bit for bit.
  const one = await simulated(1, variant);
  assert.is(compareStates(one.state, want.state).worst, 0, 'one rank differs from the one-graph fp16 step');
  // float16 rounds every product, so a rank's half-batch sums round differently from the one process's: an element
  // whose gradient is within rounding of zero may change sign, and Adam's first steps move it by lr either way (one
  // rank reproduces the one process bit for bit: the 1-rank road is the same graph). So, as test/models/mixed-precision
  // .test.ts holds fp16 against fp32: parameters within Adam's bound (2 Σ lr), first moments within 1e-2 of their
  // largest entry, the center within 1e-3, counts and scaler exact.
  const lrSum = SCHEDULE.slice(0, 2).reduce((sum, s) => sum + s.lr, 0);
  const maxAbs = (v: Float32Array) => v.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  for (const [name, w] of want.state) {
    const g = two.state.get(name)!;
    const diff = g.reduce((m, x, i) => Math.max(m, Math.abs(x - w[i]!)), 0);
    if (name.startsWith(STUDENT) || name.startsWith('teacher.')) assert.ok(diff <= 2 * lrSum, `${name}: an entry differs by ${diff}, more than two Adam steps`);
    else if (name.startsWith('optim.m.')) assert.ok(diff <= 1e-2 * maxAbs(w) + 1e-12, `${name}: differs by ${diff}, ${diff / maxAbs(w)} of its largest entry`);
    else if (name === CENTER) assert.ok(diff <= 1e-3 * maxAbs(w), `center differs by ${diff}`);
    else if (!name.startsWith('optim.v.')) assert.equal(Array.from(g), Array.from(w), `${name} (counts and scaler) must be equal`);
  }
  // The skipped step changed nothing but the scaler: student, teacher, moments, step counts and center as before it.
  for (const [name, values] of beforeSkip!) {
    if (name === LOSS_SCALE || name === GROWTH_TRACKER) continue;
    assert.equal(Array.from(two.state.get(name)!), Array.from(values), `${name} changed in the skipped step`);
  }
});

test('refused in the split form, naming the option: KoLeo, Sinkhorn, batch norm on 2 ranks', () => {
  const refusal = (cfg: Parameters<typeof buildDinoStepSplit>[0], ranks = 2) => {
    const r = buildDinoStepSplit(cfg, undefined, { ranks });
    return E.isLeft(r) ? r.left.map((e) => e.message).join('\n') : undefined;
  };
  const cfg = rankConfig(2);
  assert.match(refusal({ ...cfg, koleoWeight: 0.1 }) ?? '', /koleo loss term .*koleoWeight/);
  assert.match(refusal({ ...cfg, centering: 'sinkhorn' }) ?? '', /centering "sinkhorn"/);
  assert.is(refusal({ ...cfg, precision: 'fp16' }), undefined, 'fp16 loss scaling has a data-parallel form');
  assert.match(refusal({ ...cfg, head: { ...cfg.head, useBn: true } }) ?? '', /batch normalisation .*head\.useBn/);
  assert.is(refusal({ ...cfg, head: { ...cfg.head, useBn: true } }, 1), undefined, 'one rank has the whole batch: batch norm is fine');
  assert.match(refusal(cfg, 0) ?? '', /ranks must be a positive integer/);
  assert.is(refusal(cfg), undefined);
});

const unavailable = mpiUnavailable();
if (unavailable) {
  console.log(`skipping the mpirun DINO parity test: ${unavailable}`);
} else {
  test(`mpirun -np 2, ${GLOBAL_BATCH / 2} each = 1 process × ${GLOBAL_BATCH}: every rank's whole state and metrics`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dino-dp-'));
    try {
      const r = await mpirun(2, worker, [dir]);
      assert.is(r.code, 0, `mpirun failed (code ${r.code}):\n${r.stderr}`);
      const ranks = [0, 1].map((rank) => JSON.parse(readFileSync(join(dir, `rank${rank}.json`), 'utf8')) as { size: number; metrics: Record<string, number>[]; state: Record<string, number[]> });
      const asMap = (s: Record<string, number[]>) => new Map(Object.entries(s).map(([n, v]) => [n, Float32Array.from(v)]));
      for (const rank of ranks) {
        assert.is(rank.size, 2);
        const { worst, where } = compareStates(asMap(rank.state), ref.state);
        assert.ok(worst <= stateTolerance(), `largest difference ${worst} at ${where}`);
        const metrics = compareMetrics(rank.metrics, ref.metrics);
        if (rank === ranks[0]) console.log(`  mpirun -np 2: largest relative state difference ${worst.toExponential(2)} (${where}); metrics ${metrics}`);
      }
      // The same summed buffer into the same apply graph: the ranks agree exactly.
      assert.equal(ranks[1]!.state, ranks[0]!.state, 'rank 1 state differs from rank 0');
      assert.equal(ranks[1]!.metrics, ranks[0]!.metrics, 'rank 1 metrics differ from rank 0');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test.run();
