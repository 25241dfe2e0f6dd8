/**
 * The runtime's public surface (the package entry `dino-ts/runtime`): ONNX Runtime sessions, the step runner and
 * training state, DINO training with its configs and presets, the datasets, and weight files.
 */
export { createSession, float32, floatValues, scalarTensor, ort, EXECUTION_PROVIDERS, type ExecutionProvider, type SessionOptions } from './backend.ts';
export { StepRunner, stackSteps, type StepFeeds } from './step-runner.ts';
export { TrainState } from './state.ts';
export { train, trainingStepGraph, type TrainOptions, type TrainResult } from './dino/train.ts';
export { type TrainConfig, type AnyTrainConfig, CONFIG_SCHEMA, BACKBONE_SCHEMAS, BACKBONE_KINDS, applyOverrides, withValues, stepConfig, checkTrainConfig, ConfigFileError } from './dino/config.ts';
export { PRESETS, getPreset, presetNames } from './dino/presets.ts';
export { RunFolder, RUN_FILES } from './dino/run-folder.ts';
export { saveCheckpoint, loadCheckpoint, readCheckpointMeta } from './dino/checkpoint.ts';
export { type Dataset, type ImageSet, gatherImages } from './data/dataset.ts';
export { loadFashionMnist, FASHION_MNIST_CLASSES } from './data/fashion-mnist.ts';
export { loadImageFolder, type ImageFolderOptions } from './data/image-folder.ts';
export { DINO_AUGMENT, augmentConfig, multiCrop, type AugmentConfig } from './data/multicrop.ts';
export { readSafetensors, writeSafetensorsAtomic } from './io/safetensors.ts';
export { readDinoWeights } from './io/weights.ts';
