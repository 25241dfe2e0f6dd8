/**
 * Indexing ops: Gather / GatherElements / GatherND and their adjoints ScatterElements / ScatterND
 * (reduction 'add' accumulates duplicate indices, which is what a gather's backward pass needs).
 *
 * Index inputs are int64 (int32 accepted where ONNX allows it) and never receive gradients.
 */
import type { Tensor, TensorInfo } from '../graph.ts';
import { type FlopArgs, cost, defineOp } from '../op.ts';
import { type Dim, formatShape, isStatic, normAxis, shapeEq } from '../shape.ts';
import { add, less, where } from './elementwise.ts';
import { reshape, transpose, zerosLike } from './layout.ts';

const isIndex = (t: TensorInfo) => t.dtype === 'int64' || t.dtype === 'int32';
/** A scatter costs one FLOP per update element (the add of reduction 'add'; a plain store counted the same). */
const perUpdate = ({ inputs, numel }: FlopArgs<unknown>) => numel(inputs[2]!);

// ---- Gather --------------------------------------------------------------------------------------

export const Gather = defineOp<{ axis: number }>({
  name: 'Gather',
  flops: cost.free,
  attrTypes: { axis: 'int' },
  infer: (ins, { axis }) => {
    const [x, idx] = ins as [TensorInfo, TensorInfo];
    if (!isIndex(idx)) return `indices must be int64 or int32, got ${idx.dtype}`;
    const a = normAxis(axis, x.shape.length);
    if (a === undefined) return `axis ${axis} out of range for data of rank ${x.shape.length}`;
    return [{ dtype: x.dtype, shape: [...x.shape.slice(0, a), ...idx.shape, ...x.shape.slice(a + 1)] }];
  },
  // Scatter-add the cotangent into zeros: move `axis` to the front, so the indices address rows (ScatterND).
  vjp: ({ inputs: [x, idx], attrs: { axis }, grads: [g] }) => {
    const r = x!.rank, a = normAxis(axis, r)!, q = idx!.rank;
    const xPerm = [a, ...range(0, a), ...range(a + 1, r)];
    // g has dims [pre (a), idx (q), post]; bring the index dims to the front.
    const gPerm = [...range(a, a + q), ...range(0, a), ...range(a + q, g!.rank)];
    const rows = transpose(x!, xPerm);
    const rowIdx = reshape(nonNegative(idx!, x!.shape[a]!), [...idx!.shape, 1]);
    const summed = scatterND(zerosLike(rows), rowIdx, transpose(g!, gPerm), 'add');
    const inverse = new Array<number>(r);
    xPerm.forEach((p, i) => (inverse[p] = i));
    return [transpose(summed, inverse), null];
  },
});
/** x.take(indices, axis) as ONNX Gather (negative indices count from the end). */
export const gather = (x: Tensor, indices: Tensor, axis: number): Tensor => x.graph.apply(Gather, [x, indices], { axis })[0]!;

/** Negative indices wrapped by `size` (ONNX Gather allows them; scatter-based adjoints are written for non-negative ones). */
function nonNegative(idx: Tensor, size: Dim): Tensor {
  if (!isStatic(size)) return idx; // symbolic axis: indices are assumed non-negative
  if (idx.source.kind === 'const' && Array.from(idx.source.data).every((v) => v >= 0)) return idx;
  return where(less(idx, 0), add(idx, size), idx);
}

const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);

// ---- GatherElements / ScatterElements ------------------------------------------------------------

export const GatherElements = defineOp<{ axis: number }>({
  name: 'GatherElements',
  flops: cost.free,
  attrTypes: { axis: 'int' },
  infer: (ins, { axis }) => {
    const [x, idx] = ins as [TensorInfo, TensorInfo];
    if (!isIndex(idx)) return `indices must be int64 or int32, got ${idx.dtype}`;
    if (idx.shape.length !== x.shape.length) return `indices ${formatShape(idx.shape)} must have the rank of data ${formatShape(x.shape)}`;
    if (normAxis(axis, x.shape.length) === undefined) return `axis ${axis} out of range for rank ${x.shape.length}`;
    return [{ dtype: x.dtype, shape: idx.shape }];
  },
  vjp: ({ inputs: [x, idx], attrs: { axis }, grads: [g] }) => [scatterElements(zerosLike(x!), idx!, g!, axis, 'add'), null],
});
export const gatherElements = (x: Tensor, indices: Tensor, axis: number): Tensor =>
  x.graph.apply(GatherElements, [x, indices], { axis })[0]!;

