/** The op record and the walker around it: broadcast gradients summed by autodiff, attribute emission, typed attrs. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import { readFileSync } from 'node:fs';
import protobuf from 'protobufjs';
import * as D from '../../dsl/index.ts';
import { ATTRIBUTE_TYPE, TENSOR_TYPE } from '../../dsl/onnx/enums.ts';

const same = (ins: readonly D.TensorInfo[]) => [{ dtype: ins[0]!.dtype, shape: ins[0]!.shape }];
/** An identity op with the given rule; a plain record, not registered, so the gradient-check census ignores it. */
const identityWith = (name: string, vjp: D.OpDef['vjp']): D.OpDef => ({
  name, onnxType: 'Identity', attrTypes: {}, outputCount: () => 1, infer: same, vjp, flops: D.cost.free,
});

// The rule returns the cotangent broadcast to [4, ...shape]: the walker must sum the new axis.
const Broadcasting = identityWith('OpRecordTestBroadcasting', ({ grads: [g] }) => [D.expand(g!, [4, ...g!.shape])]);
// The rule returns a flattened cotangent: not a broadcast of the input, so a bug in the rule.
const Flattening = identityWith('OpRecordTestFlattening', ({ grads: [g] }) => [D.reshape(g!, [-1])]);

test('autodiff sums a gradient returned at a broadcast of its input shape', () => {
  const g = new D.Graph();
  const x = g.input('x', 'float32', [2, 3]);
  const grads = D.gradients(D.sumAll(g.apply(Broadcasting, [x])[0]!), [x]);
  if (E.isLeft(grads)) throw new Error(grads.left.map(D.formatError).join('; '));
  const gx = grads.right[0]!;
  assert.equal(gx.shape, [2, 3]);
  // ReduceSum over the broadcast axis (keepdims), then a Reshape that drops it, under the node's grad path.
  assert.is(gx.source.kind === 'node' && gx.source.node.op.name, 'Reshape');
  const summed = gx.source.kind === 'node' ? gx.source.node.inputs[0]! : gx;
  assert.is(summed.source.kind === 'node' && summed.source.node.op.name, 'ReduceSum');
  assert.equal(summed.shape, [1, 2, 3]);
  assert.ok(summed.source.kind === 'node' && summed.source.node.path.startsWith('grad'));
});

test('a gradient whose shape is not a broadcast of the input is reported as a bug in the rule', () => {
  const g = new D.Graph();
  const x = g.input('x', 'float32', [2, 3]);
  const grads = D.gradients(D.sumAll(g.apply(Flattening, [x])[0]!), [x]);
  assert.ok(E.isLeft(grads));
  if (E.isLeft(grads)) assert.match(D.formatError(grads.left[0]!), /OpRecordTestFlattening: gradient rule returned \[6\] for input 0 of shape \[2, 3\], which is not a broadcast of it \(a bug in the rule\)/);
});

test("Cast's `to` is emitted from its record as a TensorProto data type", () => {
  const g = new D.Graph();
  g.output('y', D.cast(g.input('x', 'float32', [2]), 'float64'));
  const model = D.decodeOnnx((D.emitOnnx(g, { params: 'inputs' }) as E.Right<Uint8Array>).right);
  const cast = model.graph.node.find((n: { op_type: string }) => n.op_type === 'Cast');
  assert.equal(cast.attribute, [{ name: 'to', type: ATTRIBUTE_TYPE.INT, i: TENSOR_TYPE.float64 }]);
});

test('the ONNX enum table agrees with onnx.proto', () => {
  const root = protobuf.parse(readFileSync(new URL('../../dsl/onnx/onnx.proto', import.meta.url), 'utf8'), { keepCase: true }).root;
  const dataType = root.lookupEnum('onnx.TensorProto.DataType').values;
  const protoName: Record<D.DType, string> = { float32: 'FLOAT', float64: 'DOUBLE', float16: 'FLOAT16', bfloat16: 'BFLOAT16', int32: 'INT32', int64: 'INT64', bool: 'BOOL' };
  for (const [dtype, name] of Object.entries(protoName)) assert.is(TENSOR_TYPE[dtype as D.DType], dataType[name], dtype);
  const attrType = root.lookupEnum('onnx.AttributeProto.AttributeType').values;
  for (const [name, value] of Object.entries(ATTRIBUTE_TYPE)) assert.is(value, attrType[name], name);
});

test('Graph.apply takes the attributes of the op it applies (checked by tsc)', () => {
  const g = new D.Graph();
  const x = g.input('x', 'float32', [2, 3]);
  assert.equal(g.apply(D.Reshape, [x], { shape: [6] })[0]!.shape, [6]);
  assert.equal(g.apply(D.Add, [x, x])[0]!.shape, [2, 3]); // an op without attributes needs none
  // Type-level only: never called.
  const _wrong = () => {
    // @ts-expect-error: Reshape needs its shape
    g.apply(D.Reshape, [x]);
    // @ts-expect-error: not a Reshape attribute
    g.apply(D.Reshape, [x], { shape: [6], axis: 0 });
    // @ts-expect-error: not a DType
    g.apply(D.Cast, [x], { to: 'float8e4m3' });
    // @ts-expect-error: attrTypes may only name attributes of the op
    D.defineOp<{ axis: number }>({ name: 'OpRecordTestMisspelt', flops: D.cost.free, attrTypes: { axsi: 'int' }, infer: same });
  };
  void _wrong;
});

test.run();
