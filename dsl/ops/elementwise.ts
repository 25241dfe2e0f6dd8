/**
 * Element-wise ops with numpy broadcasting. A VJP returns an operand's gradient at the broadcast (output)
 * shape; autodiff sums it over the broadcast axes (dsl/autodiff.ts), so the rules here stay one line.
 */
import { type DType, type Tensor, type TensorInfo, Graph, isFloat } from '../graph.ts';
import { cost, defineOp, type OpDef } from '../op.ts';
import { broadcastShapes } from '../shape.ts';

export type TensorLike = Tensor | number;

function graphOf(...xs: TensorLike[]): Graph {
  for (const x of xs) if (typeof x !== 'number') return x.graph;
  throw new Error('an op needs at least one tensor argument');
}

/** Turns a JS number into a scalar constant of the other operand's dtype. */
export function lift(x: TensorLike, like: TensorLike): Tensor {
  if (typeof x !== 'number') return x;
  const dtype: DType = typeof like === 'number' ? 'float32' : like.dtype;
  return graphOf(like).scalar(x, dtype);
}

function binaryInfer(outDtype?: DType) {
  return (ins: readonly TensorInfo[]): TensorInfo[] | string => {
    const [a, b] = ins as [TensorInfo, TensorInfo];
    if (a.dtype !== b.dtype) return `dtype mismatch: ${a.dtype} vs ${b.dtype}`;
    const shape = broadcastShapes(a.shape, b.shape);
    if (typeof shape === 'string') return shape;
    return [{ dtype: outDtype ?? a.dtype, shape }];
  };
}

const unaryInfer = (ins: readonly TensorInfo[]): TensorInfo[] | string => {
  const x = ins[0]!;
  return isFloat(x.dtype) ? [{ dtype: x.dtype, shape: x.shape }] : `expects a float tensor, got ${x.dtype}`;
};

// ---- binary arithmetic -------------------------------------------------------------------------

export const Add = defineOp({
  name: 'Add',
  flops: cost.elementwise,
  infer: binaryInfer(),
  vjp: ({ grads: [g] }) => [g!, g!],
});
export const Sub = defineOp({
  name: 'Sub',
  flops: cost.elementwise,
  infer: binaryInfer(),
  vjp: ({ grads: [g] }) => [g!, neg(g!)],
});
export const Mul = defineOp({
  name: 'Mul',
  flops: cost.elementwise,
  infer: binaryInfer(),
  vjp: ({ inputs: [a, b], grads: [g] }) => [mul(g!, b!), mul(g!, a!)],
});
export const Div = defineOp({
  name: 'Div',
  flops: cost.elementwise,
  infer: binaryInfer(),
  vjp: ({ inputs: [a, b], outputs: [y], grads: [g] }) => {
    const ga = div(g!, b!);
    return [ga, neg(mul(ga, y!))];
  },
});
export const Pow = defineOp({
  name: 'Pow',
  flops: cost.elementwise,
  infer: binaryInfer(),
  vjp: ({ inputs: [a, b], outputs: [y], grads: [g] }) => {
    // d/da a^b = b a^(b-1);  d/db a^b = a^b log a (only meaningful for a > 0).
    const ga = mul(g!, mul(b!, pow(a!, sub(b!, 1))));
    const gb = b!.source.kind === 'const' ? null : mul(g!, mul(y!, log(a!)));
    return [ga, gb];
  },
});
export const Max = defineOp({
  name: 'Max',
  flops: cost.elementwise,
  infer: binaryInfer(),
  vjp: ({ inputs: [a, b], grads: [g] }) => {
    const takeA = greaterOrEqual(a!, b!);
    return [where(takeA, g!, 0), where(takeA, 0, g!)];
  },
});
export const Min = defineOp({
  name: 'Min',
  flops: cost.elementwise,
  infer: binaryInfer(),
  vjp: ({ inputs: [a, b], grads: [g] }) => {
    const takeA = lessOrEqual(a!, b!);
    return [where(takeA, g!, 0), where(takeA, 0, g!)];
  },
});

// ---- comparisons (not differentiable) ----------------------------------------------------------

export const Equal = defineOp({ name: 'Equal', flops: cost.elementwise, infer: binaryInfer('bool') });
export const Less = defineOp({ name: 'Less', flops: cost.elementwise, infer: binaryInfer('bool') });
export const Greater = defineOp({ name: 'Greater', flops: cost.elementwise, infer: binaryInfer('bool') });
export const LessOrEqual = defineOp({ name: 'LessOrEqual', flops: cost.elementwise, infer: binaryInfer('bool') });
export const GreaterOrEqual = defineOp({ name: 'GreaterOrEqual', flops: cost.elementwise, infer: binaryInfer('bool') });
export const And = defineOp({
  name: 'And',
  flops: cost.elementwise,
  infer: (ins) => (ins.every((i) => i.dtype === 'bool') ? binaryInfer('bool')(ins) : 'And expects bool tensors'),
});

