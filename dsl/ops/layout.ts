/**
 * Ops that move data without arithmetic (no FLOPs): reshape, transpose, concat, split, slice, pad, expand, and
 * `Shape` with a shape-driven Expand, so zeros of a shape with symbolic dims (`batch`) can be built.
 */
import type { Tensor, TensorInfo } from '../graph.ts';
import { cost, defineOp } from '../op.ts';
import { type Dim, type Shape, broadcastShapes, dimEq, divDims, formatShape, isStatic, mulDims, normAxis, numel, shapeEq, sliceSymbolicDim } from '../shape.ts';

// ---- Reshape -------------------------------------------------------------------------------------

export const Reshape = defineOp<{ shape: Shape }>({
  name: 'Reshape',
  flops: cost.free,
  infer: (ins, { shape }) => {
    const x = ins[0]!;
    const a = numel(x.shape), b = numel(shape);
    if (!dimEq(a, b)) return `cannot reshape ${formatShape(x.shape)} (${a} elements) to ${formatShape(shape)} (${b} elements)`;
    return [{ dtype: x.dtype, shape }];
  },
  // ONNX needs numbers: a symbolic dim equal to the input's at the same position becomes 0 (copy), one other becomes -1.
  constInputs: ({ shape }, ins) => {
    const xs = ins[0]!.shape;
    const data = shape.map((d, i) => (isStatic(d) ? d : i < xs.length && dimEq(xs[i]!, d) ? 0 : -1));
    if (data.filter((d) => d === -1).length > 1) throw new Error(`Reshape to ${formatShape(shape)}: more than one symbolic dim cannot be expressed`);
    return [{ dtype: 'int64', shape: [shape.length], data }];
  },
  vjp: ({ inputs: [x], grads: [g] }) => [reshape(g!, x!.shape)],
});

/** Reshape; one entry may be -1 (inferred, possibly symbolic). */
export function reshape(x: Tensor, shape: readonly Dim[]): Tensor {
  const target: Dim[] = [...shape];
  const hole = target.indexOf(-1);
  if (hole >= 0 && !x.poisoned) {
    const known = target.filter((_, i) => i !== hole).reduce<Dim>((acc, d) => mulDims(acc, d), 1);
    const inferred = divDims(numel(x.shape), known);
    if (inferred === undefined) {
      x.graph.error('Reshape', `cannot infer -1 in ${formatShape(shape)} from ${formatShape(x.shape)}`, [x]);
      target[hole] = 1; // any placeholder: the error is recorded and the result is only built on, never emitted
    } else target[hole] = inferred;
  }
  if (shapeEq(x.shape, target)) return x;
  return x.graph.apply(Reshape, [x], { shape: target })[0]!;
}

export const Unsqueeze = defineOp<{ axes: readonly number[] }>({
  name: 'Unsqueeze',
  flops: cost.free,
  infer: (ins, { axes }) => {
    const x = ins[0]!;
    const rank = x.shape.length + axes.length;
    const norm = axes.map((a) => normAxis(a, rank));
    if (norm.some((a) => a === undefined)) return `axes [${axes}] out of range for output rank ${rank}`;
    const out: Dim[] = [];
    let j = 0;
    for (let i = 0; i < rank; i++) out.push(norm.includes(i) ? 1 : x.shape[j++]!);
    return [{ dtype: x.dtype, shape: out }];
  },
  constInputs: ({ axes }) => [{ dtype: 'int64', shape: [axes.length], data: axes }],
  vjp: ({ inputs: [x], grads: [g] }) => [reshape(g!, x!.shape)],
});
export const Squeeze = defineOp<{ axes: readonly number[] }>({
  name: 'Squeeze',
  flops: cost.free,
  infer: (ins, { axes }) => {
    const x = ins[0]!;
    const norm = axes.map((a) => normAxis(a, x.shape.length));
    if (norm.some((a) => a === undefined || x.shape[a] !== 1)) return `cannot squeeze axes [${axes}] of ${formatShape(x.shape)}`;
    return [{ dtype: x.dtype, shape: x.shape.filter((_, i) => !norm.includes(i)) }];
  },
  constInputs: ({ axes }) => [{ dtype: 'int64', shape: [axes.length], data: axes }],
  vjp: ({ inputs: [x], grads: [g] }) => [reshape(g!, x!.shape)],
});
export const unsqueeze = (x: Tensor, axes: number | readonly number[]): Tensor =>
  x.graph.apply(Unsqueeze, [x], { axes: typeof axes === 'number' ? [axes] : axes })[0]!;
