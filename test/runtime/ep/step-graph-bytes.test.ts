/**
 * The training step's ONNX bytes for each execution provider and precision, pinned by hash. The hashes were taken
 * at commit d917622, before the execution providers became capability records and the EP-specific graph forms
 * (composite log softmax on WebGPU, emulated bfloat16 wherever bfloat16 MatMul is missing) moved into a dsl lowering
 * pass: a change that only moves code keeps every byte. A change that means to alter a graph updates the hash here,
 * with the reason in its commit.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import * as E from 'fp-ts/lib/Either.js';
import { emitOnnx } from '../../../dsl/onnx/emit.ts';
import type { TrainPrecision } from '../../../dsl/autocast.ts';
import { withPrecision } from '../../../runtime/dino/config.ts';
import { getPreset } from '../../../runtime/dino/presets.ts';
import type { ExecutionProvider } from '../../../runtime/backend.ts';
import { trainingStepGraph } from '../../../runtime/dino/step-graph.ts';

/** sha256 of `emitOnnx(trainingStepGraph(fmnist-quick in precision, { ep }))`, as StepRunner.compile emits it. */
const PINNED: readonly (readonly [ExecutionProvider, TrainPrecision, string])[] = [
  ['cpu', 'fp32', 'a1867f21f29f8907cd714c616d89cf766ae54a5a293af13b31388a020e1c7fee'],
  ['cuda', 'fp32', 'a1867f21f29f8907cd714c616d89cf766ae54a5a293af13b31388a020e1c7fee'], // the CPU's graph
  ['webgpu', 'fp32', '94a81656288f787e8af6e9a31785a23d4fd21c74e7e54e111ce862192aceec5a'],
  ['cpu', 'bf16', 'd3fd6d4d011b89bd2db83e1af852ae137c14b3dd80da584b56945e12523536e2'],
  ['cuda', 'bf16', '1477f26165e2605afabbfa3dfe22043e4c7a4ba848843b2b067eae8f8f2f9647'],
  ['webgpu', 'bf16', 'd9dfeecb5621371191b35a023a7073c39c1e6abda51896f54e9d6638c5f95323'],
  ['cpu', 'fp16', 'ce41040b4bd2467ccab079b81c0c43a0841e330f7eeba7deefdc4d0d18889cae'],
  ['webgpu', 'fp16', 'c153f0b94965ccaa62bc1f9e8c0becfc08c0da2fe05102ef204b2693a6eabfec'],
];

const stepBytesHash = (ep: ExecutionProvider, precision: TrainPrecision): string => {
  const built = trainingStepGraph(withPrecision(getPreset('fmnist-quick'), precision), { ep });
  const bytes = emitOnnx(built.graph, { params: 'inputs' });
  if (E.isLeft(bytes)) throw new Error(`the ${ep} ${precision} step does not emit`);
  return createHash('sha256').update(bytes.right).digest('hex');
};

for (const [ep, precision, hash] of PINNED) {
  test(`fmnist-quick step, --ep ${ep}, ${precision}: the same ONNX bytes as before the EP records`, () => {
    assert.is(stepBytesHash(ep, precision), hash);
  });
}

test.run();
