/** The compiled optimizer updates against their closed forms (PyTorch's AdamW and SGD), several steps. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import * as D from '../../dsl/index.ts';
import { Graph, Prng, Scope } from '../../dsl/index.ts';
import { StepRunner } from '../../runtime/step-runner.ts';
import { TrainState } from '../../runtime/state.ts';
import { ort } from '../../runtime/backend.ts';

/** loss = sum(w * x) + 0.5 * sum(b^2): dL/dw = x, dL/db = b. */
function quadraticGraph() {
  const g = new Graph('opt');
  const x = g.input('x', 'float32', [3]);
  const s = new Scope(g);
  const w = s.param('weight', [1, 3], { kind: 'ones' }); // decayed (2-D)
  const b = s.param('bias', [3], { kind: 'ones' }); // not decayed
  const loss = D.add(D.sumAll(D.mul(w, x)), D.mul(D.sumAll(D.mul(b, b)), 0.5));
  g.output('metric.loss', loss);
  return { g, loss };
}

function adamwRef(p: number[], grads: (p: number[]) => number[], steps: { lr: number; wd: number }[], decay: boolean) {
  const m = p.map(() => 0), v = p.map(() => 0);
  steps.forEach(({ lr, wd }, k) => {
    const gr = grads(p);
    const t = k + 1;
    for (let i = 0; i < p.length; i++) {
      if (decay) p[i]! *= 1 - lr * wd;
      m[i] = 0.9 * m[i]! + 0.1 * gr[i]!;
      v[i] = 0.999 * v[i]! + 0.001 * gr[i]! ** 2;
      const denom = Math.sqrt(v[i]!) / Math.sqrt(1 - 0.999 ** t) + 1e-8;
      p[i]! -= (lr / (1 - 0.9 ** t)) * (m[i]! / denom);
    }
  });
  return p;
}

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) => {
  for (let i = 0; i < b.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= tol * Math.max(1, Math.abs(b[i]!)), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
};

test('AdamW: decoupled decay on weights only, bias correction, scheduled lr/wd over 5 steps', async () => {
  const { g, loss } = quadraticGraph();
  assert.ok(E.isRight(D.addOptimizerStep(g, { loss, optimizer: { kind: 'adamw' } })));
  const runner = await StepRunner.compile(g, { threads: 1 });
  const state = TrainState.init(runner.signature.state, Prng.seeded(0));
  const xv = [0.5, -1.5, 2.0];
  const sched = [0.1, 0.05, 0.2, 0.01, 0.1].map((lr, i) => ({ lr, wd: 0.04 * (i + 1) }));
  for (const s of sched) await runner.run(state, { x: new ort.Tensor('float32', Float32Array.from(xv), [3]) }, s);
  close(state.values('weight'), adamwRef([1, 1, 1], () => xv, sched, true), 1e-5, 'weight');
  close(state.values('bias'), adamwRef([1, 1, 1], (p) => [...p], sched, false), 1e-5, 'bias');
  assert.is(state.values('optim.step')[0], 5);
});

test('a gate holds parameters, moments and their step count still while closed', async () => {
  const { g, loss } = quadraticGraph();
  D.addOptimizerStep(g, { loss, optimizer: { kind: 'adamw' }, gateOf: (name) => (name === 'weight' ? 'w' : undefined) });
  const runner = await StepRunner.compile(g, { threads: 1 });
  const state = TrainState.init(runner.signature.state, Prng.seeded(0));
  const xv = [0.5, -1.5, 2.0];
  const feeds = { x: new ort.Tensor('float32', Float32Array.from(xv), [3]) };
  await runner.run(state, feeds, { lr: 0.1, wd: 0.1, 'gate.w': 0 });
  close(state.values('weight'), [1, 1, 1], 0, 'frozen weight');
  assert.is(state.values('optim.step.w')[0], 0);
  await runner.run(state, feeds, { lr: 0.1, wd: 0.1, 'gate.w': 1 });
  // first real update of the weight: bias correction as for step 1
  close(state.values('weight'), adamwRef([1, 1, 1], () => xv, [{ lr: 0.1, wd: 0.1 }], true), 1e-5, 'weight');
  assert.is(state.values('optim.step')[0], 2);
});

test('SGD with momentum and weight decay matches torch.optim.SGD over 4 steps', async () => {
  const { g, loss } = quadraticGraph();
  D.addOptimizerStep(g, { loss, optimizer: { kind: 'sgd', momentum: 0.9 } });
  const runner = await StepRunner.compile(g, { threads: 1 });
  const state = TrainState.init(runner.signature.state, Prng.seeded(0));
  const xv = [0.5, -1.5, 2.0];
  const w = [1, 1, 1], b = [1, 1, 1], bw = [0, 0, 0], bb = [0, 0, 0];
  for (let k = 0; k < 4; k++) {
    const lr = 0.1 / (k + 1), wd = 0.01;
    await runner.run(state, { x: new ort.Tensor('float32', Float32Array.from(xv), [3]) }, { lr, wd });
    for (let i = 0; i < 3; i++) {
      const gw = xv[i]! + wd * w[i]!;
      bw[i] = k === 0 ? gw : 0.9 * bw[i]! + gw;
      w[i]! -= lr * bw[i]!;
      const gb = b[i]!;
      bb[i] = k === 0 ? gb : 0.9 * bb[i]! + gb;
      b[i]! -= lr * bb[i]!;
    }
  }
  close(state.values('weight'), w, 1e-5, 'weight');
  close(state.values('bias'), b, 1e-5, 'bias');
});

test('per-parameter clipping (DINO rule) and EMA', async () => {
  const g = new Graph('clip');
  const x = g.input('x', 'float32', [4]);
  const m = g.input('m', 'float32', []);
  const y = g.input('y', 'float32', [4]);
  g.output('clipped', D.clipGradNorm(x, 3.0).grad);
  g.output('ema', D.ema(y, x, m));
  const runner = await StepRunner.compile(g, { threads: 1 });
  const xv = [3, 4, 0, 0]; // norm 5 > 3
  const out = await runner.session.run({
    x: new ort.Tensor('float32', Float32Array.from(xv), [4]),
    y: new ort.Tensor('float32', Float32Array.from([1, 1, 1, 1]), [4]),
    m: new ort.Tensor('float32', Float32Array.of(0.9), []),
  });
  const coef = 3 / (5 + 1e-6);
  close(out['clipped']!.data as Float32Array, xv.map((v) => v * coef), 1e-6, 'clipped');
  close(out['ema']!.data as Float32Array, xv.map((v) => 0.9 + 0.1 * v), 1e-6, 'ema');
});

test.run();
