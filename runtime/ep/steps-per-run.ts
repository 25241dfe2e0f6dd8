/**
 * How many training steps one ONNX Runtime call runs by default: each EP's record says (runtime/ep/records.ts). On
 * CUDA every step's outputs (the whole training state) come back to the host, so K steps per call (the K-step model,
 * docs/ARCHITECTURE.md, "K steps per run") cross the bus once per K steps; on the CPU there is no bus and K > 1 only
 * costs memory; WebGPU keeps the state on the device instead.
 */
import { EP_RECORDS, type ExecutionProvider } from './records.ts';

export { MAX_DEFAULT_STEPS_PER_RUN } from './records.ts';

/**
 * The default K for `ep`, given the intervals (checkpoint and log, in steps) a run must stop at: on CUDA the largest
 * K <= {@link MAX_DEFAULT_STEPS_PER_RUN} that divides every positive interval, so those land on the last step of a
 * run rather than forcing a shorter run; 1 elsewhere.
 */
export function defaultStepsPerRun(ep: ExecutionProvider, intervals: readonly (number | undefined)[] = []): number {
  return EP_RECORDS[ep].defaultStepsPerRun(intervals.filter((n): n is number => n !== undefined));
}
