/**
 * ONNX enum numbers (onnx.proto beside this file), in one place for everything that writes ONNX: graph
 * emission (emit.ts) and the K-step Loop rewrite (../train/multi-step.ts).
 */
import type { DType } from '../graph.ts';

/** TensorProto.DataType of each DSL dtype. */
export const TENSOR_TYPE: Readonly<Record<DType, number>> = { float32: 1, int32: 6, int64: 7, bool: 9, float16: 10, float64: 11, bfloat16: 16 };

/** AttributeProto.AttributeType. */
export const ATTRIBUTE_TYPE = { FLOAT: 1, INT: 2, STRING: 3, GRAPH: 5, FLOATS: 6, INTS: 7 } as const;
