/**
 * Side-by-side timing of variants of the DINO training step in one process: each variant has its own ORT
 * session (its own session options, optionally its own ONNX bytes) and its own copy of the state; the steps
 * are interleaved (one step of each variant per round, the order rotating), so a machine whose load drifts
 * slows every variant alike. Reported: each variant's median step time, and the median over rounds of its
 * time divided by the baseline's time in the same round (a paired ratio, robust to drift).
 *
 * `prealloc`: the state's `next.*` outputs are written into preallocated tensors (`session.run(feeds, fetches)`),
 * two buffers per updated state tensor swapped every step, instead of tensors ORT allocates and returns.
 */
import { Prng } from '../../dsl/index.ts';
import { METRIC, NEXT, type StepSignature } from '../../dsl/train/step.ts';
import { ort } from '../../runtime/backend.ts';
import { TrainState } from '../../runtime/state.ts';
import { median } from '../measure.ts';

export interface Variant {
  readonly name: string;
  /** ORT session options over the runtime's defaults (backend.ts createSession). */
  readonly session?: Partial<ort.InferenceSession.SessionOptions>;
  readonly prealloc?: boolean;
  /** Other ONNX bytes for the same signature (a transformed graph); default: the baseline's. */
  readonly model?: Uint8Array;
  readonly signature?: StepSignature;
}

/** The options `runtime/backend.ts` uses for the CPU EP (memory pattern off since f7d2e93), as a base for variants. */
export function runtimeSessionOptions(threads = 0): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'], graphOptimizationLevel: 'all', intraOpNumThreads: threads, interOpNumThreads: 1,
    executionMode: 'sequential', enableCpuMemArena: true, enableMemPattern: false,
  };
}

/** Runs a step graph like `StepRunner`, with session options and preallocated outputs as a variant asks. */
export class VariantStep {
  private readonly spare = new Map<string, ort.Tensor>();

  private constructor(readonly session: ort.InferenceSession, readonly signature: StepSignature, readonly state: TrainState, readonly prealloc: boolean) {
    if (prealloc) {
      for (const name of signature.updates) {
        const t = state.get(name);
        this.spare.set(name, new ort.Tensor('float32', new Float32Array(t.data.length), t.dims));
      }
    }
  }

  static async create(bytes: Uint8Array, signature: StepSignature, options: ort.InferenceSession.SessionOptions, prealloc: boolean, seed: number): Promise<VariantStep> {
    const session = await ort.InferenceSession.create(bytes, options);
    return new VariantStep(session, signature, TrainState.init(signature.state, Prng.seeded(seed)), prealloc);
  }

  async step(inputs: Readonly<Record<string, ort.Tensor>>, scalars: Readonly<Record<string, number>>): Promise<number> {
    const feeds: Record<string, ort.Tensor> = { ...inputs };
    for (const spec of this.signature.state) feeds[spec.name] = this.state.get(spec.name);
    for (const [name, v] of Object.entries(scalars)) feeds[name] = new ort.Tensor('float32', Float32Array.of(v), []);
    let out: ort.InferenceSession.ReturnType;
    if (this.prealloc) {
      const fetches: Record<string, ort.Tensor | null> = {};
      for (const name of this.signature.updates) fetches[NEXT + name] = this.spare.get(name)!;
      for (const m of this.signature.metrics) fetches[METRIC + m] = null;
      out = await this.session.run(feeds, fetches);
    } else {
      out = await this.session.run(feeds);
    }
    for (const name of this.signature.updates) {
      const next = out[NEXT + name] as ort.Tensor;
      if (this.prealloc) this.spare.set(name, this.state.get(name)); // the old state becomes the next output buffer
      this.state.set(name, next);
    }
    return Number((out[METRIC + 'loss'] as ort.Tensor | undefined)?.data[0] ?? 0);
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}

export interface VariantTiming {
  readonly name: string;
  readonly medianMs: number;
  readonly minMs: number;
  /** Median over rounds of (this variant's step time / the baseline's step time in the same round). */
  readonly pairedRatio: number;
  readonly samplesMs: readonly number[];
  /** Median process CPU time per step (all threads; ORT's spinning workers included), ms. */
  readonly cpuMedianMs: number;
  /** Paired ratio of CPU time to the baseline's (robust to other load when threads = 1). */
  readonly cpuPairedRatio: number;
  readonly loss: number;
}

/** Interleaved timing; the first variant is the baseline. */
export async function compareVariants(
  variants: readonly Variant[],
  base: { bytes: Uint8Array; signature: StepSignature; threads: number; seed: number },
  inputs: Readonly<Record<string, ort.Tensor>>,
  scalars: Readonly<Record<string, number>>,
  opts: { warmup: number; rounds: number; log?: (s: string) => void },
): Promise<VariantTiming[]> {
  const steps: VariantStep[] = [];
  for (const v of variants) {
    const t0 = performance.now();
    steps.push(await VariantStep.create(v.model ?? base.bytes, v.signature ?? base.signature, { ...runtimeSessionOptions(base.threads), ...v.session }, v.prealloc ?? false, base.seed));
    opts.log?.(`  ${v.name}: session in ${(performance.now() - t0).toFixed(0)} ms`);
  }
  const losses = new Array<number>(variants.length).fill(0);
  for (let w = 0; w < opts.warmup; w++) for (const [i, s] of steps.entries()) losses[i] = await s.step(inputs, scalars);
  const samples = variants.map(() => [] as number[]);
  const cpu = variants.map(() => [] as number[]);
  for (let r = 0; r < opts.rounds; r++) {
    for (let k = 0; k < steps.length; k++) {
      const i = (k + r) % steps.length;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      losses[i] = await steps[i]!.step(inputs, scalars);
      samples[i]!.push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpu[i]!.push((c.user + c.system) / 1000);
    }
    opts.log?.(`  round ${r + 1}/${opts.rounds}: ${samples.map((s, i) => `${variants[i]!.name} ${s[s.length - 1]!.toFixed(0)}`).join(', ')}`);
  }
  for (const s of steps) await s.release();
  return variants.map((v, i) => ({
    name: v.name,
    medianMs: median(samples[i]!),
    minMs: Math.min(...samples[i]!),
    pairedRatio: median(samples[i]!.map((ms, r) => ms / samples[0]![r]!)),
    samplesMs: samples[i]!,
    cpuMedianMs: median(cpu[i]!),
    cpuPairedRatio: median(cpu[i]!.map((ms, r) => ms / cpu[0]![r]!)),
    loss: losses[i]!,
  }));
}
