/**
 * Sinkhorn-Knopp teacher targets (models/sinkhorn.ts): against the iterations computed directly in float64, their
 * row and column sums, no overflow at DINOv2's sharpest temperature, no gradient; and their place in the DINO step
 * (off by default, byte for byte; on, the center keeps its update and the loss changes).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import { Graph, Prng, gradients, mul, sumAll } from '../../dsl/index.ts';
import { SINKHORN_ITERATIONS, sinkhornKnopp } from '../../models/sinkhorn.ts';
import { buildDinoStep } from '../../models/dino-step.ts';
import { TrainState } from '../../runtime/state.ts';
import { ort } from '../../runtime/backend.ts';
import { runGraph } from './run.ts';
import { TINY_STEP, compileStep, emitStep, randomStepBatch } from './tiny-step.ts';

/**
 * The algorithm as written (SwAV's and DINOv2's order): Q = exp(L / τ) / Σ Q, then per iteration every column divided
 * by its sum and by K, every row by its sum and by N; finally Q times N, so rows sum to 1.
 */
function sinkhornDirect(logits: Float64Array, n: number, k: number, temp: number, iterations: number): Float64Array {
  const q = logits.map((v) => Math.exp(v / temp));
  const total = q.reduce((a, b) => a + b, 0);
  for (let i = 0; i < q.length; i++) q[i]! /= total;
  for (let it = 0; it < iterations; it++) {
    for (let c = 0; c < k; c++) {
      let s = 0;
      for (let r = 0; r < n; r++) s += q[r * k + c]!;
      for (let r = 0; r < n; r++) q[r * k + c] = q[r * k + c]! / s / k;
    }
    for (let r = 0; r < n; r++) {
      let s = 0;
      for (let c = 0; c < k; c++) s += q[r * k + c]!;
      for (let c = 0; c < k; c++) q[r * k + c] = q[r * k + c]! / s / n;
    }
  }
  // With no iteration the rows are not normalised yet: DINOv2 would not run this, the graph gives softmax.
  if (iterations === 0) {
    for (let r = 0; r < n; r++) {
      let s = 0;
      for (let c = 0; c < k; c++) s += q[r * k + c]!;
      for (let c = 0; c < k; c++) q[r * k + c] = q[r * k + c]! / s / n;
    }
  }
  return q.map((v) => v * n);
}

/** The same iterations on log Q in float64 (exp(L / τ) overflows float64 too at τ = 0.02 and |L| = 50). */
function sinkhornLogReference(logits: Float64Array, n: number, k: number, temp: number, iterations: number): Float64Array {
  const l = logits.map((v) => v / temp);
  const lse = (idx: number[]) => {
    const m = Math.max(...idx.map((i) => l[i]!));
    return m + Math.log(idx.reduce((s, i) => s + Math.exp(l[i]! - m), 0));
  };
  const col = (c: number) => Array.from({ length: n }, (_, r) => r * k + c);
  const row = (r: number) => Array.from({ length: k }, (_, c) => r * k + c);
  for (let it = 0; it < iterations; it++) {
    for (let c = 0; c < k; c++) { const s = lse(col(c)) + Math.log(k); for (const i of col(c)) l[i] = l[i]! - s; }
    for (let r = 0; r < n; r++) { const s = lse(row(r)) + Math.log(n); for (const i of row(r)) l[i] = l[i]! - s; }
  }
  for (let r = 0; r < n; r++) { const s = lse(row(r)); for (const i of row(r)) l[i] = l[i]! - s; }
  return l.map(Math.exp);
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let worst = 0;
  for (let i = 0; i < b.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
};
const sums = (q: ArrayLike<number>, n: number, k: number, axis: 0 | 1) =>
  Array.from({ length: axis === 0 ? k : n }, (_, j) => {
    let s = 0;
    for (let i = 0; i < (axis === 0 ? n : k); i++) s += axis === 0 ? q[i * k + j]! : q[j * k + i]!;
    return s;
  });

async function runSinkhorn(logits: Float64Array | Float32Array, n: number, k: number, temp: number, iterations = SINKHORN_ITERATIONS) {
  const dtype = logits instanceof Float64Array ? 'float64' : 'float32';
  const g = new Graph('sinkhorn');
  const out = sinkhornKnopp(g.input('t', dtype, [n, k]), g.input('temp', dtype, []), iterations);
  g.output('q', out.q);
  g.output('logq', out.logQ);
  const temps = dtype === 'float64' ? Float64Array.of(temp) : Float32Array.of(temp);
  const r = await runGraph(g, new Map(), { t: { data: logits, shape: [n, k] }, temp: { data: temps, shape: [] } });
  return { q: r.get('q')!.data, logQ: r.get('logq')!.data };
}

test('sinkhornKnopp equals the iterations computed directly (float64), for 0 to 5 iterations', async () => {
  const n = 12, k = 9, temp = 0.3, prng = Prng.seeded(11);
  const logits = Float64Array.from({ length: n * k }, () => prng.normal());
  for (const iterations of [0, 1, 2, 3, 5]) {
    const want = sinkhornDirect(logits, n, k, temp, iterations);
    const { q, logQ } = await runSinkhorn(logits, n, k, temp, iterations);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(q[i]! - want[i]!) / want[i]!, Math.abs(Math.exp(logQ[i]!) - want[i]!) / want[i]!);
    assert.ok(worst < 1e-12, `${iterations} iterations: relative error ${worst}`);
    // the log-domain reference used at τ = 0.02 below is the same maths
    assert.ok(maxAbsDiff(sinkhornLogReference(logits, n, k, temp, iterations), want) < 1e-14);
    for (const s of sums(q, n, k, 1)) assert.ok(Math.abs(s - 1) < 1e-13, `row sum ${s}`);
  }
});