export const squeeze = (x: Tensor, axes: number | readonly number[]): Tensor =>
  x.graph.apply(Squeeze, [x], { axes: typeof axes === 'number' ? [axes] : axes })[0]!;

// ---- Transpose -----------------------------------------------------------------------------------

export const Transpose = defineOp<{ perm: readonly number[] }>({
  name: 'Transpose',
  flops: cost.free,
  attrTypes: { perm: 'ints' },
  infer: (ins, { perm }) => {
    const x = ins[0]!;
    const ok = perm.length === x.shape.length && [...perm].sort((a, b) => a - b).every((p, i) => p === i);
    if (!ok) return `perm [${perm}] is not a permutation of rank ${x.shape.length}`;
    return [{ dtype: x.dtype, shape: perm.map((p) => x.shape[p]!) }];
  },
  vjp: ({ attrs: { perm }, grads: [g] }) => {
    const inverse = new Array<number>(perm.length);
    perm.forEach((p, i) => (inverse[p] = i));
    return [transpose(g!, inverse)];
  },
});
export function transpose(x: Tensor, perm: readonly number[]): Tensor {
  if (perm.every((p, i) => p === i)) return x;
  // A transpose of a transpose is one transpose (or none): the backward pass of `matmul(x, transposeLast2(W))`
  // then yields W's gradient in W's layout directly instead of materialising a transposed copy (nn.ts).
  const src = x.source;
  if (src.kind === 'node' && src.node.op === Transpose && perm.length === src.node.inputs[0]!.rank) {
    const inner = (src.node.attrs as { perm: readonly number[] }).perm;
    return transpose(src.node.inputs[0]!, perm.map((p) => inner[p]!));
  }
  return x.graph.apply(Transpose, [x], { perm })[0]!;
}
/** Swaps the last two axes. */
export function transposeLast2(x: Tensor): Tensor {
  const perm = x.shape.map((_, i) => i);
  const r = perm.length;
  [perm[r - 2], perm[r - 1]] = [perm[r - 1]!, perm[r - 2]!];
  return transpose(x, perm);
}

// ---- Concat / Split / Slice ----------------------------------------------------------------------

export const Concat = defineOp<{ axis: number }>({
  name: 'Concat',
  flops: cost.free,
  attrTypes: { axis: 'int' },
  infer: (ins, { axis }) => {
    const first = ins[0]!;
    const a = normAxis(axis, first.shape.length);
    if (a === undefined) return `axis ${axis} out of range for rank ${first.shape.length}`;
    let total: Dim = 0;
    for (const t of ins) {
      if (t.dtype !== first.dtype) return `dtype mismatch: ${first.dtype} vs ${t.dtype}`;
      if (t.shape.length !== first.shape.length || t.shape.some((d, i) => i !== a && !dimEq(d, first.shape[i]!))) {
        return `shapes ${ins.map((i) => formatShape(i.shape)).join(', ')} differ outside axis ${axis}`;
      }
      const d = t.shape[a]!;
      total = isStatic(total) && isStatic(d) ? total + d : `${total}+${d}`;
    }
    return [{ dtype: first.dtype, shape: first.shape.map((d, i) => (i === a ? total : d)) }];
  },
  vjp: ({ inputs, attrs: { axis }, grads: [g] }) => {
    const a = normAxis(axis, g!.rank)!;
    let start = 0;
    return inputs.map((x) => {
      const size = x.dim(a);
      const part = slice(g!, [start], [start + size], [a]);
      start += size;
      return part;
    });
  },
});
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 1) return xs[0]!;
  return xs[0]!.graph.apply(Concat, xs, { axis })[0]!;
}

