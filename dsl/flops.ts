/**
 * Floating-point operation counts of a graph, from the shapes of its nodes.
 *
 * Each op's record states its own cost (`OpDef.flops`, required, so a new op cannot go uncounted; the common
 * rules are `cost` in op.ts). Convention: one "FLOP" = one scalar add, multiply, compare, exp, ...; a fused
 * multiply-add counts 2. MatMul / Gemm / Conv count 2 per multiply-add; element-wise ops 1 per output element;
 * reductions 1 per input element; data movement (reshape, transpose, gather, cast, ...) 0. Only nodes that the
 * graph's outputs depend on are counted (what emission keeps).
 *
 * Phases: nodes created by autodiff (module path `grad` or `grad/...`) are `backward`; nodes under the
 * `optimizer` path (`addOptimizerStep`) are `update`; everything else is `forward`. `phaseOf` overrides this
 * (for example to count a teacher EMA as part of the update).
 */
import { type Graph, type Node, type TensorInfo, formatError } from './graph.ts';
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
}

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

/** FLOPs of one node, by its op's rule, with symbolic dims bound by `dims`. */
export function nodeFlops(node: Node, dims?: Readonly<Record<string, number>>): number {
  const numel = (t: TensorInfo) => sizeOf(t.shape, dims);
  const dim = (t: TensorInfo, i: number) => dimValue(t.shape[i < 0 ? t.shape.length + i : i]!, dims);
  return node.op.flops({ inputs: node.inputs, outputs: node.outputs, attrs: node.attrs, numel, dim });
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
  const nodes = graph.liveNodes();
  let total = 0;
  for (const node of nodes) {
    const f = nodeFlops(node, opts.dims);
    total += f;
    byPhase[phaseOf(node)] += f;
    byOp[node.op.name] = (byOp[node.op.name] ?? 0) + f;
  }
  return { total, byPhase, byOp, nodes: nodes.length };
}
