/** Test helper: a DINO step small enough to build, emit and run in milliseconds, for tests of loss-term options. */
import * as E from 'fp-ts/lib/Either.js';
import { type Graph, type Prng, emitOnnx, formatError } from '../../dsl/index.ts';
import { type DinoStepConfig, buildDinoStep, dinoStepInputShapes } from '../../models/dino-step.ts';
import { ort } from '../../runtime/backend.ts';
import { StepRunner } from '../../runtime/step-runner.ts';

/** 8 px images, patch 4, width 16, one block, K = 32, batch 6, two 4 px local crops. */
export const TINY_STEP: DinoStepConfig = {
  backbone: { kind: 'vit', imgSize: 8, patchSize: 4, inChans: 1, embedDim: 16, depth: 1, numHeads: 2, mlpRatio: 2, qkvBias: true, layerNormEps: 1e-6, dropPathRate: 0 },
  head: { outDim: 32, hiddenDim: 16, bottleneckDim: 8, nlayers: 3, useBn: false, normLastLayer: true },
  batch: 6, globalSize: 8, localSize: 4, localCrops: 2, studentTemp: 0.1, centerMomentum: 0.9, clipGrad: 3,
};

function built(cfg: DinoStepConfig): Graph {
  const b = buildDinoStep(cfg);
  if (E.isLeft(b)) throw new Error(b.left.map(formatError).join('\n'));
  return b.right.graph;
}

/** The step's graph and its ONNX bytes (parameters as inputs, as training runs it). */
export function emitStep(cfg: DinoStepConfig): { graph: Graph; bytes: Uint8Array } {
  const graph = built(cfg);
  const bytes = emitOnnx(graph, { params: 'inputs' });
  if (E.isLeft(bytes)) throw new Error(bytes.left.map(formatError).join('\n'));
  return { graph, bytes: bytes.right };
}

/** The step compiled for ONNX Runtime on one CPU thread. */
export function compileStep(cfg: DinoStepConfig): Promise<StepRunner> {
  return StepRunner.compile(built(cfg), { threads: 1 });
}

/** A batch of standard-normal crops for TINY_STEP (globals, then locals, drawn from `prng` in that order). */
export function randomStepBatch(prng: Prng): { globals: ort.Tensor; locals: ort.Tensor } {
  const shapes = dinoStepInputShapes(TINY_STEP);
  const crops = (shape: readonly number[]) =>
    new ort.Tensor('float32', Float32Array.from({ length: shape.reduce((a, n) => a * n, 1) }, () => prng.normal()), [...shape]);
  return { globals: crops(shapes.globals), locals: crops(shapes.locals!) };
}
