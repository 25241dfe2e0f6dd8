/**
 * The execution-provider records (runtime/ep/records.ts): their capability facts checked against the providers this
 * machine runs (onnxruntime-node's CPU, onnxruntime-web's WASM), and what the rest of the runtime derives from them:
 * the `--ep` choices, the step's precision, the log's precision notes, steps per run and device outputs.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import { Graph, type HalfDType, cast, emitOnnx, logSoftmax, matmul } from '../../../dsl/index.ts';
import { EP_NAMES, EP_RECORDS, EXECUTION_PROVIDERS, precisionNotes } from '../../../runtime/ep/records.ts';
import { deviceOutputLocations, ort } from '../../../runtime/backend.ts';
import { createWebSession } from '../../../runtime/web.ts';
import { defaultStepsPerRun } from '../../../runtime/ep/steps-per-run.ts';
import { stepPrecision } from '../../../runtime/dino/step-graph.ts';

/** A model of one LogSoftmax, or of one MatMul in `dtype` between casts: what a record claims a provider runs. */
function probeModel(what: 'LogSoftmax' | HalfDType): Uint8Array {
  const g = new Graph('capability');
  const x = g.input('x', 'float32', [2, 2]);
  g.output('y', what === 'LogSoftmax' ? logSoftmax(x, -1) : cast(matmul(cast(x, what), cast(x, what)), 'float32'));
  const bytes = emitOnnx(g, { params: 'inputs' });
  if (E.isLeft(bytes)) throw new Error('the capability model does not emit');
  return bytes.right;
}

/** Whether a session of `model` opens and runs on `ep` here. */
async function runs(ep: 'cpu' | 'wasm', model: Uint8Array): Promise<boolean> {
  const x = Float32Array.of(1, 2, 3, 4);
  try {
    if (ep === 'wasm') {
      const s = await createWebSession(model);
      const { Tensor } = (await import('onnxruntime-web'));
      await s.run({ x: new Tensor('float32', x, [2, 2]) });
      await s.release();
    } else {
      const s = await ort.InferenceSession.create(model, { executionProviders: ['cpu'], logSeverityLevel: 4 });
      await s.run({ x: new ort.Tensor('float32', x, [2, 2]) });
      await s.release();
    }
    return true;
  } catch {
    return false;
  }
}

for (const ep of ['cpu', 'wasm'] as const) {
  test(`the ${ep} record says what this machine's ${ep} provider runs: LogSoftmax, float16 and bfloat16 MatMul`, async () => {
    const { target } = EP_RECORDS[ep];
    assert.is(await runs(ep, probeModel('LogSoftmax')), !target.missingOps.includes('LogSoftmax'), 'LogSoftmax');
    for (const dtype of ['float16', 'bfloat16'] as const) {
      assert.is(await runs(ep, probeModel(dtype)), target.matmulDtypes.includes(dtype), `${dtype} MatMul`);
    }
  });
}

test('the --ep choices are the onnxruntime-node records; doctor probes every record', () => {
  assert.equal([...EXECUTION_PROVIDERS], ['cpu', 'cuda', 'webgpu']);
  assert.equal(EP_NAMES, ['cpu', 'cuda', 'webgpu', 'wasm']);
  for (const name of EP_NAMES) assert.is(EP_RECORDS[name].name, name);
  assert.is(EP_RECORDS.wasm.runtime, 'onnxruntime-web');
});

test('derived from the records: step precision, device outputs, steps per run', () => {
  assert.equal(EXECUTION_PROVIDERS.map((ep) => stepPrecision('bf16', ep)), ['bf16-emulated', 'bf16', 'bf16-emulated']);
  assert.equal(EXECUTION_PROVIDERS.map((ep) => stepPrecision('fp16', ep)), ['fp16', 'fp16', 'fp16']);
  assert.equal(EXECUTION_PROVIDERS.map((ep) => stepPrecision('fp32', ep)), ['fp32', 'fp32', 'fp32']);
  assert.equal(EXECUTION_PROVIDERS.map((ep) => deviceOutputLocations(ep, ['next.a'])), [undefined, undefined, { 'next.a': 'gpu-buffer' }]);
  assert.equal(EXECUTION_PROVIDERS.map((ep) => defaultStepsPerRun(ep, [100, 12])), [1, 4, 1]);
});

test('precision notes: fp16 on the CPU gains nothing; bf16 is emulated wherever bfloat16 MatMul is missing', () => {
  assert.equal(precisionNotes('cpu', 'fp32'), []);
  assert.equal(precisionNotes('cuda', 'bf16'), []);
  assert.equal(precisionNotes('cuda', 'fp16'), []);
  assert.equal(precisionNotes('cpu', 'fp16'), ['note: precision fp16 on the CPU provider: ONNX Runtime runs float16 MatMul in float32 there (no gain); fp16 is meant for the CUDA provider']);
  for (const ep of ['cpu', 'webgpu', 'wasm'] as const) {
    assert.equal(precisionNotes(ep, 'bf16'), [`note: precision bf16 on the ${ep} provider, which has no bfloat16 MatMul: the step rounds to bfloat16 in float32 (the same numbers, slower than fp32); bf16 is meant for the CUDA provider`]);
  }
});

test.run();