export const Split = defineOp<{ axis: number; sizes: readonly number[] }>({
  name: 'Split',
  flops: cost.free,
  attrTypes: { axis: 'int' },
  outputCount: ({ sizes }) => sizes.length,
  infer: (ins, { axis, sizes }) => {
    const x = ins[0]!;
    const a = normAxis(axis, x.shape.length);
    if (a === undefined) return `axis ${axis} out of range for rank ${x.shape.length}`;
    const total = sizes.reduce((s, n) => s + n, 0);
    if (x.shape[a] !== total) return `split sizes [${sizes}] sum to ${total}, but axis ${axis} has size ${x.shape[a]}`;
    return sizes.map((n) => ({ dtype: x.dtype, shape: x.shape.map((d, i) => (i === a ? n : d)) }));
  },
  constInputs: ({ sizes }) => [{ dtype: 'int64', shape: [sizes.length], data: sizes }],
  vjp: ({ outputs, attrs: { axis }, grads }) => [concat(grads.map((g, i) => g ?? zerosLike(outputs[i]!)), axis)],
});
export function split(x: Tensor, sizes: readonly number[], axis: number): Tensor[] {
  return x.graph.apply(Split, [x], { axis, sizes })!;
}

export interface SliceAttrs {
  readonly starts: readonly number[];
  readonly ends: readonly number[];
  readonly axes: readonly number[];
}
export const Slice = defineOp<SliceAttrs>({
  name: 'Slice',
  flops: cost.free,
  infer: (ins, { starts, ends, axes }) => {
    const x = ins[0]!;
    const shape = [...x.shape];
    for (let k = 0; k < axes.length; k++) {
      const a = normAxis(axes[k]!, shape.length);
      if (a === undefined) return `axis ${axes[k]} out of range for rank ${shape.length}`;
      const d = shape[a]!;
      if (!isStatic(d)) {
        // A symbolic axis can be sliced where the result is known (a ViT's [CLS] row and patch tokens; shape.ts).
        const r = sliceSymbolicDim(d, starts[k]!, ends[k]!);
        if (r === undefined) return `cannot slice [${starts[k]}:${ends[k]}] of symbolic axis ${a} (${d})`;
        shape[a] = r;
        continue;
      }
      const s = Math.max(0, Math.min(d, starts[k]! < 0 ? starts[k]! + d : starts[k]!));
      const e = Math.max(0, Math.min(d, ends[k]! < 0 ? ends[k]! + d : ends[k]!));
      if (e <= s) return `empty slice [${starts[k]}:${ends[k]}] of axis ${a} (size ${d})`;
      shape[a] = e - s;
    }
    return [{ dtype: x.dtype, shape }];
  },
  constInputs: ({ starts, ends, axes }) => [
    { dtype: 'int64', shape: [starts.length], data: starts },
    { dtype: 'int64', shape: [ends.length], data: ends },
    { dtype: 'int64', shape: [axes.length], data: axes },
  ],
  vjp: ({ inputs: [x], attrs: { starts, axes }, grads: [g] }) => {
    // Pad the cotangent back with zeros to the input's extent.
    const pads = new Array<number>(2 * x!.rank).fill(0);
    axes.forEach((ax, k) => {
      const a = normAxis(ax, x!.rank)!;
      const d = x!.dim(a);
      const s = Math.max(0, Math.min(d, starts[k]! < 0 ? starts[k]! + d : starts[k]!));
      pads[a] = s;
      pads[a + x!.rank] = d - s - g!.dim(a);
    });
    return [pad(g!, pads)];
  },
});
/** x[starts:ends] along `axes` (step 1). */
export function slice(x: Tensor, starts: readonly number[], ends: readonly number[], axes: readonly number[]): Tensor {
  return x.graph.apply(Slice, [x], { starts, ends, axes })[0]!;
}

export const Pad = defineOp<{ pads: readonly number[] }>({
  name: 'Pad',
  flops: cost.free,
  infer: (ins, { pads }) => {
    const x = ins[0]!;
    const r = x.shape.length;
    if (pads.length !== 2 * r) return `pads has ${pads.length} entries, expected ${2 * r}`;
    if (pads.some((p) => p < 0)) return `negative pads [${pads}] are not supported`;
    const shape = x.shape.map((d, i) => (pads[i]! === 0 && pads[i + r]! === 0 ? d : isStatic(d) ? d + pads[i]! + pads[i + r]! : NaN));
    if (shape.some((d) => Number.isNaN(d))) return 'cannot pad a symbolic axis';
    return [{ dtype: x.dtype, shape }];
  },
  constInputs: ({ pads }) => [{ dtype: 'int64', shape: [pads.length], data: pads }],
  vjp: ({ inputs: [x], attrs: { pads }, grads: [g] }) => {
    const r = x!.rank;
    const axes: number[] = [], starts: number[] = [], ends: number[] = [];
    for (let i = 0; i < r; i++) {
      if (pads[i] || pads[i + r]) {
        axes.push(i);
        starts.push(pads[i]!);
        ends.push(pads[i]! + x!.dim(i));
      }
    }
    return [axes.length ? slice(g!, starts, ends, axes) : g!];
  },
});
/** Zero padding; `pads` = [begin_0, ..., begin_{r-1}, end_0, ..., end_{r-1}] as ONNX. */
export function pad(x: Tensor, pads: readonly number[]): Tensor {
  if (pads.every((p) => p === 0)) return x;
  return x.graph.apply(Pad, [x], { pads })[0]!;
}

