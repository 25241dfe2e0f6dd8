/**
 * Gradient checks against central finite differences, run through ONNX Runtime.
 *
 * For f with output y and a fixed random cotangent c, L(x) = <y(x), c>. The compiled graph returns L and
 * the autodiff gradients. Two checks:
 *  - along random directions d (JAX's check_vjp idea, scales to big tensors):
 *      (L(x + h d) - L(x - h d)) / 2h  ==  sum_i <grad_i, d_i>
 *  - element by element for inputs of at most `elementwiseLimit` entries.
 */
import * as E from 'fp-ts/lib/Either.js';
import { type DType, type FloatDType, Graph, toBfloat16, toFloat16, type Tensor, formatError, gradients, mul, sumAll, emitOnnx, Prng } from '../../dsl/index.ts';
import { createSession, hostTensor, ort } from '../../runtime/backend.ts';

export interface GradInput {
  readonly name: string;
  readonly shape: readonly number[];
  /** Value generator (default: standard normal). Inputs are never zero. */
  readonly gen?: (p: Prng) => number;
  /** Not differentiated (e.g. integer indices or a boolean mask): fixed values, no gradient check. */
  readonly constant?: { dtype: DType; data: ArrayLike<number> };
}

export interface GradCheckSpec {
  readonly inputs: readonly GradInput[];
  readonly build: (xs: Tensor[]) => Tensor;
  readonly dtype?: FloatDType;
  /** Step h of the central difference. */
  readonly eps?: number;
  /** Allowed |fd - analytic| / max(1, |fd|, |analytic|)... see `relErr`. */
  readonly tol?: number;
  readonly seed?: number;
  readonly directions?: number;
  readonly elementwiseLimit?: number;
}

export interface GradCheckResult {
  readonly maxError: number;
  readonly checks: number;
}

const relErr = (a: number, b: number) => Math.abs(a - b) / Math.max(1e-3, Math.abs(a), Math.abs(b));

function typed(dtype: DType, values: ArrayLike<number>) {
  switch (dtype) {
    case 'float32': return Float32Array.from(values);
    case 'float64': return Float64Array.from(values);
    case 'int64': return BigInt64Array.from(Array.from(values, (v) => BigInt(v)));
    case 'int32': return Int32Array.from(values);
    case 'bool': return Uint8Array.from(values);
    case 'float16': return toFloat16(values);
    case 'bfloat16': return toBfloat16(values);
  }
}

export async function gradCheck(spec: GradCheckSpec): Promise<GradCheckResult> {
  const dtype = spec.dtype ?? 'float64';
  const eps = spec.eps ?? (dtype === 'float64' ? 1e-6 : 1e-2);
  const tol = spec.tol ?? (dtype === 'float64' ? 1e-6 : 2e-2);
  const prng = Prng.seeded(spec.seed ?? 1234);

  const g = new Graph('gradcheck');
  const xs = spec.inputs.map((inp) => g.input(inp.name, inp.constant?.dtype ?? dtype, inp.shape));
  const y = spec.build(xs);
  const c = g.input('cotangent', dtype, y.shape);
  const loss = sumAll(mul(y, c));
  g.output('loss', loss);
  const diffIdx = spec.inputs.map((inp, i) => (inp.constant ? -1 : i)).filter((i) => i >= 0);
  const grads = gradients(loss, diffIdx.map((i) => xs[i]!));
  if (E.isLeft(grads)) throw new Error(grads.left.map(formatError).join('\n'));
  grads.right.forEach((gr, k) => {
    if (!gr) throw new Error(`no gradient reaches input ${spec.inputs[diffIdx[k]!]!.name}`);
    g.output(`grad_${k}`, gr);
  });
  const bytes = emitOnnx(g, { params: 'inputs' });
  if (E.isLeft(bytes)) throw new Error(bytes.left.map(formatError).join('\n'));
  const session = await createSession(bytes.right, { threads: 1 });

  const values = spec.inputs.map((inp) => {
    if (inp.constant) return Array.from(inp.constant.data);
    const n = inp.shape.reduce((a, b) => a * b, 1);
    return Array.from({ length: n }, () => {
      let v = 0;
      while (v === 0) v = inp.gen ? inp.gen(prng) : prng.normal();
      return v;
    });
  });
  const cot = Array.from({ length: y.shape.reduce<number>((a, b) => a * (b as number), 1) }, () => prng.normal());

  const run = async (vals: number[][]) => {
    const feeds: Record<string, ort.Tensor> = { cotangent: hostTensor(dtype, typed(dtype, cot), y.shape as number[]) };
    spec.inputs.forEach((inp, i) => (feeds[inp.name] = hostTensor(inp.constant?.dtype ?? dtype, typed(inp.constant?.dtype ?? dtype, vals[i]!), inp.shape)));
    return session.run(feeds);
  };

  const base = await run(values);
  const analytic = diffIdx.map((_, k) => Array.from(base[`grad_${k}`]!.data as Float64Array, Number));
  const lossAt = async (vals: number[][]) => Number((await run(vals))['loss']!.data[0]);

  let maxError = 0, checks = 0;
  const failures: string[] = [];
  const record = (what: string, fd: number, an: number) => {
    const e = relErr(fd, an);
    checks++;
    maxError = Math.max(maxError, e);
    if (e > tol || !Number.isFinite(e)) failures.push(`${what}: finite difference ${fd}, autodiff ${an} (rel err ${e.toExponential(2)} > ${tol})`);
  };

  for (let r = 0; r < (spec.directions ?? 3); r++) {
    const dirs = diffIdx.map((i) => values[i]!.map(() => prng.normal()));
    const shifted = (sgn: number) => values.map((v, i) => {
      const k = diffIdx.indexOf(i);
      return k < 0 ? v : v.map((x, j) => x + sgn * eps * dirs[k]![j]!);
    });
    const fd = ((await lossAt(shifted(1))) - (await lossAt(shifted(-1)))) / (2 * eps);
    const an = dirs.reduce((s, d, k) => s + d.reduce((t, dj, j) => t + dj * analytic[k]![j]!, 0), 0);
    record(`direction ${r}`, fd, an);
  }
  const limit = spec.elementwiseLimit ?? 48;
  for (const [k, i] of diffIdx.entries()) {
    if (values[i]!.length > limit) continue;
    for (let j = 0; j < values[i]!.length; j++) {
      const at = (sgn: number) => values.map((v, m) => (m === i ? v.map((x, q) => (q === j ? x + sgn * eps : x)) : v));
      const fd = ((await lossAt(at(1))) - (await lossAt(at(-1)))) / (2 * eps);
      record(`${spec.inputs[i]!.name}[${j}]`, fd, analytic[k]![j]!);
    }
  }
  await session.release();
  if (failures.length) throw new Error(`gradient check failed:\n  ${failures.slice(0, 8).join('\n  ')}`);
  return { maxError, checks };
}
