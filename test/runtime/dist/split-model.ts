/**
 * Test helper: the spirals MLP (runtime/examples/spirals.ts) as a one-graph step and as a data-parallel pair of
 * graphs (dsl/train/split-step.ts), with the same optimizer settings, for the parity tests. Clipping is set low
 * enough to act, and the head's update gate is closed at the first step, so both paths exercise clipping and gates.
 */
import * as E from 'fp-ts/lib/Either.js';
import * as D from '../../../dsl/index.ts';
import { Graph, Prng, Scope, formatError } from '../../../dsl/index.ts';
import { crossEntropy, mlp, twoSpirals } from '../../../runtime/examples/spirals.ts';
import { ort } from '../../../runtime/backend.ts';

export const GLOBAL_BATCH = 8;
const HIDDEN = 8;
const OPTIMIZER = { optimizer: { kind: 'adamw' as const }, clipGrad: 0.05, gateOf: (name: string) => (name.startsWith('head.') ? 'head' : undefined) };

/** Three steps of scalars: the head's gate closed at step 0, lr and wd changing. */
export const SCHEDULE: readonly Record<string, number>[] = [
  { lr: 0.05, wd: 0.04, 'gate.head': 0 },
  { lr: 0.02, wd: 0.05, 'gate.head': 1 },
  { lr: 0.03, wd: 0.06, 'gate.head': 1 },
];

function orThrow<T>(r: E.Either<D.DslError[], T>): T {
  if (E.isLeft(r)) throw new Error(r.left.map(formatError).join('\n'));
  return r.right;
}

/** The global batch for step `step`: 8 spiral points (x [8, 2], one-hot targets [8, 2]), drawn from (seed, step). */
export function globalBatch(step: number): { x: Float32Array; target: Float32Array } {
  const data = twoSpirals(GLOBAL_BATCH / 2, Prng.seeded(1000 + step));
  const target = new Float32Array(GLOBAL_BATCH * 2);
  data.y.forEach((c, i) => (target[2 * i + c] = 1));
  // Interleave the classes so that each half of the batch holds both.
  const order = Array.from({ length: GLOBAL_BATCH }, (_, i) => (i % 2) * (GLOBAL_BATCH / 2) + (i >> 1));
  return { x: Float32Array.from(order.flatMap((k) => [data.x[2 * k]!, data.x[2 * k + 1]!])), target: Float32Array.from(order.flatMap((k) => [target[2 * k]!, target[2 * k + 1]!])) };
}

/** Rows [rank * B, (rank + 1) * B) of the global batch as this rank's feeds, B = GLOBAL_BATCH / ranks. */
export function rankFeeds(step: number, rank: number, ranks: number): Record<string, ort.Tensor> {
  const b = GLOBAL_BATCH / ranks;
  const { x, target } = globalBatch(step);
  return {
    x: new ort.Tensor('float32', x.slice(2 * b * rank, 2 * b * (rank + 1)), [b, 2]),
    target: new ort.Tensor('float32', target.slice(2 * b * rank, 2 * b * (rank + 1)), [b, 2]),
  };
}

function forward(g: Graph, batch: number) {
  const x = g.input('x', 'float32', [batch, 2]);
  const t = g.input('target', 'float32', [batch, 2]);
  const logits = mlp(new Scope(g), x, HIDDEN);
  const correct = D.sumAll(D.cast(D.equal(D.reduceMax(logits, -1, false), D.reduceSum(D.mul(logits, t), -1, false)), 'float32'));
  return { loss: crossEntropy(logits, t), correct };
}

/** The one-graph step on the whole global batch, as a single process trains today. */
export function oneGraphStep(): Graph {
  const g = new Graph('spirals_step');
  const { loss } = forward(g, GLOBAL_BATCH);
  orThrow(D.addOptimizerStep(g, { loss, ...OPTIMIZER }));
  g.output('metric.loss', loss);
  return g;
}

/**
 * The gradient and apply graphs for one of `ranks` equal slices. The rank's loss is its mean times B_rank / B_global,
 * so the ranks' sum is the global mean; `loss` and `correct` (a count) are summed with the gradients.
 */
export function splitStep(ranks: number): { gradient: Graph; apply: Graph; layout: D.PackedLayout } {
  const rankBatch = GLOBAL_BATCH / ranks;
  const gradient = new Graph('spirals_gradient');
  const { loss, correct } = forward(gradient, rankBatch);
  const share = ranks === 1 ? loss : D.mul(loss, rankBatch / GLOBAL_BATCH);
  const layout = orThrow(D.addGradientOutputs(gradient, { loss: share, sums: new Map([['loss', share], ['correct', correct]]) }));
  const apply = orThrow(D.buildApplyGraph(layout, { ...OPTIMIZER, name: 'spirals_apply' }));
  apply.graph.output('metric.grad_norm', apply.gradNorm);
  return { gradient, apply: apply.graph, layout };
}

/** The initial state of every tensor of the one-graph step (parameters drawn from seed 5, optimizer state zero). */
export function initialValues(): Map<string, Float32Array> {
  const specs = D.stepSignature(oneGraphStep()).state;
  const prng = Prng.seeded(5);
  return new Map(specs.map((s) => [s.name, D.drawInit(s.init, s.shape.reduce((a, b) => a * b, 1), prng)]));
}
