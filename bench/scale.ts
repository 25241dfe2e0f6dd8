/**
 * The training step at scale: any preset (DINO's vit_small/16 at 224 px above all), synthetic crops of the preset's
 * shapes, K steps per ONNX Runtime run (the state crosses host <-> device once per K steps) and a precision. What a
 * GPU session measures with `dino bench --preset vit_small --ep cuda --batch 64 --steps-per-run 8 [--precision fp16|bf16]`;
 * on the CPU only as a smoke run (a vit_small/16 step is ~8 TFLOP). Reports images/s, TFLOP/s, the fraction of the
 * same EP's fp32 MatMul ceiling, the state and its round-trip share, and the GPU's memory in use when nvidia-smi
 * answers.
 */
import { execFileSync } from 'node:child_process';
import { Prng } from '../dsl/index.ts';
import { countFlops } from '../dsl/flops.ts';
import type { TrainPrecision } from '../dsl/autocast.ts';
import { dinoStepInputShapes } from '../models/dino-step.ts';
import type { Recompute } from '../models/vit.ts';
import type { ExecutionProvider } from '../runtime/backend.ts';
import { applyOverrides, stepConfig, withPrecision, withValues } from '../runtime/dino/config.ts';
import { getPreset } from '../runtime/dino/presets.ts';
import { dinoStepFeeds } from '../runtime/dino/step-feeds.ts';
import { initialState, trainingStepGraph } from '../runtime/dino/train.ts';
import { StepRunner, stackSteps } from '../runtime/step-runner.ts';
import { stateToHost } from '../runtime/ep/device-state.ts';
import { matmulCeiling } from './ceiling.ts';
import { benchStateIo } from './state-io.ts';
import { dinoPhase, midRunScalars } from './train.ts';
import { median, peakRssMb } from './measure.ts';

export interface ScaleBenchOptions {
  readonly preset: string;
  readonly batch?: number;
  readonly ep: ExecutionProvider;
  readonly threads?: number;
  readonly precision?: TrainPrecision;
  /** K: steps per ONNX Runtime run (1: `StepRunner.run`, more: the ONNX Loop of `runSteps`). */
  readonly stepsPerRun?: number;
  /** Timed runs (of K steps each) after one warm-up run. */
  readonly runs?: number;
  readonly recompute?: Recompute;
  /** Config overrides (`key=value`, as `--set`), e.g. fewer local crops for a smoke run. */
  readonly set?: readonly string[];
  /** Side of the MatMul ceiling's square matrices (4096 on a GPU; smaller for a CPU smoke run). */
  readonly ceilingN?: number;
}

export interface ScaleBenchResult {
  readonly preset: string;
  readonly batch: number;
  readonly ep: ExecutionProvider;
  readonly precision: string;
  readonly steps_per_run: number;
  readonly steps_timed: number;
  readonly step_ms: number;
  readonly images_per_s: number;
  readonly tflop_per_step: number;
  readonly tflops_per_s: number;
  /** The same EP's fp32 MatMul ceiling (an fp16 or bf16 step can pass it: then the fraction is over 1). */
  readonly ceiling_fp32_tflops_per_s: number;
  readonly fraction_of_fp32_ceiling: number;
  readonly state_mib: number;
  /** One round trip of the whole state through a pass-through graph, over the step time at this K. */
  readonly state_round_trip_share: number;
  readonly compile_s: number;
  readonly last_loss: number;
  readonly peak_rss_mib: number;
  /** nvidia-smi's memory in use on the first GPU after the timed runs, or null where it does not answer. */
  readonly gpu_memory_used_mib: number | null;
}

function gpuMemoryUsedMib(): number | null {
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=memory.used', '--format=csv,noheader,nounits'], { encoding: 'utf8', timeout: 10_000 });
    const v = Number(out.trim().split('\n')[0]);
    return Number.isFinite(v) ? v : null;
  } catch {
    return null;
  }
}