test('sinkhornKnopp balances the prototypes: column sums near N/K where softmax leaves them uneven', async () => {
  const n = 32, k = 16, prng = Prng.seeded(4);
  const spread = (q: ArrayLike<number>) => Math.max(...sums(q, n, k, 0).map((s) => Math.abs(s * k / n - 1)));
  const spreads = async (logits: Float64Array, temp: number) => {
    const out: number[] = [];
    for (const iterations of [0, SINKHORN_ITERATIONS, 30]) out.push(spread((await runSinkhorn(logits, n, k, temp, iterations)).q));
    return out;
  };
  // random logits: 3 iterations already balance the columns to a fraction of a percent, 30 to rounding
  const [soft, three, many] = await spreads(Float64Array.from({ length: n * k }, () => prng.normal()), 1);
  assert.ok(soft! > 0.2 && three! < 0.01 && many! < 1e-9, `column spread: softmax ${soft}, ${SINKHORN_ITERATIONS} iterations ${three}, 30 iterations ${many}`);
  // one prototype favoured by every sample, sharply: softmax gives it 4x its share; 3 iterations cut the excess tenfold
  const skewed = Float64Array.from({ length: n * k }, (_, i) => 0.3 * prng.normal() + (i % k === 0 ? 0.5 : 0));
  const [soft2, three2, many2] = await spreads(skewed, 0.1);
  assert.ok(soft2! > 3 && three2! < soft2! / 10 && many2! < 1e-4, `skewed column spread: softmax ${soft2}, ${SINKHORN_ITERATIONS} iterations ${three2}, 30 iterations ${many2}`);
});

test('sinkhornKnopp does not overflow at τ = 0.02 with logits up to ±50 (float32 and float64)', async () => {
  const n = 16, k = 24, temp = 0.02, prng = Prng.seeded(7);
  const logits = Float64Array.from({ length: n * k }, () => 50 * (2 * prng.uniform() - 1));
  const want = sinkhornLogReference(logits, n, k, temp, SINKHORN_ITERATIONS);
  assert.ok(!Number.isFinite(Math.exp(50 / temp)), 'the naive exp would overflow even float64');
  const f64 = await runSinkhorn(logits, n, k, temp);
  assert.ok(maxAbsDiff(f64.q, want) < 1e-12, `float64: ${maxAbsDiff(f64.q, want)}`);
  const f32 = await runSinkhorn(Float32Array.from(logits), n, k, temp);
  assert.ok(f32.q.every(Number.isFinite) && f32.logQ.every((v) => !Number.isNaN(v) && v <= 1e-3), 'finite targets');
  // float32 holds L / τ ~ 2500 to ~1e-4, so the targets agree to about that
  assert.ok(maxAbsDiff(f32.q, want) < 2e-3, `float32: ${maxAbsDiff(f32.q, want)}`);
  for (const s of sums(f32.q, n, k, 1)) assert.ok(Math.abs(s - 1) < 1e-5, `row sum ${s}`);
});

