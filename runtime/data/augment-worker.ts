/**
 * Worker thread of the multi-crop loader (loader.ts): receives the train pixels once (shared memory), then jobs
 * `{ step, indices }`, and answers each with the batch's crops. The crops depend only on (seed, step, indices),
 * never on which worker computes them.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { augmentBatch, type AugmentJob, type AugmentResult, type WorkerSetup } from './loader.ts';

const setup = workerData as WorkerSetup;
if (parentPort === null) throw new Error('augment-worker.ts must run as a worker thread (started by runtime/data/loader.ts)');
const port = parentPort;

port.on('message', (job: AugmentJob) => {
  let result: AugmentResult;
  try {
    const crops = augmentBatch(setup, job.step, job.indices);
    result = { step: job.step, globals: crops.globals, locals: crops.locals };
    port.postMessage(result, [crops.globals.buffer as ArrayBuffer, crops.locals.buffer as ArrayBuffer]);
  } catch (error) {
    result = { step: job.step, error: (error as Error).stack ?? String(error) };
    port.postMessage(result);
  }
});
