/**
 * Initial parameter values, drawn in TS from the run's seeded PRNG (DESIGN invariant 3).
 *
 * Parameters are visited in code-unit order of their names and each one's elements in row-major
 * order, so the values depend only on the seed and on the set of parameters, not on the order in which
 * a graph happened to create them (a student graph and an export graph initialise identically).
 * (`initialValues` in dsl/init.ts draws in the order given instead.) Each Init kind is drawn by
 * dsl's `drawInit`; DINO's trunc_normal_ bounds are absolute (-2..2), not ±2 std.
 */
import { type ParamSpec, type Prng, drawInit } from '../dsl/index.ts';

/**
 * Initial values of every parameter and buffer in `specs` (names as in the specs, without any
 * student./teacher. graph prefix). Specs repeated under the same name (the same model built twice)
 * are drawn once; the same name with two shapes is an error.
 */
export function initParams(specs: readonly ParamSpec[], prng: Prng): Map<string, Float32Array> {
  const byName = new Map<string, ParamSpec>();
  for (const spec of specs) {
    const prev = byName.get(spec.name);
    if (prev && prev.shape.join(',') !== spec.shape.join(',')) {
      throw new Error(`initParams: parameter "${spec.name}" appears with shapes [${prev.shape}] and [${spec.shape}]`);
    }
    byName.set(spec.name, prev ?? spec);
  }
  const names = [...byName.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const values = new Map<string, Float32Array>();
  for (const name of names) {
    const spec = byName.get(name)!;
    values.set(name, drawInit(spec.init, spec.shape.reduce((a, b) => a * b, 1), prng));
  }
  return values;
}