// ---- Expand --------------------------------------------------------------------------------------

export const Expand = defineOp<{ shape: Shape }>({
  name: 'Expand',
  flops: cost.free,
  infer: (ins, { shape }) => {
    const x = ins[0]!;
    const out = broadcastShapes(x.shape, shape);
    if (typeof out === 'string') return out;
    if (!shapeEq(out, shape)) return `cannot expand ${formatShape(x.shape)} to ${formatShape(shape)}`;
    return [{ dtype: x.dtype, shape }];
  },
  constInputs: ({ shape }, ins) => {
    // Symbolic dims already present in the input broadcast through a 1.
    const xs = ins[0]!.shape;
    const lead = shape.length - xs.length;
    const data = shape.map((d, i) => {
      if (isStatic(d)) return d;
      if (i >= lead && dimEq(xs[i - lead]!, d)) return 1;
      throw new Error(`Expand to ${formatShape(shape)}: symbolic dim ${d} is not in the input`);
    });
    return [{ dtype: 'int64', shape: [shape.length], data }];
  },
  // Autodiff sums the cotangent over the expanded axes.
  vjp: ({ grads: [g] }) => [g!],
});
export function expand(x: Tensor, shape: Shape): Tensor {
  if (shapeEq(x.shape, shape)) return x;
  return x.graph.apply(Expand, [x], { shape })[0]!;
}

// ---- Shape and shape-driven Expand (zeros of a symbolic shape) -----------------------------------

/** The runtime shape of a tensor as an int64 vector (not differentiable: its value does not depend on x's values). */
export const ShapeOp = defineOp({
  name: 'Shape',
  flops: cost.free,
  infer: (ins) => [{ dtype: 'int64', shape: [ins[0]!.shape.length] }],
});
export const shapeOf = (x: Tensor): Tensor => x.graph.apply(ShapeOp, [x])[0]!;

/**
 * Expand(value, Shape(like)): `value` broadcast to the runtime shape of `like`. The DSL's `expand` takes a
 * constant shape and cannot name a symbolic dim absent from its input; this one can.
 */
export const ExpandToShapeOf = defineOp<{ shape: Shape }>({
  name: 'ExpandToShapeOf',
  flops: cost.free,
  onnxType: 'Expand',
  infer: (ins, { shape }) => {
    const [v, s] = ins as [TensorInfo, TensorInfo];
    if (s.dtype !== 'int64' || s.shape.length !== 1 || s.shape[0] !== shape.length) {
      return `the shape input must be int64[${shape.length}], got ${s.dtype}${formatShape(s.shape)}`;
    }
    const out = broadcastShapes(v.shape, shape);
    if (typeof out === 'string') return out;
    if (!shapeEq(out, shape)) return `cannot expand ${formatShape(v.shape)} to ${formatShape(shape)}`;
    return [{ dtype: v.dtype, shape }];
  },
  // Autodiff sums the cotangent over the expanded axes.
  vjp: ({ grads: [g] }) => [g!, null],
});
export function expandToShapeOf(value: Tensor, like: Tensor): Tensor {
  return value.graph.apply(ExpandToShapeOf, [value, shapeOf(like)], { shape: like.shape })[0]!;
}

/**
 * Zeros with the shape and dtype of `like`, never a materialised buffer in the IR: a broadcast scalar constant
 * when the shape is static, Expand(0, Shape(like)) when it has a symbolic dim.
 */
export function zerosLike(like: Tensor): Tensor {
  const zero = like.graph.scalar(0, like.dtype);
  return like.shape.every(isStatic) ? expand(zero, like.shape) : expandToShapeOf(zero, like);
}
