/** Whole-graph checks: a composite network's gradient, aggregated errors, standard-ONNX-only emission. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import * as D from '../../dsl/index.ts';
import { Graph, Scope } from '../../dsl/index.ts';
import { gradCheck } from '../helpers/gradcheck.ts';
import { crossEntropy, mlp } from '../../runtime/examples/spirals.ts';

test('2-layer MLP with LayerNorm, GELU and softmax cross-entropy: gradient along random directions', async () => {
  // float32 because of Erf (inside GELU): see the Erf case in grad-cases/elementwise.ts for the tolerance.
  const onehot = [1, 0, 0, 1, 0, 1, 1, 0, 0, 1];
  const r = await gradCheck({
    dtype: 'float32', eps: 1e-2, tol: 2e-2, directions: 4, elementwiseLimit: 0,
    inputs: [
      { name: 'x', shape: [5, 3] },
      { name: 'w1', shape: [8, 3] }, { name: 'b1', shape: [8] },
      { name: 'g', shape: [8], gen: (p) => p.range(0.5, 1.5) }, { name: 'beta', shape: [8] },
      { name: 'w2', shape: [2, 8] }, { name: 'b2', shape: [2] },
      { name: 't', shape: [5, 2], constant: { dtype: 'float32', data: onehot } },
    ],
    build: ([x, w1, b1, g, beta, w2, b2, t]) => {
      const h = D.layerNorm(D.gelu(D.add(D.matmul(x!, D.transpose(w1!, [1, 0])), b1!)), g!, beta!, 1e-5);
      const logits = D.add(D.matmul(h, D.transpose(w2!, [1, 0])), b2!);
      return crossEntropy(logits, t!);
    },
  });
  assert.ok(r.checks >= 4);
});

test('a graph with several shape mistakes reports all of them, each with op, module path and shapes', () => {
  const g = new Graph('broken');
  const s = new Scope(g);
  const x = g.input('x', 'float32', ['batch', 16]);
  const w = s.child('blocks.0.mlp.fc1').run(() => {
    const w = s.child('blocks.0.mlp.fc1').param('weight', [32, 8], { kind: 'zeros' });
    return D.matmul(x, D.transpose(w, [1, 0])); // 16 vs 8: mistake 1
  });
  const y = D.add(w, D.reshape(x, [4, 4])); // poisoned lhs: no cascade error; reshape of symbolic batch: mistake 2
  const z = s.child('blocks.1.attn').run(() => D.softmax(D.concat([x, g.input('other', 'float32', ['batch', 3, 2])], 1), 5)); // mistake 3
  g.output('y', y);
  g.output('z', z);
  const v = g.validate();
  assert.ok(E.isLeft(v));
  if (E.isRight(v)) return;
  assert.is(v.left.length, 3, v.left.map(D.formatError).join('\n'));
  const [e1, e2, e3] = v.left;
  assert.is(e1!.op, 'MatMul');
  assert.is(e1!.path, 'blocks.0.mlp.fc1');
  assert.equal(e1!.shapes, ['float32[batch, 16]', 'float32[8, 32]']);
  assert.is(e2!.op, 'Reshape');
  assert.match(e2!.message, /\[batch, 16\]/);
  assert.is(e3!.op, 'Concat');
  assert.is(e3!.path, 'blocks.1.attn');
  // emission refuses the graph with the same list
  const bytes = D.emitOnnx(g, { params: 'inputs' });
  assert.ok(E.isLeft(bytes) && bytes.left.length === 3);
});

test('a gradient reaching an op without a rule is a loud error naming it', () => {
  const g = new Graph('nograd');
  const x = g.input('x', 'float32', [3]);
  const y = D.sumAll(D.mul(D.sign(x), x));
  const r = D.gradients(D.add(y, D.sumAll(D.mul(x, x))), [x]);
  // Sign has no VJP but its output is multiplied by x, so a cotangent reaches it
  assert.ok(E.isLeft(r));
  if (E.isLeft(r)) assert.match(r.left[0]!.message, /no gradient rule for Sign/);
});

test('training graphs contain only default-domain ONNX operators', () => {
  const g = new Graph('step');
  const x = g.input('x', 'float32', [4, 2]);
  const t = g.input('t', 'float32', [4, 2]);
  const loss = crossEntropy(mlp(new Scope(g), x, 8), t);
  const r = D.addOptimizerStep(g, { loss, optimizer: { kind: 'adamw' }, clipGrad: 3 });
  assert.ok(E.isRight(r));
  const model = D.decodeOnnx((D.emitOnnx(g, { params: 'inputs' }) as E.Right<Uint8Array>).right);
  // proto3 leaves empty strings off the wire: a missing domain is the default domain
  assert.equal(model.opset_import.map((o: { domain?: string; version: number }) => [o.domain ?? '', o.version]), [['', D.OPSET]]);
  const domains = new Set(model.graph.node.map((n: { domain?: string }) => n.domain ?? ''));
  assert.equal([...domains], ['']);
  assert.ok(model.graph.node.length > 50);
});

test('stopGradient: y = x * stop(x) has dy/dx = x, not 2x', async () => {
  const g = new Graph('sg');
  const x = g.input('x', 'float32', [3]);
  const y = D.sumAll(D.mul(x, D.stopGradient(x)));
  const r = D.gradients(y, [x]);
  assert.ok(E.isRight(r));
  if (E.isLeft(r)) return;
  g.output('g', r.right[0]!);
  const { createSession, ort } = await import('../../runtime/backend.ts');
  const s = await createSession((D.emitOnnx(g, { params: 'inputs' }) as E.Right<Uint8Array>).right);
  const out = await s.run({ x: new ort.Tensor('float32', Float32Array.from([1, -2, 3]), [3]) });
  assert.equal(Array.from(out['g']!.data as Float32Array), [1, -2, 3]);
});

test.run();
