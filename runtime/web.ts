/**
 * onnxruntime-web (WASM) from Node: the same compiled graphs the Node backend runs. Used to prove
 * portability in tests and to benchmark the browser runtime without a browser.
 */
import * as ortWeb from 'onnxruntime-web';

let configured = false;

/** A WASM session for ONNX bytes (threads: WASM worker threads; 1 keeps it simple and deterministic). */
export async function createWebSession(model: Uint8Array, opts: { threads?: number } = {}): Promise<ortWeb.InferenceSession> {
  if (!configured) {
    ortWeb.env.wasm.numThreads = opts.threads ?? 1;
    ortWeb.env.logLevel = 'error';
    configured = true;
  }
  try {
    return await ortWeb.InferenceSession.create(model, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
  } catch (e) {
    throw new Error(`onnxruntime-web (WASM) could not load the model: ${(e as Error).message}`);
  }
}

export { ortWeb };
