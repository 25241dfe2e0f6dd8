/** Drawing initial values for parameter specs from the seeded PRNG (prng.ts), so a seed fixes every initial weight. */
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

/**
 * Initial values of every spec, drawn in code-unit order of the names (each tensor row-major), so the
 * values depend only on the seed and the set of parameters, not on the order a graph created them in
 * (a training graph and an export graph of the same model initialise identically). A name repeated
 * with the same shape is drawn once; with another shape it is an error.
 */
export function initialValues(specs: readonly ParamSpec[], prng: Prng): Map<string, Float32Array> {
  const byName = new Map<string, ParamSpec>();
  for (const spec of specs) {
    const prev = byName.get(spec.name);
    if (prev && prev.shape.join(',') !== spec.shape.join(',')) {
      throw new Error(`initialValues: parameter "${spec.name}" appears with shapes [${prev.shape}] and [${spec.shape}]`);
    }
    byName.set(spec.name, prev ?? spec);
  }
  const names = [...byName.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const out = new Map<string, Float32Array>();
  for (const name of names) {
    const spec = byName.get(name)!;
    out.set(name, drawInit(spec.init, spec.shape.reduce((a, b) => a * b, 1), prng));
  }
  return out;
}