export type ScatterReduction = 'none' | 'add';

export const ScatterElements = defineOp<{ axis: number; reduction: ScatterReduction }>({
  name: 'ScatterElements',
  flops: perUpdate,
  attrTypes: { axis: 'int', reduction: 'string' },
  infer: (ins, { axis }) => {
    const [x, idx, upd] = ins as [TensorInfo, TensorInfo, TensorInfo];
    if (!isIndex(idx)) return `indices must be int64 or int32, got ${idx.dtype}`;
    if (upd.dtype !== x.dtype) return `dtype mismatch: data ${x.dtype} vs updates ${upd.dtype}`;
    if (!shapeEq(idx.shape, upd.shape)) return `indices ${formatShape(idx.shape)} and updates ${formatShape(upd.shape)} must have one shape`;
    if (idx.shape.length !== x.shape.length) return `indices ${formatShape(idx.shape)} must have the rank of data ${formatShape(x.shape)}`;
    if (normAxis(axis, x.shape.length) === undefined) return `axis ${axis} out of range for rank ${x.shape.length}`;
    return [{ dtype: x.dtype, shape: x.shape }];
  },
  // 'add': y = x + S(u), so dx = g and du = gather(g). 'none' (unique indices assumed): the overwritten
  // entries of x get no gradient, du = gather(g).
  vjp: ({ inputs: [x, idx, upd], attrs: { axis, reduction }, grads: [g] }) => [
    reduction === 'add' ? g! : scatterElements(g!, idx!, zerosLike(upd!), axis, 'none'),
    null,
    gatherElements(g!, idx!, axis),
  ],
});
export const scatterElements = (data: Tensor, indices: Tensor, updates: Tensor, axis: number, reduction: ScatterReduction = 'none'): Tensor =>
  data.graph.apply(ScatterElements, [data, indices, updates], { axis, reduction })[0]!;

// ---- GatherND / ScatterND (batch_dims = 0) -------------------------------------------------------

/** Shape of `data[indices]` for ND indexing: indices [...B, k] address the first k axes of data. */
function ndShape(x: TensorInfo, idx: TensorInfo): Dim[] | string {
  if (!isIndex(idx)) return `indices must be int64 or int32, got ${idx.dtype}`;
  const k = idx.shape[idx.shape.length - 1];
  if (idx.shape.length < 1 || !isStatic(k!) || k! < 1 || k! > x.shape.length) {
    return `the last dim of indices ${formatShape(idx.shape)} must be a static size in 1..${x.shape.length} (rank of data)`;
  }
  return [...idx.shape.slice(0, -1), ...x.shape.slice(k as number)];
}

export const GatherND = defineOp({
  name: 'GatherND',
  flops: cost.free,
  infer: (ins) => {
    const [x, idx] = ins as [TensorInfo, TensorInfo];
    const shape = ndShape(x, idx);
    return typeof shape === 'string' ? shape : [{ dtype: x.dtype, shape }];
  },
  vjp: ({ inputs: [x, idx], grads: [g] }) => [scatterND(zerosLike(x!), idx!, g!, 'add'), null],
});
export const gatherND = (x: Tensor, indices: Tensor): Tensor => x.graph.apply(GatherND, [x, indices])[0]!;

export const ScatterND = defineOp<{ reduction: ScatterReduction }>({
  name: 'ScatterND',
  flops: perUpdate,
  attrTypes: { reduction: 'string' },
  infer: (ins) => {
    const [x, idx, upd] = ins as [TensorInfo, TensorInfo, TensorInfo];
    if (upd.dtype !== x.dtype) return `dtype mismatch: data ${x.dtype} vs updates ${upd.dtype}`;
    const shape = ndShape(x, idx);
    if (typeof shape === 'string') return shape;
    if (!shapeEq(shape, upd.shape)) return `updates must have shape ${formatShape(shape)} for indices ${formatShape(idx.shape)}, got ${formatShape(upd.shape)}`;
    return [{ dtype: x.dtype, shape: x.shape }];
  },
  vjp: ({ inputs: [x, idx, upd], attrs: { reduction }, grads: [g] }) => [
    reduction === 'add' ? g! : scatterND(g!, idx!, zerosLike(upd!), 'none'),
    null,
    gatherND(g!, idx!),
  ],
});
export const scatterND = (data: Tensor, indices: Tensor, updates: Tensor, reduction: ScatterReduction = 'none'): Tensor =>
  data.graph.apply(ScatterND, [data, indices, updates], { reduction })[0]!;

