/**
 * Profiles the DINO training step with ONNX Runtime's profiler and prints where the time goes: per op type
 * (with the FLOPs the op type does and the GFLOP/s its kernels reach), per phase, and the most expensive nodes.
 *
 *   node --import tsx bench/profile-step.ts [--preset fmnist-tiny6] [--batch 64] [--steps 4] [--threads 0] [--keep DIR]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { countFlops } from '../dsl/flops.ts';
import { loadFashionMnist } from '../runtime/data/fashion-mnist.ts';
import { getPreset } from '../runtime/dino/presets.ts';
import { benchAugment } from './augment.ts';
import { peakRssMb } from './measure.ts';
import { type ProfileSummary, findProfile, formatProfileRows, summarizeProfile } from './profile.ts';
import { benchTrainStep, buildStepGraph, dinoPhase } from './train.ts';

export interface StepProfile {
  readonly summary: ProfileSummary;
  readonly stepMs: number;
  readonly flopsByOp: Readonly<Record<string, number>>;
  readonly file: string;
}

export async function profileStep(opts: { preset: string; batch: number; steps: number; threads: number; dir: string }): Promise<StepProfile> {
  const config = { ...getPreset(opts.preset), batch: opts.batch };
  const dataset = await loadFashionMnist({ limitPerClass: Math.max(10, Math.ceil(opts.batch / 5)) });
  const { crops } = await benchAugment(dataset, config.augment, opts.batch, { reps: 1, warmup: 0 });
  const prefix = path.join(opts.dir, 'step');
  const warmup = 2;
  const { result, compiled } = await benchTrainStep({ config, crops, ep: 'cpu', threads: opts.threads, warmup, steps: opts.steps, session: { profilePrefix: prefix } });
  compiled.runner.session.endProfiling();
  await compiled.runner.release();
  const file = findProfile(prefix);
  const graph = buildStepGraph(config).graph;
  return { summary: summarizeProfile(file, warmup), stepMs: result.step.medianMs, flopsByOp: countFlops(graph, { phaseOf: dinoPhase }).byOp, file };
}

const MATRIX_PRODUCTS = new Set(['MatMul', 'Gemm', 'FusedMatMul']);

/** ORT op types that the DSL emits under another name, for matching FLOPs to profile rows. */
const DSL_NAMES: Record<string, string> = { Identity: 'StopGradient' };

export function formatStepProfile(p: StepProfile): string {
  const s = p.summary;
  const lines = [
    `step wall ${p.stepMs.toFixed(1)} ms (median, profiling on); ORT model_run ${s.modelRunMs.toFixed(1)} ms; kernels ${s.nodeMs.toFixed(1)} ms (${s.runs} runs averaged)`,
    '',
    'by op type:        ms  share  nodes  op                GFLOP   GFLOP/s',
  ];
  for (const r of s.byOp.slice(0, 20)) {
    const fl = p.flopsByOp[r.name] ?? p.flopsByOp[DSL_NAMES[r.name] ?? ''] ?? 0;
    lines.push(`${r.ms.toFixed(1).padStart(17)} ${(100 * r.share).toFixed(1).padStart(5)}% ${String(r.count).padStart(6)}  ${r.name.padEnd(16)} ${(fl / 1e9).toFixed(2).padStart(7)} ${fl ? (fl / 1e6 / r.ms).toFixed(1).padStart(9) : ''}`);
  }
  // ORT rewrites the DSL's MatMuls into Gemm (MatMul + Add) and FusedMatMul (MatMul + Transpose / scale): one family.
  const products = s.byOp.filter((r) => MATRIX_PRODUCTS.has(r.name)).reduce((t, r) => t + r.ms, 0);
  const productFlops = [...MATRIX_PRODUCTS].reduce((t, op) => t + (p.flopsByOp[op] ?? 0), 0);
  lines.push(
    '',
    `matrix products (MatMul, Gemm, FusedMatMul): ${products.toFixed(1)} ms = ${((100 * products) / s.nodeMs).toFixed(1)}% of kernel time, ${(productFlops / 1e6 / products).toFixed(1)} GFLOP/s`,
    `everything else: ${(s.nodeMs - products).toFixed(1)} ms = ${((100 * (s.nodeMs - products)) / s.nodeMs).toFixed(1)}% of kernel time`,
  );
  lines.push('', 'by phase:', formatProfileRows(s.byPhase, 10), '', 'by region:', formatProfileRows(s.byRegion, 20), '', 'top nodes:', formatProfileRows(s.byNode, 30));
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      preset: { type: 'string', default: 'fmnist-tiny6' },
      batch: { type: 'string', default: '64' },
      steps: { type: 'string', default: '4' },
      threads: { type: 'string', default: '0' },
      keep: { type: 'string' },
    },
  });
  const dir = values.keep ?? mkdtempSync(path.join(os.tmpdir(), 'dino-profile-'));
  try {
    const p = await profileStep({ preset: values.preset!, batch: Number(values.batch), steps: Number(values.steps), threads: Number(values.threads), dir });
    console.log(formatStepProfile(p));
    console.log(`\npeak RSS ${peakRssMb().toFixed(0)} MiB${values.keep ? `; profile ${p.file}` : ''}`);
  } finally {
    if (!values.keep) rmSync(dir, { recursive: true, force: true });
  }
}

