/**
 * An op is defined once, in one place: its shape/dtype rule, how it is emitted to ONNX, its FLOP cost and,
 * when differentiable, its vector-Jacobian product (written with the same DSL, so backward passes are
 * ordinary standard-ONNX nodes). The registry refuses duplicates, and the gradient-check suite
 * enumerates it to make sure every differentiable op is checked.
 */
import type { DType, Tensor, TensorInfo } from './graph.ts';

/**
 * How an attribute is written to ONNX. `dtype`: a DSL dtype written as ONNX's TensorProto data-type number
 * (Cast's `to`).
 */
export type AttrType = 'int' | 'float' | 'ints' | 'floats' | 'string' | 'dtype';

/** A constant input appended at emission time (ONNX takes e.g. Reshape's shape and ReduceSum's axes as inputs). */
export interface ConstInput {
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
}

export interface VjpArgs<A> {
  readonly inputs: readonly Tensor[];
  readonly outputs: readonly Tensor[];
  readonly attrs: A;
  /** Cotangents of the outputs; null where no gradient flows (a symbolic zero, never materialised). */
  readonly grads: readonly (Tensor | null)[];
}

/** What a FLOP rule sees of a node, with its symbolic dims bound to values (dsl/flops.ts). */
export interface FlopArgs<A> {
  readonly inputs: readonly TensorInfo[];
  readonly outputs: readonly TensorInfo[];
  readonly attrs: A;
  /** Number of elements of a tensor. */
  readonly numel: (t: TensorInfo) => number;
  /** Size of dim `i` (negative counts from the end). */
  readonly dim: (t: TensorInfo, i: number) => number;
}

/**
 * FLOP rules shared by many ops (one FLOP = one scalar add, multiply, compare, exp, ...; a fused multiply-add
 * counts 2).
 */
export const cost = {
  /** One per output element: arithmetic, comparisons, Where, Clip, activations. */
  elementwise: ({ outputs, numel }: FlopArgs<unknown>): number => numel(outputs[0]!),
  /** Data movement or reinterpretation (reshape, transpose, gather, cast, ...): no arithmetic. */
  free: (): number => 0,
  /** `k` per element of the first output (Softmax 5, LayerNormalization 7, ...). */
  perOutput: (k: number) => ({ outputs, numel }: FlopArgs<unknown>): number => k * numel(outputs[0]!),
  /** `k` per element of the first input (reductions). */
  perInput: (k: number) => ({ inputs, numel }: FlopArgs<unknown>): number => k * numel(inputs[0]!),
};

/**
 * An op record. The functions are methods rather than function-typed properties on purpose: method parameters
 * are bivariant, so an `OpDef<{ axis: number }>` is also an `OpDef<unknown>`, which is how a `Node` holds it
 * (`Graph.apply` checked the node's attrs against the op when it was built).
 */
export interface OpDef<A = unknown> {
  /** Registry key and node-name stem. */
  readonly name: string;
  /** ONNX operator type in the default domain. */
  readonly onnxType: string;
  /** Attributes emitted as ONNX attributes, with their types. Other attrs stay in the DSL. */
  readonly attrTypes: Readonly<Record<string, AttrType | undefined>>;
  outputCount(attrs: A): number;
  /** Output dtypes and shapes, or an error message naming what is wrong. */
  infer(inputs: readonly TensorInfo[], attrs: A): TensorInfo[] | string;
  /** Extra constant inputs lowered from attributes (null = an omitted optional input). */
  constInputs?(attrs: A, inputs: readonly TensorInfo[]): (ConstInput | null)[];
  /**
   * Gradients with respect to each input (null where none flows). `undefined` for ops whose outputs
   * are not differentiable (comparisons, casts to integers); a gradient reaching such an op is an error.
   * A gradient may have a broadcast of its input's shape: autodiff sums the broadcast axes.
   */
  vjp?(args: VjpArgs<A>): (Tensor | null)[];
  /** FLOPs of one node (see `cost` for the common rules); required, so no op goes uncounted. */
  flops(args: FlopArgs<A>): number;
  /**
   * The op's outputs built from other ops, for a graph whose target has no kernel for this one (`Target` in
   * dsl/graph.ts; `Graph.apply` calls it instead of adding the node). The same values; its gradient is the
   * lowered form's own.
   */
  lowering?(inputs: readonly Tensor[], attrs: A): Tensor[];
}

/** What `defineOp` takes: `onnxType` defaults to the name, no ONNX attributes, one output. */
export type OpSpec<A> = Omit<OpDef<A>, 'attrTypes' | 'outputCount' | 'onnxType'> & {
  readonly onnxType?: string;
  /** Keys are attribute names of `A`, so a misspelt attribute does not compile. */
  readonly attrTypes?: { readonly [K in keyof A]?: AttrType };
  outputCount?(attrs: A): number;
};

const registry = new Map<string, OpDef>();

export function defineOp<A = unknown>(def: OpSpec<A>): OpDef<A> {
  if (registry.has(def.name)) throw new Error(`op "${def.name}" is defined twice`);
  const full: OpDef<A> = { onnxType: def.name, outputCount: () => 1, ...def, attrTypes: def.attrTypes ?? {} };
  registry.set(def.name, full);
  return full;
}

export function allOps(): OpDef[] {
  return [...registry.values()];
}
