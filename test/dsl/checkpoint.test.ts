/** Gradient checkpointing (Graph.checkpoint): the recomputed backward pass gives the gradients of the plain one. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import * as ort from 'onnxruntime-node';
import { Graph, Scope, type Tensor, add, emitOnnx, gelu, gradients, matmul, sumAll, tanh } from '../../dsl/index.ts';

function build(recompute: boolean): Graph {
  const g = new Graph('ckpt');
  const x = g.input('x', 'float32', [4, 8]);
  const s = new Scope(g);
  const w1 = s.param('w1', [8, 8], { kind: 'normal', std: 0.3 });
  const w2 = s.param('w2', [8, 8], { kind: 'normal', std: 0.3 });
  const layer = (h: Tensor, w: Tensor) => add(h, gelu(matmul(tanh(h), w)));
  const body = ([h]: readonly Tensor[]) => layer(layer(h!, w1), w2);
  const y = recompute ? g.checkpoint([x], body) : body([x]);
  const loss = sumAll(tanh(y));
  const grads = gradients(loss, [w1, w2, x]);
  if (E.isLeft(grads)) throw new Error(grads.left.map((e) => e.message).join('; '));
  g.output('loss', loss);
  grads.right.forEach((t, i) => g.output(`g${i}`, t!));
  return g;
}

test('a checkpointed region gives the loss and gradients of the plain graph, from a second copy of its nodes', async () => {
  const feeds: Record<string, ort.Tensor> = {
    x: new ort.Tensor('float32', Float32Array.from({ length: 32 }, (_, i) => Math.sin(i)), [4, 8]),
    w1: new ort.Tensor('float32', Float32Array.from({ length: 64 }, (_, i) => 0.3 * Math.cos(i)), [8, 8]),
    w2: new ort.Tensor('float32', Float32Array.from({ length: 64 }, (_, i) => 0.3 * Math.sin(2 * i)), [8, 8]),
  };
  const run = async (g: Graph) => {
    const bytes = emitOnnx(g, { params: 'inputs' });
    if (E.isLeft(bytes)) throw new Error('emit failed');
    return (await ort.InferenceSession.create(bytes.right)).run(feeds);
  };
  const plainGraph = build(false), ckptGraph = build(true);
  const plain = await run(plainGraph), ckpt = await run(ckptGraph);
  for (const name of ['loss', 'g0', 'g1', 'g2']) {
    const a = plain[name]!.data as Float32Array, b = ckpt[name]!.data as Float32Array;
    a.forEach((v, i) => assert.ok(Math.abs(v - b[i]!) <= 1e-6 * Math.max(1, Math.abs(v)), `${name}[${i}]: ${v} vs ${b[i]}`));
  }
  // The region's two MatMuls run twice: once in the forward pass, once recomputed for the backward pass.
  const matmuls = (g: Graph) => g.liveNodes().filter((n) => n.op.name === 'MatMul' && !n.path.startsWith('grad')).length;
  assert.is(matmuls(plainGraph), 2);
  assert.is(matmuls(ckptGraph), 4);
});

test('a tensor inside a checkpoint that is differentiated outside it is an error', () => {
  const g = new Graph();
  const x = g.input('x', 'float32', [3]);
  const w = new Scope(g).param('w', [3], { kind: 'ones' });
  let inner: Tensor | undefined;
  const y = g.checkpoint([x], ([h]) => {
    inner = tanh(add(h!, w));
    return tanh(inner);
  });
  const grads = gradients(sumAll(add(y, inner!)), [w]);
  assert.ok(E.isLeft(grads) && grads.left.some((e) => /inside a checkpoint/.test(e.message)));
});

test.run();
