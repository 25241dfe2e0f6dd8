/**
 * Reading ONNX Runtime's profiler output (`enableProfiling`, chrome://tracing JSON): where a session's run time
 * goes, per op type, per node and per phase of a training step.
 */
import { readFileSync, readdirSync } from 'node:fs';
import * as path from 'node:path';

interface TraceEvent {
  readonly cat: string;
  readonly name: string;
  readonly ts: number;
  readonly dur: number;
  readonly args?: { readonly op_name?: string; readonly provider?: string };
}

export interface ProfileRow {
  readonly name: string;
  /** Mean time per run, ms. */
  readonly ms: number;
  /** Share of the summed node time. */
  readonly share: number;
  /** Number of nodes (per op type) or 1 (per node). */
  readonly count: number;
}

export interface ProfileSummary {
  /** Runs summarised (after skipping the first ones). */
  readonly runs: number;
  /** Mean `model_run` duration, ms: ORT's own view of a run. */
  readonly modelRunMs: number;
  /** Mean summed kernel time of all nodes per run, ms. */
  readonly nodeMs: number;
  readonly byOp: readonly ProfileRow[];
  readonly byNode: readonly ProfileRow[];
  /** Node time by training-step phase: `grad/...` backward, `optimizer/...` update, `teacher_ema/...`, the rest forward. */
  readonly byPhase: readonly ProfileRow[];
  /** Node time by region of a ViT DINO step (see {@link regionOfNode}), forward and backward together. */
  readonly byRegion: readonly ProfileRow[];
}

/** The profile file ORT wrote for `prefix` (`<prefix>_<date>.json`), the newest one if several. */
export function findProfile(prefix: string): string {
  const dir = path.dirname(prefix), base = path.basename(prefix);
  const files = readdirSync(dir).filter((f) => f.startsWith(`${base}_`) && f.endsWith('.json')).sort();
  if (files.length === 0) throw new Error(`no ONNX Runtime profile ${prefix}_*.json: was the session created with profilePrefix "${prefix}" and released?`);
  return path.join(dir, files[files.length - 1]!);
}

/** Phase of a node from its name (the DSL names nodes `<module path>/<Op>`; autodiff prefixes `grad/`). */
export function phaseOfNodeName(name: string): string {
  if (name.startsWith('grad/')) return 'backward';
  if (name.startsWith('optimizer/')) return 'update';
  if (name.startsWith('teacher_ema/')) return 'teacher_ema';
  return 'forward';
}

/**
 * Region of a ViT DINO step a node belongs to, from its module path (ORT keeps the DSL's name as a prefix of the nodes
 * it fuses) and op type: the Linear layers of the blocks, attention's own products and layout ops, GELU, LayerNorm,
 * the head, the loss, the optimizer. For ranking where time goes beyond op types.
 */
export function regionOfNode(name: string, op: string): string {
  const s = name.startsWith('grad/') ? name.slice(5) : name;
  if (name.startsWith('optimizer')) return 'AdamW + clipping';
  if (name.startsWith('teacher_ema')) return 'teacher EMA';
  if (/attn\.(qkv|proj)\//.test(s)) return 'attention qkv/proj Linear';
  if (/\.attn\//.test(s)) {
    if (/MatMul|Gemm/.test(op)) return 'attention q·kᵀ and p·v products';
    return /Softmax|Exp|Mul|Sub|ReduceSum/.test(op) ? 'attention softmax' : 'attention layout (Split/Transpose/Concat)';
  }
  if (/blocks\.\d+\.mlp\.fc[12]\//.test(s)) return 'block MLP Linear (fc1, fc2)';
  if (/blocks\.\d+\.mlp\//.test(s)) return 'block GELU';
  if (/norm[12]?\//.test(s) && !s.startsWith('head')) return 'LayerNorm';
  if (/blocks\.\d+\//.test(s)) return 'residual + drop path';
  if (/head\.mlp\.\d+\//.test(s)) return 'head MLP Linear (2048 wide)';
  if (/head\.mlp\//.test(s)) return 'head GELU';
  if (/head\.last_layer/.test(s)) return 'head last layer (K)';
  if (/^head\//.test(s)) return 'head L2 normalisation';
  if (/dino_loss/.test(s)) return 'DINO loss';
  if (/patch_embed|pos_embed|cls_token/.test(s)) return 'patch + position embedding';
  return 'other';
}

/** Summarises a profile file, skipping the first `skipRuns` runs (warm-up). */
export function summarizeProfile(file: string, skipRuns = 0): ProfileSummary {
  const events = JSON.parse(readFileSync(file, 'utf8')) as TraceEvent[];
  const runs = events.filter((e) => e.cat === 'Session' && e.name === 'model_run').sort((a, b) => a.ts - b.ts);
  const kept = runs.slice(skipRuns);
  if (kept.length === 0) throw new Error(`${file}: ${runs.length} runs recorded, none left after skipping ${skipRuns}`);
  const start = kept[0]!.ts;
  const nodes = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.ts >= start);
  const n = kept.length;
  const byOp = new Map<string, { us: number; nodes: Set<string> }>();
  const byNode = new Map<string, number>();
  const byPhase = new Map<string, { us: number; nodes: Set<string> }>();
  const byRegion = new Map<string, { us: number; nodes: Set<string> }>();
  let total = 0;
  for (const e of nodes) {
    const node = e.name.slice(0, -'_kernel_time'.length);
    const op = e.args?.op_name ?? '?';
    total += e.dur;
    const o = byOp.get(op) ?? { us: 0, nodes: new Set() };
    o.us += e.dur; o.nodes.add(node); byOp.set(op, o);
    byNode.set(`${node} (${op})`, (byNode.get(`${node} (${op})`) ?? 0) + e.dur);
    const ph = phaseOfNodeName(node);
    const p = byPhase.get(ph) ?? { us: 0, nodes: new Set() };
    p.us += e.dur; p.nodes.add(node); byPhase.set(ph, p);
    const rg = regionOfNode(node, op);
    const q = byRegion.get(rg) ?? { us: 0, nodes: new Set() };
    q.us += e.dur; q.nodes.add(node); byRegion.set(rg, q);
  }
  const rows = (m: Map<string, { us: number; nodes: Set<string> }>) =>
    [...m].map(([name, v]) => ({ name, ms: v.us / 1000 / n, share: v.us / total, count: v.nodes.size })).sort((a, b) => b.ms - a.ms);
  return {
    runs: n,
    modelRunMs: kept.reduce((s, e) => s + e.dur, 0) / 1000 / n,
    nodeMs: total / 1000 / n,
    byOp: rows(byOp),
    byNode: [...byNode].map(([name, us]) => ({ name, ms: us / 1000 / n, share: us / total, count: 1 })).sort((a, b) => b.ms - a.ms),
    byPhase: rows(byPhase),
    byRegion: rows(byRegion),
  };
}

/** A fixed-width table of the top rows. */
export function formatProfileRows(rows: readonly ProfileRow[], top = 15): string {
  return rows
    .slice(0, top)
    .map((r) => `${r.ms.toFixed(2).padStart(10)} ms ${(100 * r.share).toFixed(1).padStart(5)}%  ${String(r.count).padStart(4)}  ${r.name}`)
    .join('\n');
}
