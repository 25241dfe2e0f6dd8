/**
 * How many training steps one ONNX Runtime call runs by default. On CUDA every step's outputs (the whole training
 * state: 671 MiB for vit_small/16 with K = 65536) come back to the host, so one step per call spends most of its
 * time on the bus; the K-step model (docs/ARCHITECTURE.md, "K steps per run") crosses once per K steps. On the
 * CPU there is no bus and K > 1 only costs memory, so the default stays 1 there (and on WebGPU, which keeps the
 * state on the device instead).
 */
import type { ExecutionProvider } from '../backend.ts';

/** Beyond 8 the gain measured on an H200 was small (vit_small/16: 248 ms/step at K = 8) while memory grows. */
export const MAX_DEFAULT_STEPS_PER_RUN = 8;

/**
 * The default K for `ep`: 1 except on CUDA, where it is the largest K <= {@link MAX_DEFAULT_STEPS_PER_RUN} that
 * divides every positive interval in `intervals` (checkpoint and log intervals, in steps), so those land on
 * the last step of a run rather than forcing a shorter run.
 */
export function defaultStepsPerRun(ep: ExecutionProvider, intervals: readonly (number | undefined)[] = []): number {
  if (ep !== 'cuda') return 1;
  const positive = intervals.filter((n): n is number => n !== undefined && n > 0);
  for (let k = MAX_DEFAULT_STEPS_PER_RUN; k > 1; k--) if (positive.every((n) => n % k === 0)) return k;
  return 1;
}
