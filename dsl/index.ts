/** The DSL's public surface: build graphs with these, differentiate them, emit ONNX. */
export * from './graph.ts';
export * from './shape.ts';
export { defineOp, allOps, cost, type OpDef, type OpSpec, type VjpArgs, type FlopArgs, type ConstInput, type AttrType } from './op.ts';
export * from './ops/elementwise.ts';
export * from './ops/reduce.ts';
export * from './ops/layout.ts';
export * from './ops/nn.ts';
export { gradients, onesLike } from './autodiff.ts';
export { emitOnnx, toModelProto, decodeOnnx, encodeModel, decodeModel, OPSET, IR_VERSION, type EmitOptions, type WeightArray } from './onnx/emit.ts';
export { Prng, type PrngState } from './prng.ts';
export { drawInit, initialValues } from './init.ts';
export * from './train/optim.ts';
export * from './train/step.ts';
export * from './train/multi-step.ts';
export * from './ops/conv.ts';
export * from './ops/gather.ts';
export * from './ops/norm.ts';
export * from './ops/resize.ts';