export async function runScaleBench(opts: ScaleBenchOptions): Promise<ScaleBenchResult> {
  const base = getPreset(opts.preset);
  const config = applyOverrides(opts.batch !== undefined ? withValues(base, { batch: opts.batch }) : base, opts.set ?? []);
  const k = opts.stepsPerRun ?? 1;
  const runs = opts.runs ?? 5;
  const precision = opts.precision ?? 'fp32';
  const threads = opts.threads ?? 0;
  const built = trainingStepGraph(withPrecision(config, precision), { ep: opts.ep, ...(opts.recompute ? { recompute: opts.recompute } : {}) });
  const flops = countFlops(built.graph, { phaseOf: dinoPhase });
  const t0 = performance.now();
  const runner = await StepRunner.compile(built.graph, { ep: opts.ep, threads, keepStateOnDevice: true });
  const compileS = (performance.now() - t0) / 1000;
  const state = initialState(runner.signature.state, config.seed);

  // Synthetic crops of the step's shapes: throughput does not depend on the pixels.
  const shapes = dinoStepInputShapes(stepConfig(config));
  const prng = Prng.seeded(1);
  const noise = (dims: readonly number[] | undefined) => Float32Array.from({ length: (dims ?? [0]).reduce((a, b) => a * b, 1) }, () => prng.normal());
  const crops = { globals: noise(shapes.globals), locals: noise(shapes.locals) };
  const inputs = dinoStepFeeds(stepConfig(config), crops, () => prng);
  const scalars = Array.from({ length: k }, (_, i) => midRunScalars(config, i));
  const stacked = k > 1 ? stackSteps(Array.from({ length: k }, () => inputs)) : undefined;
  let lastLoss = NaN;
  const oneRun = async () => {
    const metrics = stacked ? await runner.runSteps(state, stacked, scalars) : [await runner.run(state, inputs, scalars[0]!)];
    lastLoss = metrics.at(-1)!['loss']!;
    if (!Number.isFinite(lastLoss)) throw new Error(`the benchmarked step produced loss ${lastLoss}`);
  };
  await oneRun(); // warm-up (and the K-step session's compile)
  const perStep: number[] = [];
  for (let r = 0; r < runs; r++) {
    const s = performance.now();
    await oneRun();
    perStep.push((performance.now() - s) / k);
  }
  const gpuMemory = gpuMemoryUsedMib();
  const stepMs = median(perStep);
  await stateToHost(state); // WebGPU keeps it on the device; the state I/O bench reads it
  const io = await benchStateIo(runner.signature, state, { ep: opts.ep, threads, warmup: 1, reps: 3 });
  await runner.release();
  const n = opts.ceilingN ?? (opts.ep === 'cpu' ? 1024 : 4096);
  const ceiling = await matmulCeiling(n, { ep: opts.ep, threads, reps: 5 });
  const stateBytes = runner.signature.state.reduce((sum, spec) => sum + state.values(spec.name).byteLength, 0);
  const tflopsPerS = flops.total / (stepMs * 1e9);
  return {
    preset: config.preset, batch: config.batch, ep: opts.ep, precision, steps_per_run: k, steps_timed: runs * k,
    step_ms: stepMs, images_per_s: (config.batch * 1000) / stepMs,
    tflop_per_step: flops.total / 1e12, tflops_per_s: tflopsPerS,
    ceiling_fp32_tflops_per_s: ceiling.gflopsPerS / 1000, fraction_of_fp32_ceiling: tflopsPerS / (ceiling.gflopsPerS / 1000),
    state_mib: stateBytes / 2 ** 20, state_round_trip_share: io.stateIoMs / k / stepMs,
    compile_s: compileS, last_loss: lastLoss, peak_rss_mib: peakRssMb(), gpu_memory_used_mib: gpuMemory,
  };
}

/** The readable report of one scale bench. */
export function formatScaleBench(r: ScaleBenchResult): string {
  const f = (x: number, d = 1) => x.toFixed(d);
  return [
    `dino bench (training step): ${r.preset}, batch ${r.batch}, ep ${r.ep}, ${r.precision}, ${r.steps_per_run} step(s) per run, ${r.steps_timed} steps timed`,
    `  ${f(r.step_ms)} ms/step, ${f(r.images_per_s)} images/s, ${f(r.tflop_per_step, 3)} TFLOP/step = ${f(r.tflops_per_s, 2)} TFLOP/s`,
    `  fp32 MatMul ceiling of this EP ${f(r.ceiling_fp32_tflops_per_s, 2)} TFLOP/s: ${f(100 * r.fraction_of_fp32_ceiling)}%`,
    `  state ${f(r.state_mib)} MiB, its round trip ${f(100 * r.state_round_trip_share)}% of a step; compile ${f(r.compile_s)} s; peak RSS ${f(r.peak_rss_mib, 0)} MiB` +
      (r.gpu_memory_used_mib !== null ? `; GPU memory in use ${f(r.gpu_memory_used_mib, 0)} MiB` : ''),
  ].join('\n');
}
