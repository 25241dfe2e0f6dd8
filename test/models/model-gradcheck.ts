/**
 * Whole-model gradient check: the gradients of L = <y, c> (c a fixed random cotangent) with respect to
 * every trainable parameter of a model graph, against central differences along random directions
 * through all parameters at once (JAX's check_vjp idea; scales to whole models).
 *
 * Same method as test/helpers/gradcheck.ts, adapted to parameters created by the model code
 * (`Scope.param`) rather than plain graph inputs. In float32 the difference quotient is Richardson-
 * extrapolated, (4 D(h) - D(2h)) / 3, which cancels the O(h^2) truncation term so that the remaining
 * error is float32 round-off in L divided by h.
 */
import * as E from 'fp-ts/lib/Either.js';
import { type FloatDType, Graph, type Tensor, Prng, emitOnnx, formatError, gradients, mul, specOf, sumAll } from '../../dsl/index.ts';
import { initialValues } from '../../dsl/init.ts';
import { createSession, hostTensor, type ort } from '../../runtime/backend.ts';
import type { Feed } from './run.ts';

export interface ModelGradCheckSpec {
  /** Builds the model in `g` and returns its output y plus values for the graph inputs it created. */
  readonly build: (g: Graph) => { y: Tensor; feeds: Record<string, Feed> };
  readonly dtype: FloatDType;
  readonly seed?: number;
  readonly directions?: number;
  /** Step h (default 1e-3 in float32, 1e-6 in float64). */
  readonly eps?: number;
  readonly tol?: number;
  /** Richardson-extrapolate the float32 difference quotient (default true; false for tiny steps through ReLU kinks). */
  readonly richardson?: boolean;
  /** Parameter values: model init plus N(0, noise^2), so nothing sits at a special point (zero biases, unit norms). */
  readonly noise?: number;
}

export interface ModelGradCheckResult {
  readonly maxError: number;
  readonly errors: readonly number[];
  /** Trainable parameters checked, and their total element count. */
  readonly params: readonly string[];
  readonly elements: number;
  /** The compiled graph's outputs at the base point (e.g. buffer updates the test wants to inspect). */
  readonly base: Record<string, ort.Tensor>;
  readonly values: ReadonlyMap<string, Float32Array | Float64Array>;
}

export async function modelGradCheck(spec: ModelGradCheckSpec): Promise<ModelGradCheckResult> {
  const dtype = spec.dtype;
  const prng = Prng.seeded(spec.seed ?? 7);
  const g = new Graph('model_gradcheck');
  const { y, feeds } = spec.build(g);
  const c = g.input('cotangent', dtype, y.shape);
  g.output('loss', sumAll(mul(y, c)));
  for (const [key, t] of g.bufferUpdates) g.output(`update:${key}`, t);
  const trainable = [...g.params.entries()].filter(([, t]) => specOf(t).kind === 'param' && specOf(t).trainable);
  const grads = gradients(g.outputs.get('loss')!, trainable.map(([, t]) => t));
  if (E.isLeft(grads)) throw new Error(grads.left.map(formatError).join('\n'));
  grads.right.forEach((gr, k) => {
    if (!gr) throw new Error(`no gradient reaches parameter ${trainable[k]![0]}`);
    g.output(`grad:${trainable[k]![0]}`, gr);
  });
  const bytes = emitOnnx(g, { params: 'inputs' });
  if (E.isLeft(bytes)) throw new Error(bytes.left.map(formatError).join('\n'));
  const session = await createSession(bytes.right, { threads: 1 });

  const Arr = { from: (xs: ArrayLike<number>): Float32Array | Float64Array => (dtype === 'float64' ? Float64Array.from(xs) : Float32Array.from(xs)) };
  const init = initialValues([...g.params.values()].map(specOf), prng);
  const noise = spec.noise ?? 0.1;
  const values = new Map<string, Float32Array | Float64Array>();
  for (const [key, t] of g.params) {
    const s = specOf(t);
    const v = Arr.from(init.get(s.name)!);
    if (s.kind === 'param') for (let i = 0; i < v.length; i++) v[i] = v[i]! + noise * prng.normal();
    values.set(key, v);
  }
  const cot = Arr.from(Array.from({ length: y.shape.reduce<number>((a, b) => a * (b as number), 1) }, () => prng.normal()));

  const run = async (vals: ReadonlyMap<string, Float32Array | Float64Array>) => {
    const f: Record<string, ort.Tensor> = { cotangent: hostTensor(dtype, cot, y.shape as number[]) };
    for (const [name, feed] of Object.entries(feeds)) f[name] = hostTensor(feed.data instanceof Float64Array ? 'float64' : 'float32', feed.data, feed.shape);
    for (const [key, t] of g.params) f[key] = hostTensor(dtype, vals.get(key)!, t.shape as number[]);
    return session.run(f);
  };
  const lossAt = async (vals: ReadonlyMap<string, Float32Array | Float64Array>) => Number((await run(vals))['loss']!.data[0]);

  const base = await run(values);
  const eps = spec.eps ?? (dtype === 'float64' ? 1e-6 : 1e-3);
  const tol = spec.tol ?? (dtype === 'float64' ? 1e-6 : 5e-3);
  const errors: number[] = [];
  const failures: string[] = [];
  for (let r = 0; r < (spec.directions ?? 3); r++) {
    const dirs = new Map(trainable.map(([key]) => [key, Float64Array.from(values.get(key)!, () => prng.normal())]));
    const shifted = (h: number) => {
      const m = new Map(values);
      for (const [key, d] of dirs) m.set(key, Arr.from(Array.from(values.get(key)!, (v, i) => v + h * d[i]!)));
      return m;
    };
    const quotient = async (h: number) => ((await lossAt(shifted(h))) - (await lossAt(shifted(-h)))) / (2 * h);
    const fd = dtype === 'float64' || spec.richardson === false ? await quotient(eps) : (4 * (await quotient(eps)) - (await quotient(2 * eps))) / 3;
    let an = 0;
    for (const [key, d] of dirs) {
      const gr = base[`grad:${key}`]!.data as Float32Array | Float64Array;
      for (let i = 0; i < d.length; i++) an += d[i]! * gr[i]!;
    }
    const err = Math.abs(fd - an) / Math.max(1e-3, Math.abs(fd), Math.abs(an));
    errors.push(err);
    if (!(err <= tol)) failures.push(`direction ${r}: finite difference ${fd}, autodiff ${an} (rel err ${err.toExponential(2)} > ${tol})`);
  }
  await session.release();
  if (failures.length) throw new Error(`model gradient check failed:\n  ${failures.join('\n  ')}`);
  return {
    maxError: Math.max(...errors),
    errors,
    params: trainable.map(([key]) => key),
    elements: trainable.reduce((n, [, t]) => n + (t.shape as number[]).reduce((a, b) => a * b, 1), 0),
    base,
    values,
  };
}
