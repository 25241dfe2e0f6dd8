/**
 * Emission of a graph as ONNX `ModelProto` bytes with protobufjs and the project's own onnx.proto subset.
 *
 * Opset 20 (ONNX Gelu), IR version 9: every op used is in the default domain and available on ORT's CPU, CUDA,
 * WebGPU and WASM execution providers. Only nodes that outputs depend on are emitted.
 */
import { readFileSync } from 'node:fs';
import * as E from 'fp-ts/lib/Either.js';
import protobuf from 'protobufjs';
import { type DType, type DslError, type Graph, type Node, type Tensor } from '../graph.ts';
import type { ConstInput } from '../op.ts';
import type { Shape } from '../shape.ts';
import { ATTRIBUTE_TYPE as ATTR, TENSOR_TYPE } from './enums.ts';
import { toBfloat16, toFloat16 } from '../float16.ts';

export const OPSET = 20;
export const IR_VERSION = 9;

const root = protobuf.parse(readFileSync(new URL('./onnx.proto', import.meta.url), 'utf8'), { keepCase: true }).root;
const ModelProto = root.lookupType('onnx.ModelProto');

export type WeightArray = Float32Array | Float64Array;

export interface EmitOptions {
  /**
   * Parameters as graph inputs (training step graphs: state is fed every run) or baked in as
   * initializers with the given values (inference exports).
   */
  readonly params: 'inputs' | { readonly values: ReadonlyMap<string, WeightArray> };
  readonly docString?: string;
  readonly metadata?: Readonly<Record<string, string>>;
}

/** Raw little-endian bytes of `data` as `dtype` (float16 and bfloat16 data are values, written as their rounded bits). */
export function toBytes(data: ArrayLike<number>, dtype: DType): Uint8Array {
  switch (dtype) {
    case 'float32': return u8(data instanceof Float32Array ? data : Float32Array.from(data));
    case 'float64': return u8(data instanceof Float64Array ? data : Float64Array.from(data));
    case 'float16': return u8(toFloat16(data));
    case 'bfloat16': return u8(toBfloat16(data));
    case 'int32': return u8(data instanceof Int32Array ? data : Int32Array.from(data));
    case 'int64': return u8(BigInt64Array.from(Array.from(data, (v) => BigInt(Math.trunc(v)))));
    case 'bool': return Uint8Array.from(data, (v) => (v ? 1 : 0));
  }
}
const u8 = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function typeProto(dtype: DType, shape: Shape) {
  return {
    tensor_type: {
      elem_type: TENSOR_TYPE[dtype],
      shape: { dim: shape.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) },
    },
  };
}

/** The node's ONNX attributes, as its op record's `attrTypes` say (attrs it does not name stay in the DSL). */
function attributes(node: Node) {
  // Graph.apply checked the attrs against the op's attribute type when the node was built.
  const attrs = node.attrs as Readonly<Record<string, unknown>>;
  const out: object[] = [];
  for (const [name, type] of Object.entries(node.op.attrTypes)) {
    const v = attrs[name];
    if (v === undefined || type === undefined) continue;
    switch (type) {
      case 'int': out.push({ name, type: ATTR.INT, i: typeof v === 'boolean' ? Number(v) : v }); break;
      case 'float': out.push({ name, type: ATTR.FLOAT, f: v }); break;
      case 'ints': out.push({ name, type: ATTR.INTS, ints: v }); break;
      case 'floats': out.push({ name, type: ATTR.FLOATS, floats: v }); break;
      case 'string': out.push({ name, type: ATTR.STRING, s: new TextEncoder().encode(String(v)) }); break;
      case 'dtype': out.push({ name, type: ATTR.INT, i: TENSOR_TYPE[v as DType] }); break;
    }
  }
  return out;
}

