/**
 * The training step graph of a run on an execution provider: built once, by `trainingStepGraph`, for training,
 * `dino bench` and the scale bench alike, so what is timed is what trains. The provider reaches the graph only
 * as its capability record's lowering target (runtime/ep/records.ts, dsl/graph.ts `Target`): `models/` builds one
 * step and knows no provider.
 */
import * as E from 'fp-ts/lib/Either.js';
import { type Precision, formatError } from '../../dsl/index.ts';
import { type DinoStepGraph, buildDinoStep } from '../../models/dino-step.ts';
import type { Recompute } from '../../models/vit.ts';
import { EP_RECORDS, type ExecutionProvider } from '../ep/records.ts';
import type { BackboneConfig } from '../../models/presets.ts';
import { type TrainConfig, stepConfig } from './config.ts';

/** The training loop's activation recomputation unless told otherwise (see TrainOptions.recompute). */
export const DEFAULT_RECOMPUTE: Recompute = 'mlp';

export interface StepGraphOptions {
  /** Default `cpu`. */
  readonly ep?: ExecutionProvider;
  /** Student activations recomputed in the backward pass; default {@link DEFAULT_RECOMPUTE}. */
  readonly recompute?: Recompute;
}

/**
 * The precision whose numbers the step computes on `ep`: where the provider has no MatMul kernel in the precision's
 * 16-bit dtype (ONNX Runtime has bfloat16 MatMul on CUDA only: its CPU provider refuses a session with one, "Could
 * not find an implementation for MatMul"), the step is lowered to the emulation, float32 products of operands
 * rounded to bfloat16, rounded again: the numbers of a GPU's bfloat16 GEMM with float32 accumulation. float16 needs
 * no such step: the CPU provider runs its MatMul.
 */
export function stepPrecision(precision: Precision, ep: ExecutionProvider): Precision {
  const dtypes = EP_RECORDS[ep].target.matmulDtypes;
  if (precision === 'bf16' && !dtypes.includes('bfloat16')) return 'bf16-emulated';
  if (precision === 'fp16' && !dtypes.includes('float16')) return 'fp16-emulated';
  return precision;
}

/** The step graph of a training run of `cfg` on `opts.ep`, lowered for that provider's capability record. */
export function trainingStepGraph(cfg: TrainConfig<BackboneConfig>, opts: StepGraphOptions = {}): DinoStepGraph {
  const built = buildDinoStep({ ...stepConfig(cfg), recompute: opts.recompute ?? DEFAULT_RECOMPUTE }, EP_RECORDS[opts.ep ?? 'cpu'].target);
  if (E.isLeft(built)) throw new Error(`the model config is invalid:\n  ${built.left.map(formatError).join('\n  ')}`);
  return built.right;
}