// ---- unary ---------------------------------------------------------------------------------------

export const Neg = defineOp({ name: 'Neg', flops: cost.elementwise, infer: unaryInfer, vjp: ({ grads: [g] }) => [neg(g!)] });
export const Abs = defineOp({ name: 'Abs', flops: cost.elementwise, infer: unaryInfer, vjp: ({ inputs: [x], grads: [g] }) => [mul(g!, sign(x!))] });
export const Sign = defineOp({ name: 'Sign', flops: cost.elementwise, infer: unaryInfer });
export const Sqrt = defineOp({
  name: 'Sqrt',
  flops: cost.elementwise,
  infer: unaryInfer,
  vjp: ({ outputs: [y], grads: [g] }) => [div(mul(g!, 0.5), y!)],
});
export const Reciprocal = defineOp({
  name: 'Reciprocal',
  flops: cost.elementwise,
  infer: unaryInfer,
  vjp: ({ outputs: [y], grads: [g] }) => [neg(mul(g!, mul(y!, y!)))],
});
export const Exp = defineOp({ name: 'Exp', flops: cost.elementwise, infer: unaryInfer, vjp: ({ outputs: [y], grads: [g] }) => [mul(g!, y!)] });
export const Log = defineOp({ name: 'Log', flops: cost.elementwise, infer: unaryInfer, vjp: ({ inputs: [x], grads: [g] }) => [div(g!, x!)] });
export const Tanh = defineOp({
  name: 'Tanh',
  flops: cost.elementwise,
  infer: unaryInfer,
  vjp: ({ outputs: [y], grads: [g] }) => [mul(g!, sub(1, mul(y!, y!)))],
});
export const Sigmoid = defineOp({
  name: 'Sigmoid',
  flops: cost.elementwise,
  infer: unaryInfer,
  vjp: ({ outputs: [y], grads: [g] }) => [mul(g!, mul(y!, sub(1, y!)))],
});
export const Relu = defineOp({
  name: 'Relu',
  flops: cost.elementwise,
  infer: unaryInfer,
  vjp: ({ inputs: [x], grads: [g] }) => [where(greater(x!, 0), g!, 0)],
});
export const Erf = defineOp({
  name: 'Erf',
  flops: cost.elementwise,
  infer: unaryInfer,
  // d/dx erf(x) = 2/sqrt(pi) exp(-x^2)
  vjp: ({ inputs: [x], grads: [g] }) => [mul(g!, mul(exp(neg(mul(x!, x!))), 2 / Math.sqrt(Math.PI)))],
});
export const Identity = defineOp({
  name: 'Identity',
  flops: cost.free,
  infer: (ins) => [{ dtype: ins[0]!.dtype, shape: ins[0]!.shape }],
  vjp: ({ grads: [g] }) => [g!],
});
/** Identity forward, no gradient backward: the teacher branch and the DINO center are cut off with it. */
export const StopGradient = defineOp({
  name: 'StopGradient',
  flops: cost.free,
  onnxType: 'Identity',
  infer: (ins) => [{ dtype: ins[0]!.dtype, shape: ins[0]!.shape }],
  vjp: () => [null],
});
export const Cast = defineOp<{ to: DType }>({
  name: 'Cast',
  flops: cost.free,
  attrTypes: { to: 'dtype' },
  infer: (ins, { to }) => [{ dtype: to, shape: ins[0]!.shape }],
  vjp: ({ inputs: [x], grads: [g] }) => (isFloat(x!.dtype) ? [cast(g!, x!.dtype)] : [null]),
});
export const Clip = defineOp<{ min: number; max: number }>({
  name: 'Clip',
  flops: cost.elementwise,
  infer: unaryInfer,
  constInputs: ({ min, max }, ins) => [
    { dtype: ins[0]!.dtype, shape: [], data: [min] },
    { dtype: ins[0]!.dtype, shape: [], data: [max] },
  ],
  vjp: ({ inputs: [x], attrs: { min, max }, grads: [g] }) => [where(and(greaterOrEqual(x!, min), lessOrEqual(x!, max)), g!, 0)],
});
export const Where = defineOp({
  name: 'Where',
  flops: cost.elementwise,
  infer: (ins) => {
    const [c, a, b] = ins as [TensorInfo, TensorInfo, TensorInfo];
    if (c.dtype !== 'bool') return `condition must be bool, got ${c.dtype}`;
    if (a.dtype !== b.dtype) return `dtype mismatch: ${a.dtype} vs ${b.dtype}`;
    const ab = broadcastShapes(a.shape, b.shape);
    if (typeof ab === 'string') return ab;
    const shape = broadcastShapes(c.shape, ab);
    if (typeof shape === 'string') return shape;
    return [{ dtype: a.dtype, shape }];
  },
  vjp: ({ inputs: [c], grads: [g] }) => [
    null,
    where(c!, g!, 0),
    where(c!, 0, g!),
  ],
});

