/**
 * `dino bench`: every figure of the benchmark measured in one process, so the ratios compare like with like
 * (docs/ARCHITECTURE.md, "Benchmarks"). In order: the MatMul ceiling (onnxruntime-node), multi-crop augmentation of one batch, the DINO
 * training step (state in and out included), the state I/O share of the step, the MatMul ceiling again (the
 * better of the two counts: the machine may be shared), the WASM MatMul ceiling, and inference of a teacher-like
 * backbone with onnxruntime-node and onnxruntime-web (WASM).
 *
 * The machine's load and the CPU time per wall time of each measurement are part of the result: on a shared
 * machine they tell a slow step from a step that did not have the cores.
 *
 * `reduced` is a smoke run (a small batch, a few steps, small ceiling and inference batches) that checks every
 * path end to end in seconds; its numbers are not benchmarks.
 */
import { loadFashionMnist } from '../runtime/data/fashion-mnist.ts';
import type { ExecutionProvider } from '../runtime/backend.ts';
import { getPreset } from '../runtime/dino/presets.ts';
import { DEFAULT_RECOMPUTE } from '../runtime/dino/train.ts';
import type { Recompute } from '../models/vit.ts';
import { benchAugment } from './augment.ts';
import { bestCeiling, matmulCeiling, wasmMatmulCeiling } from './ceiling.ts';
import { type InferBackend, benchInference, teacherModel } from './infer.ts';
import { type MachineInfo, machineInfo, peakRssMb } from './measure.ts';
import { benchStateIo } from './state-io.ts';
import { benchTrainStep } from './train.ts';

export interface BenchOptions {
  /** Preset name (default `fmnist-tiny6`). */
  readonly preset?: string;
  /** Images per training step (default: the preset's; 2 when reduced). */
  readonly batch?: number;
  readonly ep?: ExecutionProvider;
  /** Print one JSON line instead of the readable report. */
  readonly json?: boolean;
  /** Timed training steps after warm-up (default 10, at least 10 unless reduced). */
  readonly steps?: number;
  /** Smoke run: small batch, few steps, small ceiling and inference batches. */
  readonly reduced?: boolean;
  /** Intra-op threads for every onnxruntime-node session (default 0: ORT's choice, as training uses). */
  readonly threads?: number;
  /** Student activations recomputed in the backward pass (see `Recompute`); default: the training loop's. */
  readonly recompute?: Recompute;
  /** Where the report goes (default stdout). */
  readonly out?: (line: string) => void;
  /** Progress lines (default stderr). */
  readonly log?: (line: string) => void;
}

/** The `--json` line: the keys first, then the detail behind them. */
export interface BenchResult {
  readonly train_images_per_s: number;
  readonly train_gflops_per_s: number;
  readonly ceiling_gflops_per_s: number;
  readonly state_io_fraction: number;
  readonly augment_ms_per_batch: number;
  /** Peak RSS of the process when the training step has run (the dataset, the state and the session included), MiB. */
  readonly peak_rss_mb: number;
  /** Images per second by backend, then by batch size. */
  readonly infer_images_per_s: Record<InferBackend, Record<string, number>>;

  readonly preset: string;
  readonly batch: number;
  readonly ep: ExecutionProvider;
  readonly threads: number;
  readonly reduced: boolean;
  /** Student activations recomputed in the backward pass (see `Recompute`). */
  readonly recompute: Recompute;
  readonly machine: MachineInfo;
  /** 1-minute load average when the bench ended (compare with machine.loadAverage, at the start). */
  readonly load_average_end: number;
  readonly ceiling_n: number;
  /** The ceiling is the best of its runs (before and after the step); this is its median run. */
  readonly ceiling_median_gflops_per_s: number;
  readonly ceiling_wasm_gflops_per_s: number;
  readonly train_step_ms: number;
  readonly train_step_ms_min: number;
  readonly train_steps_timed: number;
  readonly train_flops_per_step: number;
  readonly train_flops_by_phase: Record<string, number>;
  readonly train_fraction_of_ceiling: number;
  /** CPU time over wall time during the timed steps: near the core count when the step had the machine. */
  readonly train_cpu_per_wall: number;
  readonly train_compile_ms: number;
  readonly state_mb: number;
  readonly state_updated_mb: number;
  readonly state_io_ms: number;
  /** Peak of intermediate tensors alive at once in the step graph, the returned state included (an ideal planner's need). */
  readonly activation_peak_mb: number;
  /** The same without the graph's outputs: what the forward pass keeps for the backward pass, and temporaries. */
  readonly activation_transient_peak_mb: number;
  readonly rss_before_train_mb: number;
  readonly infer_gflops_per_s: Record<InferBackend, Record<string, number>>;
  /** Inference GFLOP/s over the ceiling of the same runtime (node: ORT CPU MatMul; web: WASM MatMul). */
  readonly infer_fraction_of_ceiling: Record<InferBackend, Record<string, number>>;
  readonly infer_flops_per_image: number;
  /** CPU time over wall time of each inference measurement (see train_cpu_per_wall). */
  readonly infer_cpu_per_wall: Record<InferBackend, Record<string, number>>;
}

