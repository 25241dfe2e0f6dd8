/**
 * Several training steps per ONNX run: the step graph becomes the body of an ONNX `Loop`.
 *
 * Why: a step's outputs come back to the host, so on a GPU the whole state (parameters, moments, teacher)
 * crosses the bus every step. In the K-step model the state is loop-carried and leaves the device once per
 * K steps. Its interface, for a step graph with state S (updated part U), per-step inputs I and outputs
 * `next.<U>` plus others (metrics):
 *
 *   inputs:  `steps` (int64 scalar, the trip count K), every state tensor of S as in the step graph, and
 *            every per-step input of I under its own name, stacked along a new leading axis (length >= K;
 *            scalars such as `lr` become [K] vectors)
 *   outputs: `next.<U>` after the K-th step, and every other step output stacked over the steps ([K, ...])
 *
 * The body reads step k's inputs with Gather(stacked, k); state without a `next.` output is read from the
 * outer scope, never carried. Default domain, same opset and IR version as the step graph.
 */
import { decodeModel, encodeModel } from '../onnx/emit.ts';
import { ATTRIBUTE_TYPE, TENSOR_TYPE } from '../onnx/enums.ts';
import { NEXT, type StepSignature } from './step.ts';

/** The trip-count input of a K-step model. */
export const STEPS_INPUT = 'steps';
/** The symbolic leading dim of stacked inputs and outputs. */
export const STEPS_DIM = 'steps';

// Every value name of the step graph is renamed inside the body, so no body value shadows an outer-scope
// name (the stacked inputs and the Loop's outputs keep the step graph's names outside).
const BODY = 'step/';
const ITERATION = 'loop/iteration';
const COND_IN = 'loop/cond_in';
const COND_OUT = 'loop/cond_out';

const scalarType = (elemType: number) => ({ tensor_type: { elem_type: elemType, shape: { dim: [] } } });

/** `type` (a TypeProto object) with the steps axis in front. */
function stackedType(type: any): any {
  const t = type?.tensor_type;
  if (!t) throw new Error('K-step model: only tensor-typed inputs and outputs can be stacked');
  return { tensor_type: { elem_type: t.elem_type, shape: { dim: [{ dim_param: STEPS_DIM }, ...(t.shape?.dim ?? [])] } } };
}

/**
 * The K-step model of a step model (ONNX bytes as `emitOnnx(graph, { params: 'inputs' })` writes them) with
 * signature `signature` (`stepSignature(graph)`). Throws when the two do not describe the same graph.
 */
export function multiStepModel(stepModel: Uint8Array, signature: StepSignature): Uint8Array {
  return encodeModel(multiStepModelProto(decodeModel(stepModel), signature));
}

/** `multiStepModel` on a ModelProto object (as `toModelProto` builds or `decodeModel` reads it). */
export function multiStepModelProto(model: any, signature: StepSignature): object {
  const g = model.graph;
  if (!g) throw new Error('K-step model: the step model has no graph');
  const inputType = new Map<string, any>((g.input ?? []).map((v: any) => [v.name, v.type]));
  const outputType = new Map<string, any>((g.output ?? []).map((v: any) => [v.name, v.type]));
  const problems: string[] = [];
  const typeOfInput = (name: string) => {
    const t = inputType.get(name);
    if (!t) problems.push(`the step model has no input "${name}"`);
    return t;
  };

  const carried = signature.updates;
  const carriedSet = new Set(carried);
  const outer = new Set(signature.state.map((s) => s.name).filter((n) => !carriedSet.has(n)));
  const perStep = signature.inputs.map((i) => i.name);
  if (perStep.includes(STEPS_INPUT) || signature.state.some((s) => s.name === STEPS_INPUT)) {
    problems.push(`the step graph already has an input "${STEPS_INPUT}", the name of the K-step model's trip count`);
  }
  for (const name of carried) if (!outputType.has(NEXT + name)) problems.push(`the step model has no output "${NEXT}${name}"`);
  const scanned = (g.output ?? []).map((v: any) => v.name as string).filter((n: string) => !(n.startsWith(NEXT) && carriedSet.has(n.slice(NEXT.length))));
  for (const node of g.node ?? []) {
    if ((node.attribute ?? []).some((a: any) => a.g || (a.graphs ?? []).length)) problems.push(`node "${node.name}" (${node.op_type}) has a subgraph; step graphs with subgraphs are not supported`);
  }
  const stateTypes = signature.state.map((s) => typeOfInput(s.name));
  const perStepTypes = perStep.map(typeOfInput);
  if (problems.length) throw new Error(`K-step model: ${problems.join('; ')}`);

  const rename = (name: string) => (name === '' || outer.has(name) ? name : BODY + name);
  const body = {
    name: `${g.name}_body`,
    input: [
      { name: ITERATION, type: scalarType(TENSOR_TYPE.int64) },
      { name: COND_IN, type: scalarType(TENSOR_TYPE.bool) },
      ...carried.map((name) => ({ name: BODY + name, type: inputType.get(name) })),
    ],
    node: [
      // Step k's slice of every stacked input, under the name the step's nodes read.
      ...perStep.map((name) => ({
        op_type: 'Gather', name: `loop/gather/${name}`, input: [name, ITERATION], output: [BODY + name],
        attribute: [{ name: 'axis', type: ATTRIBUTE_TYPE.INT, i: 0 }],
      })),
      ...(g.node ?? []).map((n: any) => ({ ...n, input: (n.input ?? []).map(rename), output: (n.output ?? []).map(rename) })),
      { op_type: 'Identity', name: 'loop/cond', input: [COND_IN], output: [COND_OUT] },
    ],
    initializer: (g.initializer ?? []).map((t: any) => ({ ...t, name: rename(t.name) })),
    value_info: (g.value_info ?? []).map((v: any) => ({ ...v, name: rename(v.name) })),
    output: [
      { name: COND_OUT, type: scalarType(TENSOR_TYPE.bool) },
      ...carried.map((name) => ({ name: BODY + NEXT + name, type: outputType.get(NEXT + name) })),
      ...scanned.map((name: string) => ({ name: BODY + name, type: outputType.get(name) })),
    ],
  };

  return {
    ...model,
    graph: {
      name: `${g.name}_steps`,
      doc_string: `${STEPS_INPUT} consecutive steps of ${g.name} (ONNX Loop; per-step inputs stacked on axis 0)`,
      input: [
        { name: STEPS_INPUT, type: scalarType(TENSOR_TYPE.int64) },
        ...signature.state.map((s, i) => ({ name: s.name, type: stateTypes[i] })),
        ...perStep.map((name, i) => ({ name, type: stackedType(perStepTypes[i]) })),
      ],
      node: [{
        op_type: 'Loop',
        name: 'steps_loop',
        // No condition input: the loop runs exactly `steps` times.
        input: [STEPS_INPUT, '', ...carried],
        output: [...carried.map((name) => NEXT + name), ...scanned],
        attribute: [{ name: 'body', type: ATTRIBUTE_TYPE.GRAPH, g: body }],
      }],
      initializer: [],
      output: [
        ...carried.map((name) => ({ name: NEXT + name, type: outputType.get(NEXT + name) })),
        ...scanned.map((name: string) => ({ name, type: stackedType(outputType.get(name)) })),
      ],
    },
  };
}
