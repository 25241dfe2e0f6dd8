/**
 * Checking a name -> tensor map (a loaded checkpoint) against a model's ParamSpecs. Every missing,
 * unexpected and wrongly shaped key is reported at once, by name, so a mismatched checkpoint is
 * diagnosed in one run. (Reading safetensors / .pth files is runtime/io's job.)
 */
import * as E from 'fp-ts/lib/Either.js';
import type { ParamSpec } from '../dsl/index.ts';

export type WeightProblem =
  | { readonly kind: 'missing'; readonly name: string; readonly expected: readonly number[] }
  | { readonly kind: 'unexpected'; readonly name: string; readonly actual: readonly number[] }
  | { readonly kind: 'shape'; readonly name: string; readonly expected: readonly number[]; readonly actual: readonly number[] }
  | { readonly kind: 'dtype'; readonly name: string; readonly actual: string };

/** What the check needs of a tensor (runtime/io's NamedTensor fits). */
export interface ShapedTensor {
  readonly shape: readonly number[];
  readonly dtype?: string;
}

export interface CheckOptions {
  /**
   * Keys of the map to skip. Default: PyTorch's BatchNorm `*.num_batches_tracked` counters, which only
   * matter for momentum=None (cumulative averaging) and are not part of our models.
   */
  readonly ignore?: (name: string) => boolean;
}

const defaultIgnore = (name: string) => name.endsWith('.num_batches_tracked');

/** The map itself when it fits the specs exactly, otherwise every problem found (missing first, then by name). */
export function checkWeights<T extends ShapedTensor>(
  specs: readonly ParamSpec[],
  weights: ReadonlyMap<string, T>,
  opts: CheckOptions = {},
): E.Either<WeightProblem[], ReadonlyMap<string, T>> {
  const ignore = opts.ignore ?? defaultIgnore;
  const problems: WeightProblem[] = [];
  const expected = new Map(specs.map((s) => [s.name, s] as const));
  for (const spec of expected.values()) {
    const t = weights.get(spec.name);
    if (!t) problems.push({ kind: 'missing', name: spec.name, expected: spec.shape });
    else if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
      problems.push({ kind: 'shape', name: spec.name, expected: spec.shape, actual: t.shape });
    } else if (t.dtype !== undefined && t.dtype !== 'float32' && t.dtype !== 'float64') {
      problems.push({ kind: 'dtype', name: spec.name, actual: t.dtype });
    }
  }
  for (const [name, t] of weights) {
    if (!expected.has(name) && !ignore(name)) problems.push({ kind: 'unexpected', name, actual: t.shape });
  }
  const order = { missing: 0, shape: 1, dtype: 2, unexpected: 3 };
  problems.sort((a, b) => order[a.kind] - order[b.kind] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return problems.length ? E.left(problems) : E.right(weights);
}

export function formatWeightProblem(p: WeightProblem): string {
  switch (p.kind) {
    case 'missing': return `missing key "${p.name}" (expected shape [${p.expected.join(', ')}])`;
    case 'unexpected': return `unexpected key "${p.name}" (shape [${p.actual.join(', ')}])`;
    case 'shape': return `wrong shape for "${p.name}": expected [${p.expected.join(', ')}], got [${p.actual.join(', ')}]`;
    case 'dtype': return `wrong dtype for "${p.name}": expected a float tensor, got ${p.actual}`;
  }
}

/** One message listing every problem; `source` names the checkpoint. */
export function formatWeightProblems(problems: readonly WeightProblem[], source = 'weights'): string {
  const counts = (k: WeightProblem['kind']) => problems.filter((p) => p.kind === k).length;
  const head = `${source} do not match the model: ${counts('missing')} missing, ${counts('unexpected')} unexpected, ${counts('shape')} wrong shape, ${counts('dtype')} wrong dtype`;
  return [head, ...problems.map((p) => `  - ${formatWeightProblem(p)}`)].join('\n');
}
