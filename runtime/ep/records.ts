/**
 * What each ONNX Runtime execution provider can do, one record per provider: the one place an EP's facts live.
 * The graph builder reads its `target` (ops without a kernel, 16-bit MatMul dtypes: the dsl lowers the step for
 * it, dsl/graph.ts `Target`), the session reads whether outputs can stay on the device, the training loop its
 * default steps per run and its precision notes, `doctor` how to probe it and its remedy, and the CLI lists the
 * `--ep` choices from here. Adding an EP is one record here (and its name in the union below, which `tsc` then
 * follows), plus a probe in runtime/ep/doctor.ts if it runs in a package other than the two there.
 *
 * This module loads no ONNX Runtime: `runtime/ep/ort-select.ts` and the CLI read it before a build is chosen.
 */
import type { Target } from '../../dsl/graph.ts';
import type { TrainPrecision } from '../../dsl/autocast.ts';
import { cudaLibraryAdvice, nvidiaDriverAdvice } from './cuda-setup.ts';

/** The providers onnxruntime-node runs: the `--ep` choices. */
export type ExecutionProvider = 'cpu' | 'cuda' | 'webgpu';
/** Providers of onnxruntime-web only (the browser, and Node through runtime/web.ts). */
export type WebExecutionProvider = 'wasm';
export type EpName = ExecutionProvider | WebExecutionProvider;

/** What the remedy of a provider that did not start may depend on. */
export interface RemedyContext {
  /** ORT's error, first line. */
  readonly error: string;
  /** Whether `dino setup cuda`'s build is installed and consistent (runtime/ep/cuda-setup.ts). */
  readonly cudaInstalled: boolean;
  /** Whether this process loaded that build (runtime/ep/ort-select.ts). */
  readonly cudaBuildLoaded: boolean;
  /** Whether the NVIDIA driver's libcuda.so.1 loads on this machine. */
  readonly nvidiaDriver: boolean;
}

export interface EpRecord<N extends EpName = EpName> {
  readonly name: N;
  /**
   * Which ONNX Runtime package runs it. Also how `doctor` probes it: a child process opens a one-node model with
   * that package and this provider alone and runs it (runtime/ep/doctor.ts).
   */
  readonly runtime: N extends ExecutionProvider ? 'onnxruntime-node' : 'onnxruntime-web';
  /** What the step graph is lowered for (dsl/graph.ts `Target`). */
  readonly target: Target;
  /**
   * Where graph outputs can stay between runs instead of coming back to the host (ORT's `preferredOutputLocation`;
   * runtime/ep/device-state.ts): WebGPU's `gpu-buffer`. onnxruntime-node has no CUDA tensor location, so CUDA keeps
   * its state near the device with several steps per run instead.
   */
  readonly deviceOutputLocation?: 'gpu-buffer';
  /**
   * Steps per ONNX Runtime call by default, given the intervals (checkpoint, log; in steps) a run must stop at
   * (runtime/ep/steps-per-run.ts).
   */
  defaultStepsPerRun(intervals: readonly number[]): number;
  /** A line for the training log when a run in `precision` on this provider gains nothing from it, or undefined. */
  precisionNote?(precision: TrainPrecision): string | undefined;
  /** What to do when it does not start: the lines `doctor` prints (the first is the fix, the rest explain it). */
  remedy(ctx: RemedyContext): readonly string[];
}

/** The largest K <= `max` that divides every positive interval (1 when none does). */
function largestDividingK(max: number, intervals: readonly number[]): number {
  const positive = intervals.filter((n) => n > 0);
  for (let k = max; k > 1; k--) if (positive.every((n) => n % k === 0)) return k;
  return 1;
}

/**
 * Beyond 8 steps per call the gain measured on an H200 was small (vit_small/16: 248 ms/step at K = 8) while memory
 * grows (bench/RESULTS.md).
 */
export const MAX_DEFAULT_STEPS_PER_RUN = 8;

const REINSTALL = 'reinstall the project\'s dependencies (npm ci)';

