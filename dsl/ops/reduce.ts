/** Reductions over axes (1 FLOP per input element; ReduceL2 2). Backward: broadcast the cotangent back over the reduced axes. */
import type { Tensor, TensorInfo } from '../graph.ts';
import { cost, defineOp, type OpDef } from '../op.ts';
import { type Dim, normAxis } from '../shape.ts';
import { div, equal, mul, where } from './elementwise.ts';
import { expand, reshape } from './layout.ts';

export interface ReduceAttrs {
  readonly axes: readonly number[];
  readonly keepdims: boolean;
}

function reduceInfer(ins: readonly TensorInfo[], { axes, keepdims }: ReduceAttrs): TensorInfo[] | string {
  const x = ins[0]!;
  const norm = axes.map((a) => normAxis(a, x.shape.length));
  if (norm.some((a) => a === undefined)) return `axes [${axes}] out of range for rank ${x.shape.length}`;
  if (axes.length === 0) return 'reduction needs at least one axis';
  const set = new Set(norm as number[]);
  const shape: Dim[] = [];
  x.shape.forEach((d, i) => {
    if (!set.has(i)) shape.push(d);
    else if (keepdims) shape.push(1);
  });
  return [{ dtype: x.dtype, shape }];
}

const reduceConstInputs = ({ axes }: ReduceAttrs) => [{ dtype: 'int64' as const, shape: [axes.length], data: axes }];

/** The cotangent of a reduction, reshaped to keep-dims form and expanded to the input's shape. */
function broadcastBack(g: Tensor, x: Tensor, { axes }: ReduceAttrs): Tensor {
  const set = new Set(axes.map((a) => normAxis(a, x.rank)!));
  const kept = x.shape.map((d, i) => (set.has(i) ? 1 : d));
  return expand(g.rank === kept.length ? g : reshape(g, kept), x.shape);
}

function reducedCount(x: Tensor, axes: readonly number[]): number {
  return axes.reduce((n, a) => n * x.dim(normAxis(a, x.rank)!), 1);
}

export const ReduceSum = defineOp<ReduceAttrs>({
  name: 'ReduceSum',
  flops: cost.perInput(1),
  attrTypes: { keepdims: 'int' },
  infer: reduceInfer,
  constInputs: reduceConstInputs,
  vjp: ({ inputs: [x], attrs, grads: [g] }) => [broadcastBack(g!, x!, attrs)],
});
export const ReduceMean = defineOp<ReduceAttrs>({
  name: 'ReduceMean',
  flops: cost.perInput(1),
  attrTypes: { keepdims: 'int' },
  infer: reduceInfer,
  constInputs: reduceConstInputs,
  vjp: ({ inputs: [x], attrs, grads: [g] }) => [div(broadcastBack(g!, x!, attrs), reducedCount(x!, attrs.axes))],
});
export const ReduceMax = defineOp<ReduceAttrs>({
  name: 'ReduceMax',
  flops: cost.perInput(1),
  attrTypes: { keepdims: 'int' },
  infer: reduceInfer,
  constInputs: reduceConstInputs,
  // The gradient goes to the arg-max (to every tied maximum; ties have measure zero for real data).
  vjp: ({ inputs: [x], outputs: [y], attrs, grads: [g] }) => [
    where(equal(x!, broadcastBack(y!, x!, attrs)), broadcastBack(g!, x!, attrs), 0),
  ],
});
export const ReduceL2 = defineOp<ReduceAttrs>({
  name: 'ReduceL2',
  flops: cost.perInput(2),
  attrTypes: { keepdims: 'int' },
  infer: reduceInfer,
  constInputs: reduceConstInputs,
  vjp: ({ inputs: [x], outputs: [y], attrs, grads: [g] }) => [mul(x!, broadcastBack(div(g!, y!), x!, attrs))],
});

function reduce(op: OpDef<ReduceAttrs>, x: Tensor, axes: number | readonly number[], keepdims: boolean): Tensor {
  const list = typeof axes === 'number' ? [axes] : [...axes];
  return x.graph.apply(op, [x], { axes: list, keepdims })[0]!;
}

export const reduceSum = (x: Tensor, axes: number | readonly number[], keepdims = false): Tensor => reduce(ReduceSum, x, axes, keepdims);
export const reduceMean = (x: Tensor, axes: number | readonly number[], keepdims = false): Tensor => reduce(ReduceMean, x, axes, keepdims);
export const reduceMax = (x: Tensor, axes: number | readonly number[], keepdims = false): Tensor => reduce(ReduceMax, x, axes, keepdims);
export const reduceL2 = (x: Tensor, axes: number | readonly number[], keepdims = false): Tensor => reduce(ReduceL2, x, axes, keepdims);

/** Sum of all elements, as a scalar. */
export const sumAll = (x: Tensor): Tensor => (x.rank === 0 ? x : reduceSum(x, x.shape.map((_, i) => i), false));
/** Mean of all elements, as a scalar. */
export const meanAll = (x: Tensor): Tensor => (x.rank === 0 ? x : reduceMean(x, x.shape.map((_, i) => i), false));