const MB = 1024 * 1024;

export async function runBench(opts: BenchOptions = {}): Promise<BenchResult> {
  const out = opts.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  const log = opts.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const reduced = opts.reduced ?? false;
  const preset = getPreset(opts.preset ?? 'fmnist-tiny6');
  const batch = opts.batch ?? (reduced ? 2 : preset.batch);
  if (!(Number.isInteger(batch) && batch > 0)) throw new Error(`--batch must be a positive integer, got ${batch}`);
  const steps = reduced ? (opts.steps ?? 3) : Math.max(10, opts.steps ?? 10);
  const warmup = reduced ? 1 : 3;
  const ep = opts.ep ?? 'cpu';
  const threads = opts.threads ?? 0;
  const config = { ...preset, batch };
  const machine = machineInfo();

  const ceilingN = reduced ? 256 : 2048;
  log(`ceiling: fp32 MatMul ${ceilingN}^3 (onnxruntime-node ${ep})`);
  const ceilingBefore = await matmulCeiling(ceilingN, { ep, threads, reps: reduced ? 3 : 10 });

  log('augmentation: loading Fashion-MNIST');
  const dataset = await loadFashionMnist(reduced ? { limitPerClass: Math.max(10, batch) } : {});
  const augment = await benchAugment(dataset, config.augment, batch, { seed: config.seed, reps: reduced ? 2 : 5 });

  log(`training step: ${config.preset}, batch ${batch}, ${warmup} warm-up + ${steps} timed steps`);
  const rssBeforeTrain = peakRssMb();
  const recompute = opts.recompute ?? DEFAULT_RECOMPUTE;
  const { result: train, compiled } = await benchTrainStep({ config, crops: augment.crops, ep, threads, warmup, steps, recompute });

  log('state I/O: pass-through graph');
  const io = await benchStateIo(compiled.runner.signature, compiled.state, { ep, threads, warmup: reduced ? 1 : 2, reps: reduced ? 2 : 10 });
  await compiled.runner.release();

  // Again after the step: a ceiling taken while other work shared the machine would flatter every fraction.
  log(`ceiling: fp32 MatMul ${ceilingN}^3 (onnxruntime-node ${ep}), second measurement`);
  const ceiling = bestCeiling(ceilingBefore, await matmulCeiling(ceilingN, { ep, threads, reps: reduced ? 2 : 5 }));

  // WASM memory never shrinks: its ceiling runs after the training step so that it cannot raise the step's peak RSS.
  log(`ceiling: fp32 MatMul ${ceilingN}^3 (onnxruntime-web WASM)`);
  const wasmCeiling = await wasmMatmulCeiling(ceilingN, { reps: reduced ? 2 : 3 });

  const inferBatches = reduced ? [1, 2] : [1, 64, 256];
  log(`inference: teacher backbone, batches ${inferBatches.join('/')}, onnxruntime-node and onnxruntime-web WASM`);
  const model = teacherModel(config.backbone, config.seed);
  const backends: InferBackend[] = ['ort-node', 'ort-web-wasm'];
  const points = await benchInference(model, { ep, threads, batches: inferBatches, backends, repScale: reduced ? 0.1 : 1 });
  const byBackend = (f: (p: (typeof points)[number]) => number) => {
    const r = { 'ort-node': {}, 'ort-web-wasm': {} } as Record<InferBackend, Record<string, number>>;
    for (const p of points) r[p.backend][String(p.batch)] = f(p);
    return r;
  };

  const result: BenchResult = {
    train_images_per_s: train.imagesPerS,
    train_gflops_per_s: train.gflopsPerS,
    ceiling_gflops_per_s: ceiling.gflopsPerS,
    state_io_fraction: io.stateIoMs / train.step.medianMs,
    augment_ms_per_batch: augment.msPerBatch,
    peak_rss_mb: train.peakRssMb,
    infer_images_per_s: byBackend((p) => p.imagesPerS),
    preset: config.preset,
    batch,
    ep,
    threads,
    reduced,
    recompute,
    machine,
    load_average_end: machineInfo().loadAverage,
    ceiling_n: ceilingN,
    ceiling_median_gflops_per_s: ceiling.medianGflopsPerS,
    ceiling_wasm_gflops_per_s: wasmCeiling.gflopsPerS,
    train_step_ms: train.step.medianMs,
    train_step_ms_min: train.step.minMs,
    train_steps_timed: steps,
    train_flops_per_step: train.flops.total,
    train_flops_by_phase: { ...train.flops.byPhase },
    train_fraction_of_ceiling: train.gflopsPerS / ceiling.gflopsPerS,
    train_cpu_per_wall: train.step.cpuPerWall,
    train_compile_ms: train.compileMs,
    state_mb: train.stateBytes / MB,
    state_updated_mb: train.updatedBytes / MB,
    state_io_ms: io.stateIoMs,
    activation_peak_mb: train.activations.peakBytes / MB,
    activation_transient_peak_mb: train.activations.peakTransientBytes / MB,
    rss_before_train_mb: rssBeforeTrain,
    infer_gflops_per_s: byBackend((p) => p.gflopsPerS),
    infer_fraction_of_ceiling: byBackend((p) => p.gflopsPerS / (p.backend === 'ort-node' ? ceiling.gflopsPerS : wasmCeiling.gflopsPerS)),
    infer_flops_per_image: model.flopsPerImage,
    infer_cpu_per_wall: byBackend((p) => p.cpuPerWall),
  };
  if (opts.json) out(JSON.stringify(result));
  else out(formatBenchReport(result));
  return result;
}