export const EP_RECORDS: { readonly [N in EpName]: EpRecord<N> } = {
  cpu: {
    name: 'cpu',
    runtime: 'onnxruntime-node',
    // Its float16 MatMul computes in float32 (no gain, but the float16 roundings); it has no bfloat16 MatMul: a
    // session with one fails with "Could not find an implementation for MatMul".
    target: { name: 'cpu', missingOps: [], matmulDtypes: ['float16'] },
    // No bus to cross: K > 1 would only cost memory.
    defaultStepsPerRun: () => 1,
    precisionNote: (p) => (p === 'fp16'
      ? 'note: precision fp16 on the CPU provider: ONNX Runtime runs float16 MatMul in float32 there (no gain); fp16 is meant for the CUDA provider'
      : undefined),
    remedy: () => [`${REINSTALL}: the CPU provider is part of every onnxruntime-node`],
  },
  cuda: {
    name: 'cuda',
    runtime: 'onnxruntime-node',
    target: { name: 'cuda', missingOps: [], matmulDtypes: ['float16', 'bfloat16'] },
    // Every step's outputs (the whole training state: 671 MiB for vit_small/16 with K = 65536) come back to the
    // host, so one step per call spends most of its time on the bus; K steps per call cross once.
    defaultStepsPerRun: (intervals) => largestDividingK(MAX_DEFAULT_STEPS_PER_RUN, intervals),
    remedy: (ctx) => {
      if (!ctx.nvidiaDriver) return nvidiaDriverAdvice();
      if (ctx.cudaBuildLoaded || ctx.cudaInstalled) {
        const missing = /lib[a-zA-Z]+\.so(\.\d+)*/.exec(ctx.error)?.[0];
        return [
          `the CUDA build from \`npx dino setup cuda\` is installed but its provider did not start${missing ? ` (${missing} was not found)` : ''}:`,
          ...cudaLibraryAdvice(),
        ];
      }
      return [
        'run `npx dino setup cuda` (installs onnxruntime-node with the CUDA 13 provider from npm into .dino/cuda; then the CUDA provider loads that build),',
        'or, with internet access: ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node (CUDA 12 build; see README "GPU"), or use the CPU provider.',
      ];
    },
  },
  webgpu: {
    name: 'webgpu',
    runtime: 'onnxruntime-node',
    // No LogSoftmax kernel: ORT would run it on the CPU, its input and output crossing the bus both ways; the dsl
    // lowers it (dsl/ops/nn.ts). float16 MatMul where the adapter has shader-f16; no bfloat16.
    target: { name: 'webgpu', missingOps: ['LogSoftmax'], matmulDtypes: ['float16'] },
    deviceOutputLocation: 'gpu-buffer',
    // The state stays on the device between calls (deviceOutputLocation), so K > 1 gains nothing.
    defaultStepsPerRun: () => 1,
    remedy: () => [
      'needs a GPU driver with Vulkan (Linux), Metal (macOS) or D3D12 (Windows) that exposes a WebGPU adapter;',
      'on a headless Linux GPU server install the vendor\'s Vulkan ICD (NVIDIA: the driver\'s libnvidia-gl / vulkan icd). Otherwise use the CPU or CUDA provider.',
    ],
  },
  wasm: {
    name: 'wasm',
    runtime: 'onnxruntime-web',
    // The CPU provider's kernels compiled to WebAssembly: the CPU's capabilities.
    target: { name: 'wasm', missingOps: [], matmulDtypes: ['float16'] },
    defaultStepsPerRun: () => 1,
    remedy: () => [`${REINSTALL}: onnxruntime-web ships the WebAssembly binaries`],
  },
};

/** Every provider, in the order `doctor` probes them. */
export const EP_NAMES = Object.keys(EP_RECORDS) as EpName[];

const isNodeEp = (n: EpName): n is ExecutionProvider => EP_RECORDS[n].runtime === 'onnxruntime-node';
/** onnxruntime-node's providers: the `--ep` choices of every command. */
export const EXECUTION_PROVIDERS: readonly ExecutionProvider[] = EP_NAMES.filter(isNodeEp);

/** The record of `ep`. */
export const epRecord = <N extends EpName>(ep: N): EpRecord<N> => EP_RECORDS[ep];

/**
 * The lines the training log adds for a run in `precision` on `ep`: the provider's own note, and where it has no
 * MatMul kernel in the precision's 16-bit dtype, that the step computes that dtype's roundings in float32.
 */
export function precisionNotes(ep: EpName, precision: TrainPrecision): string[] {
  const record = EP_RECORDS[ep];
  const notes: string[] = [];
  const own = record.precisionNote?.(precision);
  if (own) notes.push(own);
  if (precision === 'bf16' && !record.target.matmulDtypes.includes('bfloat16')) {
    notes.push(`note: precision bf16 on the ${ep} provider, which has no bfloat16 MatMul: the step rounds to bfloat16 in float32 (the same numbers, slower than fp32); bf16 is meant for the CUDA provider`);
  }
  return notes;
}