test('sinkhornKnopp passes no gradient to the logits, and refuses a rank other than 2', () => {
  const g = new Graph('sinkhorn');
  const t = g.input('t', 'float32', [4, 3]);
  const grads = gradients(sumAll(mul(sinkhornKnopp(t, 0.1).logQ, g.input('w', 'float32', [4, 3]))), [t]);
  assert.ok(E.isRight(grads) && grads.right[0] === null);
  const bad = new Graph('sinkhorn');
  sinkhornKnopp(bad.input('t', 'float32', [2, 4, 3]), 0.1);
  const v = bad.validate();
  assert.ok(E.isLeft(v) && v.left.some((e) => e.op === 'sinkhornKnopp' && /\[N, K\]/.test(e.message)));
});

test('DINO step: centering "center" builds the graph without the option, byte for byte; "sinkhorn" another', () => {
  const plain = Buffer.from(emitStep(TINY_STEP).bytes);
  assert.ok(plain.equals(Buffer.from(emitStep({ ...TINY_STEP, centering: 'center' }).bytes)));
  assert.not.ok(plain.equals(Buffer.from(emitStep({ ...TINY_STEP, centering: 'sinkhorn' }).bytes)));
  const bad = buildDinoStep({ ...TINY_STEP, centering: 'bogus' as never });
  assert.ok(E.isLeft(bad) && /centering must be one of center, sinkhorn, got "bogus"/.test(bad.left[0]!.message));
});

test('DINO step with Sinkhorn-Knopp: same center update, another loss, finite over a few steps', async () => {
  const centered = await compileStep(TINY_STEP);
  const sk = await compileStep({ ...TINY_STEP, centering: 'sinkhorn' });
  assert.equal(sk.signature.state.map((s) => s.name).sort(), centered.signature.state.map((s) => s.name).sort(), 'one state layout');
  const prng = Prng.seeded(5);
  const k = TINY_STEP.head.outDim;
  const scalars = { lr: 1e-2, wd: 0, momentum: 0.99, teacher_temp: 0.04, 'gate.last_layer': 1 };
  const s1 = TrainState.init(centered.signature.state, Prng.seeded(0));
  const s2 = TrainState.init(sk.signature.state, Prng.seeded(0));
  // a nonzero center, so that 'center' mode's targets depend on it
  const c0 = Float32Array.from({ length: k }, () => 0.05 * prng.normal());
  s1.set('center', new ort.Tensor('float32', Float32Array.from(c0), [1, k]));
  s2.set('center', new ort.Tensor('float32', Float32Array.from(c0), [1, k]));
  const batch = randomStepBatch(prng);
  const m1 = await centered.run(s1, batch, scalars);
  const m2 = await sk.run(s2, batch, scalars);
  assert.ok(Number.isFinite(m2['loss']) && m2['loss'] !== m1['loss'], `loss ${m1['loss']} (center) vs ${m2['loss']} (sinkhorn)`);
  assert.equal(s2.get('center')!.data, s1.get('center')!.data, 'the center moves as in centering mode');
  assert.ok(m2['teacher_entropy']! > 0 && m2['teacher_entropy']! < Math.log(k) && m2['teacher_kl']! >= 0);
  for (let i = 0; i < 4; i++) {
    const m = await sk.run(s2, randomStepBatch(prng), scalars);
    for (const name of ['loss', 'teacher_entropy', 'teacher_kl', 'grad_norm'] as const) assert.ok(Number.isFinite(m[name]), `step ${i + 2} ${name} ${m[name]}`);
  }
  await centered.release();
  await sk.release();
});

test.run();
