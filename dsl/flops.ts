/**
 * Floating-point operation counts of a graph, from the shapes of its nodes.
 *
 * Convention (one "FLOP" = one scalar add, multiply, compare, exp, ...; a fused multiply-add counts 2):
 * - MatMul: 2·M·N·K per matrix product, times the broadcast batch size (2 × numel(output) × K).
 * - Gemm: 2·M·N·K, plus M·N when C is added.
 * - Conv: 2 × numel(output) × (Cin / group) × kh × kw, plus numel(output) for the bias.
 *   ConvTranspose: 2 × numel(input) × (Cout / group) × kh × kw (each input cell scattered into a window),
 *   plus numel(output) for the bias.
 * - Element-wise ops (arithmetic, Exp, Log, Erf, Sqrt, comparisons, Where, Clip, ...): 1 per output element.
 * - Reductions: 1 per input element (ReduceL2: 2); GlobalAveragePool: 1 per input element;
 *   MaxPool / AveragePool: kh·kw per output element.
 * - Softmax and LogSoftmax: 5 per element (max, subtract, exp, sum, divide or log-subtract).
 * - LayerNormalization: 7 per element (mean, subtract, square, sum, multiply by 1/std, scale, shift).
 * - BatchNormalization (inference): 2 per element (ORT folds it into one scale and one shift).
 * - ScatterElements / ScatterND: 1 per update element (the add of reduction 'add'; a plain store otherwise,
 *   counted the same for simplicity).
 * - Data movement (Reshape, Transpose, Concat, Split, Slice, Pad, Expand, Identity, Cast, Gather*, Shape, ...): 0.
 * Only nodes that the graph's outputs depend on are counted (what emission keeps).
 *
 * Phases: nodes created by autodiff (module path `grad` or `grad/...`) are `backward`; nodes under the
 * `optimizer` path (`addOptimizerStep`) are `update`; everything else is `forward`. `phaseOf` overrides this
 * (for example to count a teacher EMA as part of the update).
 */
import { type Graph, type Node, type Tensor, formatError } from './graph.ts';
import type { Dim, Shape } from './shape.ts';

export type Phase = 'forward' | 'backward' | 'update';

export interface FlopOptions {
  /** Values of symbolic dims, e.g. `{ batch: 64 }`; a symbolic dim without a value throws. */
  readonly dims?: Readonly<Record<string, number>>;
  /** Classifies a node; default: see the module comment. */
  readonly phaseOf?: (node: Node) => Phase;
}

export interface FlopCount {
  readonly total: number;
  readonly byPhase: Readonly<Record<Phase, number>>;
  /** FLOPs per DSL op name, e.g. `{ MatMul: ..., Add: ... }`. */
  readonly byOp: Readonly<Record<string, number>>;
  /** Live nodes counted. */
  readonly nodes: number;
  /** Op names this counter has no rule for (counted as 0), so a report can say what it missed. */
  readonly uncounted: readonly string[];
}

/** Ops whose cost is one FLOP per output element. */
const ELEMENTWISE = new Set([
  'Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Neg', 'Abs', 'Sign', 'Sqrt', 'Reciprocal', 'Exp', 'Log', 'Tanh',
  'Sigmoid', 'Relu', 'Erf', 'Gelu', 'Where', 'Clip', 'Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'And',
]);
/** Ops that only move or reinterpret data. */
const DATA_MOVEMENT = new Set([
  'Reshape', 'Unsqueeze', 'Squeeze', 'Transpose', 'Concat', 'Split', 'Slice', 'Pad', 'Expand', 'Identity',
  'StopGradient', 'Cast', 'Shape', 'ExpandToShapeOf', 'Gather', 'GatherElements', 'GatherND',
]);

/** The value of a dim: a number, or a product like `50*batch` with every symbol bound in `dims`. */
export function dimValue(d: Dim, dims: Readonly<Record<string, number>> = {}): number {
  if (typeof d === 'number') return d;
  let v = 1;
  for (const part of d.split('*')) {
    const n = Number(part);
    if (part !== '' && Number.isFinite(n)) v *= n;
    else if (part in dims) v *= dims[part]!;
    else throw new Error(`FLOP count: symbolic dim "${part}" (in ${d}) has no value; pass it in dims, e.g. { ${part}: 64 }`);
  }
  return v;
}

