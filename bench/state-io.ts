/**
 * The cost of moving the training state into and out of a step, measured with a graph that does nothing else:
 * it takes the same state inputs as the step and returns each tensor the step updates (`next.X = Identity(X)`),
 * run by `StepRunner` exactly as the step is. ORT's profiler gives the time of the Identity kernels (the copy
 * the real step does not make: its update kernels write their outputs anyway); the state I/O time is the run's
 * wall time minus that kernel time, i.e. feeding, allocating and returning the outputs, and swapping them in.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Graph, identity } from '../dsl/index.ts';
import { NEXT, type StepSignature } from '../dsl/train/step.ts';
import type { ExecutionProvider } from '../runtime/backend.ts';
import { TrainState } from '../runtime/state.ts';
import { StepRunner } from '../runtime/step-runner.ts';
import { findProfile, summarizeProfile } from './profile.ts';
import { type Timing, timeRepeated } from './measure.ts';

export interface StateIoResult {
  /** Wall time of a pass-through run, ms (median). */
  readonly passThroughMs: number;
  /** Mean Identity kernel time per run (ORT profiler), ms. */
  readonly copyKernelMs: number;
  /** passThroughMs - copyKernelMs: the state's way in and out. */
  readonly stateIoMs: number;
  readonly timing: Timing;
}

/** A graph with the step's state inputs whose outputs are `next.X = X` for every state tensor the step updates. */
export function passThroughGraph(signature: StepSignature): Graph {
  const g = new Graph('state_pass_through');
  const updated = new Set(signature.updates);
  for (const spec of signature.state) {
    const t = g.param(spec);
    if (updated.has(spec.name)) g.output(NEXT + spec.name, identity(t));
  }
  return g;
}

export async function benchStateIo(signature: StepSignature, state: TrainState, opts: { ep: ExecutionProvider; threads: number; warmup: number; reps: number }): Promise<StateIoResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dino-bench-'));
  try {
    const prefix = path.join(dir, 'state_io');
    const runner = await StepRunner.compile(passThroughGraph(signature), { ep: opts.ep, threads: opts.threads, profilePrefix: prefix });
    // Its own copy of the state, so the step's state is left as it was.
    const own = new TrainState();
    for (const spec of signature.state) own.set(spec.name, state.get(spec.name));
    const timing = await timeRepeated(() => runner.run(own, {}), opts.warmup, opts.reps);
    runner.session.endProfiling();
    await runner.release();
    const profile = summarizeProfile(findProfile(prefix), opts.warmup);
    const copyKernelMs = profile.byOp.filter((r) => r.name === 'Identity').reduce((s, r) => s + r.ms, 0);
    return { passThroughMs: timing.medianMs, copyKernelMs, stateIoMs: Math.max(0, timing.medianMs - copyKernelMs), timing };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