const f1 = (x: number) => x.toFixed(1);
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** The readable report. */
export function formatBenchReport(r: BenchResult): string {
  const m = r.machine;
  const lines = [
    `dino bench: ${r.preset}, batch ${r.batch}, ep ${r.ep}, threads ${r.threads || 'ORT default'}, recompute ${r.recompute}${r.reduced ? ' (REDUCED smoke run: not a benchmark)' : ''}`,
    `machine: ${m.nproc} cores, ${m.cpuModel}, node ${m.node}, onnxruntime-node ${m.onnxruntimeNode}, onnxruntime-web ${m.onnxruntimeWeb}, load ${m.loadAverage.toFixed(2)} at start, ${r.load_average_end.toFixed(2)} at end`,
    `ceiling        fp32 MatMul ${r.ceiling_n}^3: ${f1(r.ceiling_gflops_per_s)} GFLOP/s (node; best run, median ${f1(r.ceiling_median_gflops_per_s)}), ${f1(r.ceiling_wasm_gflops_per_s)} GFLOP/s (WASM)`,
    `training step  ${f1(r.train_images_per_s)} images/s, ${f1(r.train_step_ms)} ms/step (median of ${r.train_steps_timed}, min ${f1(r.train_step_ms_min)}), CPU/wall ${r.train_cpu_per_wall.toFixed(2)}`,
    `               ${f1(r.train_flops_per_step / 1e9)} GFLOP/step (forward ${f1(r.train_flops_by_phase['forward']! / 1e9)}, backward ${f1(r.train_flops_by_phase['backward']! / 1e9)}, update ${(r.train_flops_by_phase['update']! / 1e9).toFixed(2)})`,
    `               ${f1(r.train_gflops_per_s)} GFLOP/s = ${pct(r.train_fraction_of_ceiling)} of the ceiling`,
    `state I/O      ${f1(r.state_io_ms)} ms/step = ${pct(r.state_io_fraction)} of the step (state ${f1(r.state_mb)} MiB in, ${f1(r.state_updated_mb)} MiB out)`,
    `augmentation   ${f1(r.augment_ms_per_batch)} ms/batch (one thread)`,
    `memory         peak RSS ${f1(r.peak_rss_mb)} MiB (${f1(r.rss_before_train_mb)} before the step was built); activations (ideal planner) ${f1(r.activation_peak_mb)} MiB with the returned state, ${f1(r.activation_transient_peak_mb)} MiB without`,
    `inference      teacher backbone, ${(r.infer_flops_per_image / 1e6).toFixed(1)} MFLOP/image (fraction: of the same runtime's ceiling; WASM runs 1 thread)`,
  ];
  for (const backend of Object.keys(r.infer_images_per_s) as InferBackend[]) {
    const cells = Object.keys(r.infer_images_per_s[backend]).map(
      (b) => `batch ${b}: ${f1(r.infer_images_per_s[backend][b]!)} img/s (${pct(r.infer_fraction_of_ceiling[backend][b]!)}, CPU/wall ${r.infer_cpu_per_wall[backend][b]!.toFixed(2)})`,
    );
    lines.push(`  ${backend.padEnd(13)}${cells.join(', ')}`);
  }
  return lines.join('\n');
}