// ---- DSL functions -------------------------------------------------------------------------------

function binary(op: OpDef, a: TensorLike, b: TensorLike): Tensor {
  const ta = lift(a, b), tb = lift(b, a);
  return ta.graph.apply(op, [ta, tb])[0]!;
}
const unary = (op: OpDef, x: Tensor): Tensor => x.graph.apply(op, [x])[0]!;

export const add = (a: TensorLike, b: TensorLike): Tensor => binary(Add, a, b);
export const sub = (a: TensorLike, b: TensorLike): Tensor => binary(Sub, a, b);
export const mul = (a: TensorLike, b: TensorLike): Tensor => binary(Mul, a, b);
export const div = (a: TensorLike, b: TensorLike): Tensor => binary(Div, a, b);
export const pow = (a: TensorLike, b: TensorLike): Tensor => binary(Pow, a, b);
export const maximum = (a: TensorLike, b: TensorLike): Tensor => binary(Max, a, b);
export const minimum = (a: TensorLike, b: TensorLike): Tensor => binary(Min, a, b);
export const equal = (a: TensorLike, b: TensorLike): Tensor => binary(Equal, a, b);
export const less = (a: TensorLike, b: TensorLike): Tensor => binary(Less, a, b);
export const greater = (a: TensorLike, b: TensorLike): Tensor => binary(Greater, a, b);
export const lessOrEqual = (a: TensorLike, b: TensorLike): Tensor => binary(LessOrEqual, a, b);
export const greaterOrEqual = (a: TensorLike, b: TensorLike): Tensor => binary(GreaterOrEqual, a, b);
export const and = (a: Tensor, b: Tensor): Tensor => a.graph.apply(And, [a, b])[0]!;

export const neg = (x: Tensor): Tensor => unary(Neg, x);
export const abs = (x: Tensor): Tensor => unary(Abs, x);
export const sign = (x: Tensor): Tensor => unary(Sign, x);
export const sqrt = (x: Tensor): Tensor => unary(Sqrt, x);
export const reciprocal = (x: Tensor): Tensor => unary(Reciprocal, x);
export const exp = (x: Tensor): Tensor => unary(Exp, x);
export const log = (x: Tensor): Tensor => unary(Log, x);
export const tanh = (x: Tensor): Tensor => unary(Tanh, x);
export const sigmoid = (x: Tensor): Tensor => unary(Sigmoid, x);
export const relu = (x: Tensor): Tensor => unary(Relu, x);
export const erf = (x: Tensor): Tensor => unary(Erf, x);
export const identity = (x: Tensor): Tensor => x.graph.apply(Identity, [x])[0]!;
export const stopGradient = (x: Tensor): Tensor => x.graph.apply(StopGradient, [x])[0]!;
export const cast = (x: Tensor, to: DType): Tensor => (x.dtype === to ? x : x.graph.apply(Cast, [x], { to })[0]!);
export const clip = (x: Tensor, min: number, max: number): Tensor => x.graph.apply(Clip, [x], { min, max })[0]!;

export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  const ta = lift(a, b), tb = lift(b, a);
  return cond.graph.apply(Where, [cond, ta, tb])[0]!;
}

export function square(x: Tensor): Tensor {
  return mul(x, x);
}

/**
 * Exact GELU, x Φ(x) with Φ the standard normal CDF, as PyTorch's nn.GELU: one ONNX Gelu node (opset 20), so
 * every runtime runs one kernel. Its VJP recomputes the derivative Φ(x) + x φ(x) from x alone: the backward
 * pass keeps only x alive, where the Mul/Erf/Add composite kept three more tensors of x's size per call.
 */
export const Gelu = defineOp({
  name: 'Gelu',
  flops: cost.elementwise,
  infer: unaryInfer,
  // With t = x/√2: 2(Φ(x) + xφ(x)) = 1 + erf(t) + x √(2/π) / exp(t²), ten element-wise passes over x's size where the
  // direct form took eleven (ONNX Runtime's CPU EP runs each op as its own pass; exp(t²) = inf gives the 0 of the tail).
  vjp: ({ inputs: [x], grads: [g] }) => {
    const t = div(x!, Math.SQRT2);
    const twiceXPdf = div(mul(x!, Math.sqrt(2 / Math.PI)), exp(mul(t, t)));
    return [mul(g!, mul(add(add(erf(t), 1), twiceXPdf), 0.5))];
  },
});
export const gelu = (x: Tensor): Tensor => x.graph.apply(Gelu, [x])[0]!;

