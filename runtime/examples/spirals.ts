/**
 * The smallest end-to-end use of the framework: a 2-layer MLP (LayerNorm, GELU, softmax
 * cross-entropy) learns two interleaved spirals, trained only through compiled step graphs.
 */
import * as E from 'fp-ts/lib/Either.js';
import * as D from '../../dsl/index.ts';
import { Graph, Prng, Scope, formatError } from '../../dsl/index.ts';
import { StepRunner } from '../step-runner.ts';
import { TrainState } from '../state.ts';
import { ort } from '../backend.ts';

/** Two spirals, `n` points each, with a little noise; labels 0/1. */
export function twoSpirals(n: number, prng: Prng): { x: Float32Array; y: Int32Array } {
  const x = new Float32Array(2 * n * 2), y = new Int32Array(2 * n);
  for (let i = 0; i < n; i++) {
    const r = (i / n) * 1.0 + 0.05;
    const t = (i / n) * 3 * Math.PI;
    for (let c = 0; c < 2; c++) {
      const k = c * n + i;
      const a = t + c * Math.PI;
      x[2 * k] = r * Math.cos(a) + prng.normal() * 0.01;
      x[2 * k + 1] = r * Math.sin(a) + prng.normal() * 0.01;
      y[k] = c;
    }
  }
  return { x, y };
}

export function linear(s: Scope, x: D.Tensor, out: number): D.Tensor {
  return s.run(() => {
    const inF = x.dim(-1);
    const w = s.param('weight', [out, inF], { kind: 'uniform', lo: -1 / Math.sqrt(inF), hi: 1 / Math.sqrt(inF) });
    const b = s.param('bias', [out], { kind: 'zeros' });
    return D.add(D.matmul(x, D.transpose(w, [1, 0])), b);
  });
}

/** logits of a 2 -> hidden -> hidden -> 2 MLP with LayerNorm and GELU. */
export function mlp(s: Scope, x: D.Tensor, hidden: number): D.Tensor {
  let h = D.gelu(linear(s.child('fc1'), x, hidden));
  const ln = s.child('norm');
  h = ln.run(() => D.layerNorm(h, ln.param('weight', [hidden], { kind: 'ones' }), ln.param('bias', [hidden], { kind: 'zeros' })));
  h = D.gelu(linear(s.child('fc2'), h, hidden));
  return linear(s.child('head'), h, 2);
}

/** Mean softmax cross-entropy of logits [B, C] against one-hot targets [B, C]. */
export function crossEntropy(logits: D.Tensor, onehot: D.Tensor): D.Tensor {
  return D.neg(D.meanAll(D.reduceSum(D.mul(D.logSoftmax(logits, -1), onehot), -1)));
}

export interface SpiralsResult {
  readonly accuracy: number;
  readonly losses: number[];
}

/** Trains on the full set of spiral points with AdamW for `steps` full-batch steps. */
export async function trainSpirals(opts: { steps: number; seed: number; hidden?: number; lr?: number; points?: number }): Promise<SpiralsResult> {
  const prng = Prng.seeded(opts.seed);
  const n = opts.points ?? 200;
  const data = twoSpirals(n, prng);
  const batch = 2 * n;
  const onehot = new Float32Array(batch * 2);
  data.y.forEach((c, i) => (onehot[2 * i + c] = 1));

  const g = new Graph('spirals_step');
  const x = g.input('x', 'float32', [batch, 2]);
  const t = g.input('target', 'float32', [batch, 2]);
  const logits = mlp(new Scope(g), x, opts.hidden ?? 64);
  const loss = crossEntropy(logits, t);
  const step = D.addOptimizerStep(g, { loss, optimizer: { kind: 'adamw' }, clipGrad: 10 });
  if (E.isLeft(step)) throw new Error(step.left.map(formatError).join('\n'));
  g.output('metric.loss', loss);
  const correct = D.cast(D.equal(D.reduceMax(logits, -1, false), D.reduceSum(D.mul(logits, t), -1, false)), 'float32');
  g.output('metric.accuracy', D.meanAll(correct));

  const runner = await StepRunner.compile(g, { threads: 1 });
  const state = TrainState.init(runner.signature.state, prng);
  const feeds = { x: new ort.Tensor('float32', data.x, [batch, 2]), target: new ort.Tensor('float32', onehot, [batch, 2]) };
  const losses: number[] = [];
  let accuracy = 0;
  for (let i = 0; i < opts.steps; i++) {
    const m = await runner.run(state, feeds, { lr: opts.lr ?? 0.01, wd: 1e-4 });
    losses.push(m['loss']!);
    accuracy = m['accuracy']!;
  }
  await runner.release();
  return { accuracy, losses };
}
