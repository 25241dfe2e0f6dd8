/**
 * The KoLeo regulariser (models/koleo.ts): its value against a direct JavaScript computation of DINOv2's formula,
 * its gradient against finite differences, and its place in the DINO step (off by default; on, it leaves DINO's
 * loss as it was, reports its value, and training lowers it).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import { Graph, Prng } from '../../dsl/index.ts';
import { koleoLoss } from '../../models/koleo.ts';
import { TrainState } from '../../runtime/state.ts';
import { gradCheck } from '../helpers/gradcheck.ts';
import { runGraph } from './run.ts';
import { TINY_STEP, compileStep, emitStep, randomStepBatch } from './tiny-step.ts';

/** DINOv2's KoLeoLoss, written out: normalise, nearest other row by inner product, -mean log(distance + eps). */
function koleoReference(x: Float64Array, b: number, d: number): number {
  const rows = Array.from({ length: b }, (_, i) => {
    const r = x.subarray(i * d, (i + 1) * d);
    const norm = Math.max(Math.hypot(...r), 1e-8);
    return Array.from(r, (v) => v / norm);
  });
  let sum = 0;
  for (let i = 0; i < b; i++) {
    let best = -Infinity, nn = -1;
    for (let j = 0; j < b; j++) {
      if (j === i) continue;
      const dot = rows[i]!.reduce((s, v, k) => s + v * rows[j]![k]!, 0);
      if (dot > best) { best = dot; nn = j; }
    }
    const dist = Math.hypot(...rows[i]!.map((v, k) => v - rows[nn]![k]!));
    sum += Math.log(dist + 1e-8);
  }
  return -sum / b;
}

test('koleoLoss equals the formula computed directly', async () => {
  const b = 7, d = 5, prng = Prng.seeded(3);
  const x = Float64Array.from({ length: b * d }, () => prng.normal());
  const g = new Graph('koleo');
  g.output('loss', koleoLoss(g.input('x', 'float64', [b, d])));
  const out = await runGraph(g, new Map(), { x: { data: x, shape: [b, d] } });
  const got = out.get('loss')!.data[0]!;
  const want = koleoReference(x, b, d);
  assert.ok(Math.abs(got - want) < 1e-12 * Math.max(1, Math.abs(want)), `graph ${got} vs reference ${want}`);
  // Spread-out rows have a lower loss than rows bunched near one direction: what the regulariser rewards.
  const bunched = Float64Array.from(x, (v, i) => (i % d === 0 ? 10 : 0) + 0.1 * v);
  assert.ok(koleoReference(bunched, b, d) > want);
});

test('koleoLoss gradient matches finite differences', async () => {
  const r = await gradCheck({ inputs: [{ name: 'x', shape: [6, 4] }], build: ([x]) => koleoLoss(x!), directions: 4 });
  assert.ok(r.checks > 20);
});

test('koleoLoss refuses a batch of one (no neighbour)', () => {
  const g = new Graph('koleo');
  koleoLoss(g.input('x', 'float32', [1, 4]));
  const v = g.validate();
  assert.ok(E.isLeft(v) && v.left.some((e) => e.op === 'koleoLoss' && /B >= 2/.test(e.message)));
});

test('DINO step: weight 0 builds the graph without KoLeo, byte for byte', () => {
  assert.ok(Buffer.from(emitStep(TINY_STEP).bytes).equals(Buffer.from(emitStep({ ...TINY_STEP, koleoWeight: 0 }).bytes)));
  assert.not.ok(emitStep(TINY_STEP).graph.outputs.has('metric.koleo'));
});

test('DINO step with KoLeo: same DINO loss, koleo reported, and steps lower it', async () => {
  const plain = await compileStep(TINY_STEP);
  const withKoleo = await compileStep({ ...TINY_STEP, koleoWeight: 1 });
  const prng = Prng.seeded(5);
  const scalars = { lr: 1e-2, wd: 0, momentum: 0.99, teacher_temp: 0.04, 'gate.last_layer': 1 };
  const s1 = TrainState.init(plain.signature.state, Prng.seeded(0));
  const s2 = TrainState.init(withKoleo.signature.state, Prng.seeded(0));
  const batch = randomStepBatch(prng);
  const m1 = await plain.run(s1, batch, scalars);
  const m2 = await withKoleo.run(s2, batch, scalars);
  assert.is(m2['loss'], m1['loss'], 'the first step\'s DINO loss does not depend on the regulariser');
  assert.ok(Number.isFinite(m2['koleo']) && m1['koleo'] === undefined);
  assert.ok(m2['grad_norm'] !== m1['grad_norm'], 'KoLeo changes the gradient');
  // Ten more steps on one fixed batch: the regulariser, weighted 1 against DINO's loss, goes down.
  let last = m2['koleo']!;
  const first = last;
  for (let i = 0; i < 10; i++) last = (await withKoleo.run(s2, batch, scalars))['koleo']!;
  assert.ok(last < first, `koleo ${first} -> ${last}`);
});

test.run();
