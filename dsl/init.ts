/** Drawing initial values for parameter specs from the seeded PRNG (DESIGN invariant 3). */
import type { Init, ParamSpec } from './graph.ts';
import type { Prng } from './prng.ts';

/** Values for one init rule; `n` elements, drawn in order from `prng`. */
export function drawInit(init: Init, n: number, prng: Prng): Float32Array {
  const out = new Float32Array(n);
  switch (init.kind) {
    case 'zeros': break;
    case 'ones': out.fill(1); break;
    case 'constant': out.fill(init.value); break;
    case 'normal': for (let i = 0; i < n; i++) out[i] = prng.normal() * init.std; break;
    case 'truncnormal': for (let i = 0; i < n; i++) out[i] = prng.truncatedNormal(init.std, init.lo ?? -2, init.hi ?? 2); break;
    case 'uniform': for (let i = 0; i < n; i++) out[i] = prng.range(init.lo, init.hi); break;
  }
  return out;
}

/** Initial values of every spec, in the given order (the order is part of reproducibility). */
export function initialValues(specs: readonly ParamSpec[], prng: Prng): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const spec of specs) out.set(spec.name, drawInit(spec.init, spec.shape.reduce((a, b) => a * b, 1), prng));
  return out;
}
