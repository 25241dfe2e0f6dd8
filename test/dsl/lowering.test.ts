/**
 * Lowering a graph for its target (dsl/graph.ts `Target`): an op the target lacks is built as its record's lowering
 * where it is applied, so autodiff differentiates what runs; an autocast product in a 16-bit dtype the target has
 * no MatMul for computes that dtype's roundings in float32; emission refuses an op the target lacks that was not
 * lowered.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import { ANY_TARGET, Graph, Scope, type Target, autocastMatmul, emitOnnx, exp, gradients, logSoftmax, logSoftmaxComposite, reduceSum } from '../../dsl/index.ts';

const NO_LOGSOFTMAX: Target = { name: 'no-logsoftmax', missingOps: ['LogSoftmax'], matmulDtypes: ['float16'] };

/** Op types of the emitted nodes, in order. */
const opTypes = (g: Graph) => g.liveNodes().map((n) => n.op.onnxType);

/** A loss through log softmax, differentiated, on `target`; or with the composite called by hand. */
function logSoftmaxLoss(target: Target, byHand = false): Graph {
  const g = new Graph('lsm', target);
  const x = g.input('x', 'float32', [2, 3]);
  const y = byHand ? logSoftmaxComposite(x, -1) : logSoftmax(x, -1);
  const loss = reduceSum(y, [0, 1]);
  g.output('loss', loss);
  const dx = gradients(loss, [x]);
  if (E.isLeft(dx)) throw new Error('gradients');
  g.output('dx', dx.right[0]!);
  return g;
}

test('LogSoftmax on a target without it is its lowering, forward and backward, node for node as the composite', () => {
  const lowered = logSoftmaxLoss(NO_LOGSOFTMAX);
  assert.not.ok(opTypes(lowered).includes('LogSoftmax'));
  const byHand = logSoftmaxLoss(NO_LOGSOFTMAX, true);
  const bytes = (g: Graph) => { const b = emitOnnx(g, { params: 'inputs' }); if (E.isLeft(b)) throw new Error('emit'); return Buffer.from(b.right); };
  assert.ok(bytes(lowered).equals(bytes(byHand)), 'the lowered graph is the hand-written composite, byte for byte');
  assert.ok(opTypes(logSoftmaxLoss(ANY_TARGET)).includes('LogSoftmax'), 'a target with the op keeps it');
});

test('emission refuses an op the target lacks that has no lowering, naming the target and the node', () => {
  const g = new Graph('exp', { name: 'no-exp', missingOps: ['Exp'], matmulDtypes: [] });
  g.output('y', exp(g.input('x', 'float32', [2])));
  const r = emitOnnx(g, { params: 'inputs' });
  assert.ok(E.isLeft(r));
  if (E.isLeft(r)) assert.match(r.left[0]!.message, /the target "no-exp" has no Exp kernel and the op has no lowering \(node Exp\)/);
});

test('bf16 autocast on a target without bfloat16 MatMul is bf16-emulated\'s graph; with it, a bfloat16 MatMul', () => {
  const product = (target: Target, precision: 'bf16' | 'bf16-emulated') => {
    const g = new Graph('mm', target);
    const s = new Scope(g, '', '', precision);
    g.output('y', autocastMatmul(s, g.input('a', 'float32', [2, 3]), g.input('b', 'float32', [3, 2])));
    const b = emitOnnx(g, { params: 'inputs' });
    if (E.isLeft(b)) throw new Error('emit');
    return { bytes: Buffer.from(b.right), matmulDtypes: g.liveNodes().filter((n) => n.op.name === 'MatMul').map((n) => n.inputs[0]!.dtype) };
  };
  const lowered = product(NO_LOGSOFTMAX, 'bf16');
  assert.equal(lowered.matmulDtypes, ['float32']);
  assert.ok(lowered.bytes.equals(product(ANY_TARGET, 'bf16-emulated').bytes));
  assert.equal(product(ANY_TARGET, 'bf16').matmulDtypes, ['bfloat16']);
});

test.run();
