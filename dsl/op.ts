/**
 * An op is defined once, in one place: its shape/dtype rule, how it is emitted to ONNX and, when
 * differentiable, its vector-Jacobian product (written with the same DSL, so backward passes are
 * ordinary standard-ONNX nodes). The registry refuses duplicates, and the gradient-check suite
 * enumerates it to make sure every differentiable op is checked.
 */
import type { DType, Tensor, TensorInfo } from './graph.ts';

export type AttrType = 'int' | 'float' | 'ints' | 'floats' | 'string';

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

export interface OpDef<A = any> {
  /** Registry key and node-name stem. */
  readonly name: string;
  /** ONNX operator type in the default domain. */
  readonly onnxType: string;
  /** Attributes emitted as ONNX attributes, with their types. Other attrs stay in the DSL. */
  readonly attrTypes: Readonly<Record<string, AttrType>>;
  readonly outputCount: (attrs: A) => number;
  /** Output dtypes and shapes, or an error message naming what is wrong. */
  readonly infer: (inputs: readonly TensorInfo[], attrs: A) => TensorInfo[] | string;
  /** Extra constant inputs lowered from attributes (null = an omitted optional input). */
  readonly constInputs?: (attrs: A, inputs: readonly TensorInfo[]) => (ConstInput | null)[];
  /**
   * Gradients with respect to each input (null where none flows). `undefined` for ops whose outputs
   * are not differentiable (comparisons, casts to integers); a gradient reaching such an op is an error.
   */
  readonly vjp?: (args: VjpArgs<A>) => (Tensor | null)[];
}

const registry = new Map<string, OpDef>();

export function defineOp<A>(def: Omit<OpDef<A>, 'attrTypes' | 'outputCount' | 'onnxType'> & Partial<Pick<OpDef<A>, 'attrTypes' | 'outputCount' | 'onnxType'>>): OpDef<A> {
  if (registry.has(def.name)) throw new Error(`op "${def.name}" is defined twice`);
  const full: OpDef<A> = { onnxType: def.name, attrTypes: {}, outputCount: () => 1, ...def };
  registry.set(def.name, full);
  return full;
}

export function allOps(): OpDef[] {
  return [...registry.values()];
}
