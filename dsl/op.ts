/**
 * An op is defined once, in one place: its shape/dtype rule, how it is emitted to ONNX, its FLOP cost and,
 * when differentiable, its vector-Jacobian product (written with the same DSL, so backward passes are
 * ordinary standard-ONNX nodes). The registry refuses duplicates, and the gradient-check suite
 * enumerates it to make sure every differentiable op is checked.
 */
import type { AttrType, FlopArgs, OpDef } from './graph.ts';

// The op record's type lives with the IR (dsl/graph.ts), which holds ops in its nodes; this module makes records.
export type { AttrType, ConstInput, FlopArgs, OpDef, VjpArgs } from './graph.ts';

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
