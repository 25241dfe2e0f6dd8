/** Finite-difference gradient check of every differentiable op in the registry. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { allOps } from '../../dsl/index.ts';
import { gradCheck } from '../helpers/gradcheck.ts';
import { gradCases } from './grad-cases/index.ts';

// StopGradient is differentiable by design to give *no* gradient; checked in autodiff.test.ts.
const checkedElsewhere = new Set(['StopGradient']);

test('every differentiable op has a gradient-check case', () => {
  const missing = allOps().filter((op) => op.vjp && !checkedElsewhere.has(op.name) && !gradCases[op.name]).map((op) => op.name);
  assert.equal(missing, [], `ops without a gradient check: ${missing.join(', ')}`);
});

for (const [name, spec] of Object.entries(gradCases)) {
  if (checkedElsewhere.has(name)) continue;
  test(`gradient of ${name} matches central differences (${spec.dtype ?? 'float64'})`, async () => {
    const r = await gradCheck(spec);
    assert.ok(r.checks > 0);
  });
}

test.run();
