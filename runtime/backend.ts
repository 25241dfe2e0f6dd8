/**
 * Running compiled graphs with onnxruntime-node: execution-provider choice, thread settings and
 * typed feeds. The same bytes run in onnxruntime-web (see `runtime/web.ts`).
 */
import { createRequire } from 'node:module';
import type * as Ort from 'onnxruntime-node';
import type { DType } from '../dsl/graph.ts';
import { fromFloat16, toFloat16 } from '../dsl/float16.ts';
import { chooseOrt } from './ep/ort-select.ts';
import { EP_RECORDS, type ExecutionProvider } from './ep/records.ts';
import { nvidiaDriverFound } from './ep/cuda-setup.ts';

/** The onnxruntime-node this process runs: the project's, or `dino setup cuda`'s for DINO_EP=cuda (ep/ort-select.ts). */
export const ortChoice = chooseOrt();
const ort: typeof Ort = createRequire(import.meta.url)(ortChoice.module) as typeof Ort;
// The types of whichever build was loaded: the two share onnxruntime-common's API.
declare namespace ort {
  type Tensor = Ort.Tensor;
  namespace Tensor { type Type = Ort.Tensor.Type }
  type InferenceSession = Ort.InferenceSession;
  namespace InferenceSession { type SessionOptions = Ort.InferenceSession.SessionOptions; type ReturnType = Ort.InferenceSession.ReturnType }
}

export { EXECUTION_PROVIDERS, type ExecutionProvider } from './ep/records.ts';

export interface SessionOptions {
  readonly ep?: ExecutionProvider;
  /** Intra-op threads (0 = ORT's default: one per core). */
  readonly threads?: number;
  /** ORT graph optimisation level. */
  readonly optimization?: 'disabled' | 'basic' | 'extended' | 'all';
  /** Write an ORT profile (chrome://tracing JSON) with this prefix. */
  readonly profilePrefix?: string;
  /**
   * Outputs to leave on the device as GPU buffers (WebGPU only, ep/device-state.ts); ignored for other EPs.
   * StepRunner fills it with the state outputs when `keepStateOnDevice` is set.
   */
  readonly deviceOutputs?: readonly string[];
  /** StepRunner: keep the training state on the device between steps where the EP allows it (WebGPU). */
  readonly keepStateOnDevice?: boolean;
}

/** Host data of a tensor; float16 tensors hold their bits in a Uint16Array (dsl/float16.ts). */
export type HostArray = Float32Array | Float64Array | Uint16Array | BigInt64Array | Int32Array | Uint8Array;

export async function createSession(model: Uint8Array | string, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  const ep = opts.ep ?? 'cpu';
  const so = ortSessionOptions(opts);
  try {
    return typeof model === 'string' ? await ort.InferenceSession.create(model, so) : await ort.InferenceSession.create(model, so);
  } catch (e) {
    const msg = (e as Error).message;
    if (ep !== 'cpu') throw new Error(`could not start the ${ep} execution provider: ${epRemedy(ep, ortChoice, msg)} (ORT said: ${msg})`);
    throw new Error(`ONNX Runtime could not load the model${typeof model === 'string' ? ` ${model}` : ''}: ${msg}`);
  }
}

/**
 * ORT's per-output location map for keeping `outputs` on the device (the training state between steps:
 * ep/device-state.ts), or undefined where the EP cannot (its record's `deviceOutputLocation`: WebGPU only).
 */
export function deviceOutputLocations(ep: ExecutionProvider, outputs: readonly string[]): Record<string, 'gpu-buffer'> | undefined {
  const location = EP_RECORDS[ep].deviceOutputLocation;
  if (!location || outputs.length === 0) return undefined;
  return Object.fromEntries(outputs.map((name) => [name, location]));
}

/** ORT's session options for ours. */
export function ortSessionOptions(opts: SessionOptions = {}): ort.InferenceSession.SessionOptions {
  const ep = opts.ep ?? 'cpu';
  const locations = deviceOutputLocations(ep, opts.deviceOutputs ?? []);
  return {
    executionProviders: [ep],
    graphOptimizationLevel: opts.optimization ?? 'all',
    intraOpNumThreads: opts.threads ?? 0,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    enableCpuMemArena: true,
    // Off: ORT's memory pattern (one pre-planned block per input shape, traced on the first run) held ~1.3 GiB
    // more than plain arena reuse for the fmnist-tiny6 training step, and steps were ~5% slower (bench/RESULTS.md).
    enableMemPattern: false,
    ...(opts.profilePrefix ? { enableProfiling: true, profileFilePrefix: opts.profilePrefix } : {}),
    ...(locations ? { preferredOutputLocation: locations } : {}),
  };
}

/**
 * What to do when `ep` does not start (its record's remedy, on one line), given which onnxruntime-node this process
 * loaded, ORT's error, and whether the NVIDIA driver is here (looked up for CUDA unless given).
 */
export function epRemedy(ep: ExecutionProvider, choice = ortChoice, error = '', nvidiaDriver = ep === 'cuda' ? nvidiaDriverFound() : true): string {
  return EP_RECORDS[ep].remedy({ error, cudaInstalled: choice.kind === 'cuda-setup', cudaBuildLoaded: choice.kind === 'cuda-setup', nvidiaDriver }).join(' ');
}

/** onnxruntime-node has no bfloat16 tensor type (its binding maps no ONNX type 16): bfloat16 lives inside graphs only. */
const ORT_TYPE: Record<DType, ort.Tensor.Type | undefined> = {
  float32: 'float32', float64: 'float64', float16: 'float16', bfloat16: undefined, int64: 'int64', int32: 'int32', bool: 'bool',
};

export function hostTensor(dtype: DType, data: HostArray, dims: readonly number[]): ort.Tensor {
  const type = ORT_TYPE[dtype];
  if (!type) throw new Error(`hostTensor: onnxruntime-node has no ${dtype} tensors; cast to float32 inside the graph`);
  return new ort.Tensor(type, data as any, dims);
}

export function float32(data: Float32Array | number[], dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('float32', data instanceof Float32Array ? data : Float32Array.from(data), dims);
}

/** A float16 tensor of `values` (rounded to nearest even), held as bits as ONNX Runtime wants them. */
export function float16(values: ArrayLike<number>, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor('float16', toFloat16(values), dims);
}

/**
 * The values of a float tensor as float32: float16 bits are decoded (exactly), float32 data is returned as it is
 * (a view), float64 is rounded.
 */
export function floatValues(t: ort.Tensor): Float32Array {
  const data = t.data;
  if (t.type === 'float16') return fromFloat16(data as Uint16Array);
  if (t.type === 'float32') return data as Float32Array;
  if (t.type === 'float64') return Float32Array.from(data as Float64Array);
  throw new Error(`floatValues: a ${t.type} tensor is not float`);
}

export function scalarTensor(value: number, dtype: 'float32' | 'float64' = 'float32'): ort.Tensor {
  return dtype === 'float32' ? new ort.Tensor('float32', Float32Array.of(value), []) : new ort.Tensor('float64', Float64Array.of(value), []);
}

export { ort };
