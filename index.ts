/**
 * dino-ts as a library (`import { Graph, StepRunner, exportTeacher } from 'dino-ts'`): the DSL (graphs, ops,
 * modules, autodiff, optimizers, ONNX emission), the models (ViT, ResNet, DINO head, the DINO step, the backbone
 * registry), the runtime (sessions, StepRunner, TrainState, DINO training, datasets) and the exports (teacher
 * export, features, k-NN, linear probe). Each part is also its own entry: `dino-ts/dsl`, `dino-ts/models`,
 * `dino-ts/runtime`, `dino-ts/exports`. The package is TypeScript run through tsx: `node --import tsx app.ts`.
 */
export * from './dsl/index.ts';
export * from './models/index.ts';
export * from './runtime/index.ts';
export * from './exports/index.ts';
/** `emitOnnx`, `gradients`, `addOptimizerStep` and `buildDinoStep` return fp-ts Eithers: these tell them apart. */
export { isLeft, isRight, type Either } from 'fp-ts/lib/Either.js';

// Names two parts share: the root gives the DSL's `layerNorm` op (x, weight, bias) and the training presets; the
// module `layerNorm(scope, x, dim, eps)` and the model presets keep other names here (and their own in dino-ts/models).
export { layerNorm } from './dsl/index.ts';
export { getPreset, presetNames } from './runtime/index.ts';
export { layerNorm as layerNormModule, getPreset as getModelPreset, presetNames as modelPresetNames } from './models/index.ts';
