/** Test helper: emit a model graph with given parameter values and run it once on ONNX Runtime (CPU). */
import * as E from 'fp-ts/lib/Either.js';
import { type Graph, type WeightArray, emitOnnx, formatError } from '../../dsl/index.ts';
import { hostTensor, ort } from '../../runtime/backend.ts';
import { relativeError } from '../helpers/compare.ts';
export { relativeError };

export interface Feed {
  readonly data: Float32Array | Float64Array;
  readonly shape: readonly number[];
}

/** Runs `graph` with parameters baked in from `params` (keys = graph parameter names); returns every output. */
export async function runGraph(
  graph: Graph,
  params: ReadonlyMap<string, WeightArray>,
  feeds: Readonly<Record<string, Feed>>,
): Promise<Map<string, { data: Float32Array | Float64Array; dims: readonly number[] }>> {
  const bytes = emitOnnx(graph, { params: { values: params } });
  if (E.isLeft(bytes)) throw new Error(bytes.left.map(formatError).join('\n'));
  // logSeverityLevel 3: training graphs leave BatchNorm running statistics unused, which ORT warns about.
  const session = await ort.InferenceSession.create(bytes.right, { intraOpNumThreads: 2, logSeverityLevel: 3 });
  const ortFeeds = Object.fromEntries(
    Object.entries(feeds).map(([name, f]) => [name, hostTensor(f.data instanceof Float64Array ? 'float64' : 'float32', f.data, f.shape)]),
  );
  const result = await session.run(ortFeeds);
  const out = new Map<string, { data: Float32Array | Float64Array; dims: readonly number[] }>();
  for (const [name, t] of Object.entries(result)) out.set(name, { data: t.data as Float32Array, dims: t.dims });
  await session.release();
  return out;
}


/** max over elements of |a - b| / (|b| + floor). */
export function elementwiseRelativeError(actual: ArrayLike<number>, expected: ArrayLike<number>, floor = 1e-6): number {
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) / (Math.abs(expected[i]!) + floor));
  return worst;
}
