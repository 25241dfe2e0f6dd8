/**
 * `dino bench` times the graph training runs: the bench builds its step through `trainingStepGraph`, so for the same
 * config, execution provider and recompute mode the ONNX bytes are the training loop's, on every provider (the
 * WebGPU step is lowered for its record there too) and in every precision.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import * as E from 'fp-ts/lib/Either.js';
import { Prng } from '../../dsl/index.ts';
import { emitOnnx } from '../../dsl/onnx/emit.ts';
import type { Graph } from '../../dsl/graph.ts';
import { dinoStepInputShapes } from '../../models/dino-step.ts';
import { benchTrainStep, buildStepGraph } from '../../bench/train.ts';
import { applyOverrides, stepConfig, withPrecision } from '../../runtime/dino/config.ts';
import { getPreset } from '../../runtime/dino/presets.ts';
import { DEFAULT_RECOMPUTE, trainingStepGraph } from '../../runtime/dino/step-graph.ts';
import { EXECUTION_PROVIDERS } from '../../runtime/ep/records.ts';

const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const emitted = (g: Graph) => {
  const b = emitOnnx(g, { params: 'inputs' });
  if (E.isLeft(b)) throw new Error('the step does not emit');
  return b.right;
};

test('bench and training build the same step for every EP and precision (fmnist-quick)', () => {
  for (const ep of EXECUTION_PROVIDERS) {
    for (const precision of ['fp32', 'bf16'] as const) {
      const config = withPrecision(getPreset('fmnist-quick'), precision);
      const training = sha(emitted(trainingStepGraph(config, { ep }).graph));
      assert.is(sha(emitted(buildStepGraph(config, { ep, recompute: DEFAULT_RECOMPUTE }).graph)), training, `${ep} ${precision}`);
    }
  }
  const config = getPreset('fmnist-quick');
  assert.is.not(sha(emitted(buildStepGraph(config, { ep: 'webgpu' }).graph)), sha(emitted(buildStepGraph(config, { ep: 'cpu' }).graph)), 'the EP reaches the bench graph');
});

test('the bench compiles and runs those bytes (a small step on the CPU)', async () => {
  const config = applyOverrides(getPreset('fmnist-quick'), ['batch=2', 'augment.localCrops=2']);
  const shapes = dinoStepInputShapes(stepConfig(config));
  const prng = Prng.seeded(1);
  const noise = (dims: readonly number[] | undefined) => Float32Array.from({ length: (dims ?? [0]).reduce((a, b) => a * b, 1) }, () => prng.uniform());
  const crops = {
    batchSize: 2, channels: 1, globalSize: config.augment.globalSize, localSize: config.augment.localSize, localCrops: 2,
    globals: noise(shapes.globals), locals: noise(shapes.locals),
  };
  const { compiled } = await benchTrainStep({ config, crops, ep: 'cpu', threads: 1, warmup: 0, steps: 1, recompute: DEFAULT_RECOMPUTE });
  assert.is(sha(compiled.runner.onnxBytes), sha(emitted(trainingStepGraph(config, { ep: 'cpu' }).graph)));
  await compiled.runner.release();
});

test.run();