/** Builds the ModelProto object (before encoding); exposed for tests and tools that inspect graphs. */
export function toModelProto(graph: Graph, opts: EmitOptions): E.Either<DslError[], object> {
  const valid = graph.validate();
  if (E.isLeft(valid)) return valid;
  const nodes = graph.liveNodes();
  // The lowering's last check (dsl/graph.ts `Target`): an op the target lacks and that was not lowered, e.g. one
  // without a lowering, or one a VJP added.
  const missing = nodes.filter((n) => graph.target.missingOps.includes(n.op.onnxType));
  if (missing.length) {
    return E.left(missing.map((n) => ({
      op: n.op.name, path: n.path, shapes: [],
      message: `the target "${graph.target.name}" has no ${n.op.onnxType} kernel and the op has no lowering (node ${n.name})`,
    })));
  }

  // Outputs take the names of the tensors that produce them where possible; otherwise an Identity.
  const rename = new Map<number, string>();
  const extraNodes: object[] = [];
  for (const [name, t] of graph.outputs) {
    if (t.source.kind === 'node' && !rename.has(t.id)) rename.set(t.id, name);
    else extraNodes.push({ op_type: 'Identity', name: `output/${name}`, input: [t.name], output: [name] });
  }
  const nameOf = (t: Tensor) => rename.get(t.id) ?? t.name;

  const initializers: object[] = [];
  const inputs: object[] = [];
  const seenConst = new Set<number>();
  const addInitializer = (name: string, dtype: DType, dims: readonly number[], data: ArrayLike<number>) =>
    initializers.push({ name, data_type: TENSOR_TYPE[dtype], dims: [...dims], raw_data: toBytes(data, dtype) });

  for (const t of graph.inputs) inputs.push({ name: t.name, type: typeProto(t.dtype, t.shape) });
  for (const [inputName, t] of graph.params) {
    if (opts.params === 'inputs') inputs.push({ name: t.name, type: typeProto(t.dtype, t.shape) });
    else {
      const values = opts.params.values.get(inputName);
      const shape = t.shape as readonly number[];
      if (!values) return E.left([{ op: 'emit', path: '', message: `no value given for parameter "${inputName}"`, shapes: [] }]);
      const n = shape.reduce((a, b) => a * b, 1);
      if (values.length !== n) {
        return E.left([{ op: 'emit', path: '', message: `parameter "${inputName}" has ${values.length} values, its shape [${shape}] needs ${n}`, shapes: [] }]);
      }
      addInitializer(t.name, t.dtype, shape, values);
    }
  }

  const constKey = new Map<string, string>();
  const constInputName = (node: Node, k: number, c: ConstInput): string => {
    const key = `${c.dtype}|${c.shape.join(',')}|${Array.from(c.data).join(',')}`;
    const cached = constKey.get(key);
    if (cached) return cached;
    const name = `${node.name}/const${k}`;
    addInitializer(name, c.dtype, c.shape, c.data);
    constKey.set(key, name);
    return name;
  };

  const nodeProtos: object[] = [];
  const valueInfo: object[] = [];
  for (const node of nodes) {
    const input = node.inputs.map((t) => {
      if (t.source.kind === 'const' && !seenConst.has(t.id)) {
        seenConst.add(t.id);
        addInitializer(t.name, t.dtype, t.shape as number[], t.source.data);
      }
      return nameOf(t);
    });
    const extra = node.op.constInputs?.(node.attrs, node.inputs) ?? [];
    extra.forEach((c, k) => input.push(c ? constInputName(node, k, c) : ''));
    nodeProtos.push({ op_type: node.op.onnxType, name: node.name, input, output: node.outputs.map(nameOf), attribute: attributes(node) });
    for (const o of node.outputs) {
      if (!graph.outputs.has(nameOf(o))) valueInfo.push({ name: nameOf(o), type: typeProto(o.dtype, o.shape) });
    }
  }
  for (const t of graph.outputs.values()) {
    if (t.source.kind === 'const' && !seenConst.has(t.id)) {
      seenConst.add(t.id);
      addInitializer(t.name, t.dtype, t.shape as number[], t.source.data);
    }
  }

  return E.right({
    ir_version: IR_VERSION,
    opset_import: [{ domain: '', version: OPSET }],
    producer_name: 'dino-ts',
    producer_version: '0.1.0',
    doc_string: opts.docString ?? '',
    metadata_props: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
    graph: {
      name: graph.name,
      node: [...nodeProtos, ...extraNodes],
      initializer: initializers,
      input: inputs,
      output: [...graph.outputs].map(([name, t]) => ({ name, type: typeProto(t.dtype, t.shape) })),
      value_info: valueInfo,
    },
  });
}

/** ONNX bytes of the graph, or every problem found while validating it. */
export function emitOnnx(graph: Graph, opts: EmitOptions): E.Either<DslError[], Uint8Array> {
  return E.map(encodeModel)(toModelProto(graph, opts));
}

/** Encodes a ModelProto object (as built by `toModelProto` or rewritten from `decodeModel`) to ONNX bytes. */
export function encodeModel(model: object): Uint8Array {
  return ModelProto.encode(ModelProto.fromObject(model)).finish();
}

/** Decodes ONNX bytes into plain objects for rewriting: int64 as numbers, `raw_data` left as bytes (no copy into arrays). */
export function decodeModel(bytes: Uint8Array): any {
  return ModelProto.toObject(ModelProto.decode(bytes), { longs: Number, defaults: false });
}

/** Decodes ONNX bytes (for inspection in tests and tools). */
export function decodeOnnx(bytes: Uint8Array): any {
  return ModelProto.toObject(ModelProto.decode(bytes), { longs: Number, bytes: Array, defaults: false });
}
