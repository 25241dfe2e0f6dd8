/** Gradient-check cases for element-wise ops (float64 unless ORT lacks the kernel). */
import * as D from '../../../dsl/index.ts';
import type { GradCheckSpec } from '../../helpers/gradcheck.ts';

const pos = (p: D.Prng) => p.range(0.5, 2);
const bin = (shapeA: number[], shapeB: number[], f: (a: D.Tensor, b: D.Tensor) => D.Tensor, genB?: (p: D.Prng) => number): GradCheckSpec => ({
  inputs: [{ name: 'a', shape: shapeA }, { name: 'b', shape: shapeB, ...(genB ? { gen: genB } : {}) }],
  build: ([a, b]) => f(a!, b!),
});
const un = (shape: number[], f: (x: D.Tensor) => D.Tensor, gen?: (p: D.Prng) => number): GradCheckSpec => ({
  inputs: [{ name: 'x', shape, ...(gen ? { gen } : {}) }],
  build: ([x]) => f(x!),
});

export const elementwiseCases: Record<string, GradCheckSpec> = {
  // broadcasting in both directions is part of every binary case
  Add: bin([3, 4], [4], D.add),
  Sub: bin([3, 1], [1, 4], D.sub),
  Mul: bin([2, 3, 4], [3, 1], D.mul),
  Div: bin([3, 4], [3, 4], D.div, pos),
  Pow: { inputs: [{ name: 'a', shape: [3, 4], gen: pos }, { name: 'b', shape: [4] }], build: ([a, b]) => D.pow(a!, b!) },
  Max: bin([3, 4], [4], D.maximum),
  Min: bin([3, 4], [3, 4], D.minimum),
  Neg: un([3, 4], D.neg),
  Abs: un([3, 4], D.abs),
  Sqrt: un([3, 4], D.sqrt, pos),
  Reciprocal: un([3, 4], D.reciprocal, pos),
  Exp: un([3, 4], D.exp),
  Log: un([3, 4], D.log, pos),
  Tanh: un([3, 4], D.tanh),
  Sigmoid: un([3, 4], D.sigmoid),
  Relu: un([3, 4], D.relu),
  // ORT's CPU EP has no float64 Erf: float32 with h = 1e-2. The central-difference truncation error is
  // h^2 f'''/6 ~ 2e-5 and float32 rounding of L ~ 1e-7 |L| / h ~ 1e-5, so 1e-2 relative is a safe bound.
  Erf: { ...un([3, 4], D.erf), dtype: 'float32', eps: 1e-2, tol: 1e-2 },
  // ONNX Gelu (opset 20): ORT's CPU EP runs it in float32 only, so the same bounds as Erf.
  Gelu: { ...un([3, 4], D.gelu), dtype: 'float32', eps: 1e-2, tol: 1e-2 },
  Identity: un([3, 4], D.identity),
  // float32 -> float64 -> float32: exact round trip, so the float32 finite difference is clean
  Cast: { ...un([3, 4], (x) => D.mul(D.cast(D.mul(D.cast(x, 'float64'), 3), 'float32'), x)), dtype: 'float32', eps: 1e-2, tol: 1e-3 },
  Clip: un([3, 4], (x) => D.clip(x, -0.5, 0.7)),
  Where: {
    inputs: [
      { name: 'cond', shape: [3, 4], constant: { dtype: 'bool', data: [1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0] } },
      { name: 'a', shape: [3, 4] },
      { name: 'b', shape: [4] },
    ],
    build: ([c, a, b]) => D.where(c!, a!, b!),
  },
  StopGradient: {
    // y = x * stopgrad(x): dy/dx = stopgrad(x) only
    inputs: [{ name: 'x', shape: [3, 4] }],
    build: ([x]) => D.mul(x!, D.stopGradient(x!)),
    // the finite difference sees both factors move, so compare against the explicit formula instead
  },
};
