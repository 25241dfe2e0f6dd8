/**
 * The machine's ceiling: one fp32 n×n×n MatMul through ONNX Runtime (2n³ FLOPs), with the thread settings the
 * other benchmarks use, so "fraction of the ceiling" compares like with like.
 */
import * as E from 'fp-ts/lib/Either.js';
import { Graph, emitOnnx, formatError, matmul } from '../dsl/index.ts';
import { type ExecutionProvider, createSession, ort } from '../runtime/backend.ts';
import { createWebSession, ortWeb } from '../runtime/web.ts';
import { randomFloats, timeRepeated } from './measure.ts';

export interface CeilingResult {
  readonly n: number;
  readonly medianMs: number;
  /** From the fastest repetition: a ceiling is what the machine can do, so the best run is the fair figure. */
  readonly gflopsPerS: number;
  /** From the median repetition. */
  readonly medianGflopsPerS: number;
  readonly cpuPerWall: number;
}

function result(n: number, t: { medianMs: number; minMs: number; cpuPerWall: number }): CeilingResult {
  const flops = 2 * n ** 3;
  return { n, medianMs: t.medianMs, gflopsPerS: flops / (t.minMs * 1e6), medianGflopsPerS: flops / (t.medianMs * 1e6), cpuPerWall: t.cpuPerWall };
}

/** The better (faster) of two ceiling measurements, e.g. one taken before and one after other work. */
export function bestCeiling(a: CeilingResult, b: CeilingResult): CeilingResult {
  return a.gflopsPerS >= b.gflopsPerS ? a : b;
}

/** ONNX bytes of `y = a @ b` for n×n float32 inputs. */
export function matmulModel(n: number): Uint8Array {
  const g = new Graph('matmul_ceiling');
  const a = g.input('a', 'float32', [n, n]);
  const b = g.input('b', 'float32', [n, n]);
  g.output('y', matmul(a, b));
  const bytes = emitOnnx(g, { params: 'inputs' });
  if (E.isLeft(bytes)) throw new Error(`matmul ceiling graph: ${bytes.left.map(formatError).join('; ')}`);
  return bytes.right;
}

/** fp32 n³ MatMul with onnxruntime-node. */
export async function matmulCeiling(n: number, opts: { ep?: ExecutionProvider; threads?: number; warmup?: number; reps?: number } = {}): Promise<CeilingResult> {
  const session = await createSession(matmulModel(n), { ep: opts.ep ?? 'cpu', threads: opts.threads ?? 0 });
  const feeds = { a: new ort.Tensor('float32', randomFloats(n * n, 1), [n, n]), b: new ort.Tensor('float32', randomFloats(n * n, 2), [n, n]) };
  const t = await timeRepeated(() => session.run(feeds), opts.warmup ?? 2, opts.reps ?? 10);
  await session.release();
  return result(n, t);
}

/** fp32 n³ MatMul with onnxruntime-web's WASM backend, run from Node (threads as `createWebSession`). */
export async function wasmMatmulCeiling(n: number, opts: { warmup?: number; reps?: number } = {}): Promise<CeilingResult> {
  const session = await createWebSession(matmulModel(n));
  const feeds = { a: new ortWeb.Tensor('float32', randomFloats(n * n, 1), [n, n]), b: new ortWeb.Tensor('float32', randomFloats(n * n, 2), [n, n]) };
  const t = await timeRepeated(() => session.run(feeds), opts.warmup ?? 1, opts.reps ?? 3);
  await session.release();
  return result(n, t);
}
