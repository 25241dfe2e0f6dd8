/**
 * Training state kept on the device between steps (WebGPU): the step's `next.*` outputs are asked for as GPU
 * buffers (`preferredOutputLocation: 'gpu-buffer'`), fed straight back as the next step's inputs, and copied to
 * the host only when a checkpoint needs the bytes. CUDA reaches the same end with K steps per run
 * (ep/steps-per-run.ts), since onnxruntime-node has no CUDA tensor location.
 */
import { ort } from '../backend.ts';
import type { TrainState } from '../state.ts';

/** Copies every state tensor that lives on the device to the host, in place; a host-only state is left as is. */
export async function stateToHost(state: TrainState): Promise<void> {
  for (const name of state.names()) {
    const t = state.get(name);
    if (t.location === 'cpu' || t.location === undefined) continue;
    const data = await t.getData(true); // true: release the device buffer, the host copy replaces it
    state.set(name, new ort.Tensor(t.type as 'float32', data as Float32Array, t.dims));
  }
}
