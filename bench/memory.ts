/**
 * Activation memory of a graph, estimated from the IR: run the live nodes in graph order, allocate each
 * output when its node runs and free it after its last consumer; graph outputs live to the end. The peak of
 * the bytes alive is what an ideal memory planner needs beside the inputs (for a training step: the state
 * and the batch). ORT orders nodes and reuses buffers its own way, so this is a reference point, not its
 * exact figure.
 */
import type { DType, Graph, Node, Tensor } from '../dsl/graph.ts';
import { dimValue } from '../dsl/flops.ts';

const BYTES: Record<DType, number> = { float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, bool: 1 };

export interface ActivationEstimate {
  /** Peak bytes of intermediate tensors alive at once (graph outputs included once produced). */
  readonly peakBytes: number;
  /** Peak bytes of intermediate tensors that are not graph outputs (what the backward pass keeps alive). */
  readonly peakTransientBytes: number;
  /** Bytes of all graph outputs. */
  readonly outputBytes: number;
  /** Bytes of all intermediate tensors if none were ever freed. */
  readonly totalBytes: number;
}

export function estimateActivations(graph: Graph, dims: Readonly<Record<string, number>> = {}): ActivationEstimate {
  const bytesOf = (t: Tensor) => t.shape.reduce<number>((n, d) => n * dimValue(d, dims), BYTES[t.dtype]);
  const nodes: Node[] = graph.liveNodes(); // as emission keeps them
  const outputs = new Set([...graph.outputs.values()].map((t) => t.id));
  const lastUse = new Map<number, number>();
  nodes.forEach((node, i) => node.inputs.forEach((t) => lastUse.set(t.id, i)));
  let alive = 0, peak = 0, total = 0, outputBytes = 0, transient = 0, peakTransient = 0;
  const size = new Map<number, number>();
  nodes.forEach((node, i) => {
    for (const o of node.outputs) {
      const b = bytesOf(o);
      size.set(o.id, b);
      alive += b;
      total += b;
      if (outputs.has(o.id)) outputBytes += b;
      else transient += b;
    }
    peak = Math.max(peak, alive);
    peakTransient = Math.max(peakTransient, transient);
    const free = (t: Tensor) => {
      alive -= size.get(t.id)!;
      transient -= size.get(t.id)!;
    };
    for (const t of new Set(node.inputs)) {
      if (t.source.kind === 'node' && lastUse.get(t.id) === i && !outputs.has(t.id)) free(t);
    }
    // Outputs nobody consumes (e.g. an unused split part) die at once unless they are graph outputs.
    for (const o of node.outputs) if (!lastUse.has(o.id) && !outputs.has(o.id)) free(o);
  });
  return { peakBytes: peak, peakTransientBytes: peakTransient, outputBytes, totalBytes: total };
}
