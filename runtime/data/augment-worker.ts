/**
 * Worker thread of the multi-crop loader (loader.ts): receives its setup once (a Dataset's pixels as shared memory,
 * or only the decode settings for a folder), then jobs `{ step, indices, sources? }`, and answers each with the
 * batch's crops (a folder's files are read and decoded here), or with the files that did not decode. The crops
 * depend only on (seed, step, indices), never on which worker computes them. A folder's jobs overlap: the next
 * job's files are decoded (libvips threads) while this thread crops the current one.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { augmentBatch, augmentFiles, type AugmentJob, type AugmentResult, type WorkerInit } from './loader.ts';
import type { MultiCropBatch } from './multicrop.ts';

const setup = workerData as WorkerInit;
if (parentPort === null) throw new Error('augment-worker.ts must run as a worker thread (started by runtime/data/loader.ts)');
const port = parentPort;

const send = (step: number, crops: MultiCropBatch) => {
  const result: AugmentResult = { step, globals: crops.globals, locals: crops.locals };
  port.postMessage(result, [crops.globals.buffer as ArrayBuffer, crops.locals.buffer as ArrayBuffer]);
};
const sendError = (step: number, error: unknown) => {
  const result: AugmentResult = { step, error: (error as Error).stack ?? String(error) };
  port.postMessage(result);
};

port.on('message', (job: AugmentJob) => {
  if (setup.kind !== 'files') {
    try {
      send(job.step, augmentBatch(setup, job.step, job.indices, job.first));
    } catch (error) {
      sendError(job.step, error);
    }
    return;
  }
  augmentFiles(setup, job.step, job.sources ?? [], job.first).then(
    (crops) => {
      if (Array.isArray(crops)) port.postMessage({ step: job.step, bad: crops } satisfies AugmentResult);
      else send(job.step, crops);
    },
    (error: unknown) => sendError(job.step, error),
  );
});