const sizeOf = (shape: Shape, dims?: Readonly<Record<string, number>>): number => shape.reduce<number>((n, d) => n * dimValue(d, dims), 1);

/** FLOPs of one node (see the convention above), or undefined when the op has no rule. */
export function nodeFlops(node: Node, dims?: Readonly<Record<string, number>>): number | undefined {
  const op = node.op.name;
  const numel = (t: Tensor) => sizeOf(t.shape, dims);
  const dim = (t: Tensor, i: number) => dimValue(t.shape[i < 0 ? t.rank + i : i]!, dims);
  const out = node.outputs[0]!;
  if (ELEMENTWISE.has(op)) return numel(out);
  if (DATA_MOVEMENT.has(op)) return 0;
  const attrs = node.attrs as Record<string, any>;
  switch (op) {
    case 'MatMul':
      return 2 * numel(out) * dim(node.inputs[0]!, -1);
    case 'Gemm': {
      const a = node.inputs[0]!;
      const k = attrs['transA'] ? dim(a, 0) : dim(a, 1);
      return 2 * numel(out) * k + (node.inputs[2] ? numel(out) : 0);
    }
    case 'Conv': {
      const w = node.inputs[1]!;
      const perOutput = dim(w, 1) * dim(w, 2) * dim(w, 3); // (Cin / group) kh kw
      return 2 * numel(out) * perOutput + (node.inputs[2] ? numel(out) : 0);
    }
    case 'ConvTranspose': {
      const w = node.inputs[1]!; // [Cin, Cout / group, kh, kw]
      return 2 * numel(node.inputs[0]!) * dim(w, 1) * dim(w, 2) * dim(w, 3) + (node.inputs[2] ? numel(out) : 0);
    }
    case 'MaxPool':
    case 'MaxPoolWithIndices':
    case 'AveragePool': {
      const k = attrs['kernel_shape'] as readonly number[];
      return numel(out) * k[0]! * k[1]!;
    }
    case 'GlobalAveragePool':
    case 'ReduceSum':
    case 'ReduceMean':
    case 'ReduceMax':
      return numel(node.inputs[0]!);
    case 'ReduceL2':
      return 2 * numel(node.inputs[0]!);
    case 'Softmax':
    case 'LogSoftmax':
      return 5 * numel(out);
    case 'LayerNormalization':
      return 7 * numel(out);
    case 'BatchNormalization':
      return 2 * numel(out);
    case 'ScatterElements':
    case 'ScatterND':
      return numel(node.inputs[2]!);
    default:
      return undefined;
  }
}


/** The default phase rule (see the module comment). */
export function defaultPhase(node: Node): Phase {
  if (node.path === 'grad' || node.path.startsWith('grad/')) return 'backward';
  if (node.path === 'optimizer' || node.path.startsWith('optimizer.') || node.path.startsWith('optimizer/')) return 'update';
  return 'forward';
}

/** FLOPs of every live node of `graph`, in total, per phase and per op. */
export function countFlops(graph: Graph, opts: FlopOptions = {}): FlopCount {
  // Poisoned tensors have meaningless shapes: refuse rather than count them.
  if (graph.errors.length) throw new Error(`FLOP count of graph "${graph.name}": it has build errors:\n  ${graph.errors.map(formatError).join('\n  ')}`);
  const phaseOf = opts.phaseOf ?? defaultPhase;
  const byPhase: Record<Phase, number> = { forward: 0, backward: 0, update: 0 };
  const byOp: Record<string, number> = {};
  const uncounted = new Set<string>();
  const nodes = graph.liveNodes();
  let total = 0;
  for (const node of nodes) {
    const f = nodeFlops(node, opts.dims);
    if (f === undefined) {
      uncounted.add(node.op.name);
      continue;
    }
    total += f;
    byPhase[phaseOf(node)] += f;
    byOp[node.op.name] = (byOp[node.op.name] ?? 0) + f;
  }
  return { total, byPhase, byOp, nodes: nodes.length, uncounted: [...uncounted].sort() };
}
