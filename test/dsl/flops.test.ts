/** The FLOP counter (dsl/flops.ts) against hand counts on small graphs. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import {
  Graph, Scope, add, conv2d, defineOp, gemm, gradients, layerNorm, matmul, relu, reshape, softmax, sumAll, transpose,
} from '../../dsl/index.ts';
import { countFlops, dimValue } from '../../dsl/flops.ts';

test('MatMul with broadcast batch, plus a bias Add and a ReLU', () => {
  const g = new Graph();
  const x = g.input('x', 'float32', [2, 3, 4]);
  const w = g.input('w', 'float32', [4, 5]);
  const b = g.input('b', 'float32', [5]);
  g.output('y', relu(add(matmul(x, w), b)));
  const c = countFlops(g);
  // MatMul: 2 * (2*3) rows * 5 cols * 4 inner = 240; Add 30; Relu 30.
  assert.is(c.byOp['MatMul'], 240);
  assert.is(c.byOp['Add'], 30);
  assert.is(c.byOp['Relu'], 30);
  assert.is(c.total, 300);
  assert.equal(c.byPhase, { forward: 300, backward: 0, update: 0 });
});

test('Gemm counts 2MNK plus MN for C; transposes are free', () => {
  const g = new Graph();
  const a = g.input('a', 'float32', [16, 8]); // used as A^T: M = 8, K = 16
  const w = g.input('w', 'float32', [32, 16]); // B^T: N = 32
  const c = g.input('c', 'float32', [32]);
  g.output('y', gemm(a, w, c, { transA: true, transB: true }));
  g.output('t', transpose(w, [1, 0]));
  const n = countFlops(g);
  assert.is(n.byOp['Gemm'], 2 * 8 * 32 * 16 + 8 * 32);
  assert.is(n.byOp['Transpose'], 0);
  assert.is(n.total, 2 * 8 * 32 * 16 + 8 * 32);
});

test('Conv: 2 N Cout Hout Wout (Cin/group) kh kw, plus the bias; grouped conv divides by the groups', () => {
  const g = new Graph();
  const x = g.input('x', 'float32', [2, 4, 8, 8]);
  const w = g.input('w', 'float32', [6, 4, 3, 3]);
  const b = g.input('b', 'float32', [6]);
  const wg = g.input('wg', 'float32', [6, 2, 3, 3]); // group 2: 2 input channels per group
  g.output('y', conv2d(x, w, b, { pads: [1, 1, 1, 1] })); // [2, 6, 8, 8]
  g.output('z', conv2d(x, wg, null, { strides: [2, 2], group: 2 })); // [2, 6, 3, 3]
  const n = countFlops(g);
  const dense = 2 * 2 * 6 * 8 * 8 * 4 * 3 * 3 + 2 * 6 * 8 * 8; // 55296 + 768
  const grouped = 2 * 2 * 6 * 3 * 3 * 2 * 3 * 3; // 3888
  assert.is(n.byOp['Conv'], dense + grouped);
});

test('Softmax 5 and LayerNormalization 7 per element; reductions 1 per input element', () => {
  const g = new Graph();
  const x = g.input('x', 'float32', [3, 10]);
  const s = g.input('s', 'float32', [10]);
  const b = g.input('b', 'float32', [10]);
  g.output('p', softmax(x, -1));
  g.output('n', layerNorm(x, s, b, 1e-6));
  g.output('sum', sumAll(x));
  const n = countFlops(g);
  assert.is(n.byOp['Softmax'], 150);
  assert.is(n.byOp['LayerNormalization'], 210);
  assert.is(n.byOp['ReduceSum'], 30);
  assert.is(n.total, 390);
});

test('backward: dW of x @ W costs what the forward product costs, and lands in the backward phase', () => {
  const g = new Graph();
  const x = g.input('x', 'float32', [8, 16]);
  const w = new Scope(g).param('w', [16, 4], { kind: 'zeros' });
  const loss = sumAll(matmul(x, w)); // MatMul 2*8*4*16 = 1024, ReduceSum 32
  const grads = gradients(loss, [w]);
  if (E.isLeft(grads)) throw new Error('no gradient');
  g.output('loss', loss);
  g.output('dw', grads.right[0]!);
  const n = countFlops(g);
  // Backward: the cotangent of ReduceSum is an Expand (free), dW = x^T @ g: 2*16*4*8 = 1024.
  assert.equal(n.byPhase, { forward: 1024 + 32, backward: 1024, update: 0 });
});

test('only live nodes count; symbolic dims take the values given, and a missing one throws', () => {
  const g = new Graph();
  const x = g.input('x', 'float32', ['batch', 4]);
  const w = g.input('w', 'float32', [4, 2]);
  const y = matmul(x, w);
  relu(y); // dead: no output depends on it
  g.output('y', reshape(y, [-1]));
  assert.is(countFlops(g, { dims: { batch: 3 } }).total, 2 * 3 * 2 * 4);
  assert.is(countFlops(g, { dims: { batch: 3 } }).nodes, 2);
  assert.throws(() => countFlops(g), /batch/);
  assert.is(dimValue('50*batch', { batch: 2 }), 100);
});

test('a graph with a recorded build error is refused', () => {
  const g = new Graph();
  const x = g.input('x', 'float32', [2, 3]);
  g.output('y', matmul(x, x)); // inner dims differ
  assert.throws(() => countFlops(g), /inner dims/);
});

test("an op's cost is its record's flops rule, and a record without one does not compile", () => {
  const Stencil = defineOp({
    name: 'FlopsTestStencil',
    onnxType: 'Identity',
    flops: ({ outputs: [y], numel }) => 3 * numel(y!),
    infer: (ins) => [{ dtype: ins[0]!.dtype, shape: ins[0]!.shape }],
  });
  const g = new Graph();
  const x = g.input('x', 'float32', [5]);
  g.output('y', add(g.apply(Stencil, [x])[0]!, 1));
  const n = countFlops(g);
  assert.is(n.byOp['FlopsTestStencil'], 15);
  assert.is(n.total, 20);
  // Type-level only (never called, so nothing is registered): tsc rejects an op without a FLOP rule.
  const _uncounted = () =>
    // @ts-expect-error: `flops` is required
    defineOp({ name: 'FlopsTestUncounted', infer: (ins) => [{ dtype: ins[0]!.dtype, shape: ins[0]!.shape }] });
  void _uncounted;
});

test.run();
