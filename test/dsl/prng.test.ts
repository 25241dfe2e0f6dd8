import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Prng } from '../../dsl/prng.ts';

test('same seed gives the same stream; state round-trips', () => {
  const a = Prng.seeded(7);
  const b = Prng.seeded(7);
  for (let i = 0; i < 5; i++) assert.is(a.nextU32(), b.nextU32());
  const c = Prng.fromState(a.state());
  for (let i = 0; i < 5; i++) assert.is(a.uniform(), c.uniform());
});

test('normal draws have mean ~0 and std ~1', () => {
  const p = Prng.seeded(1);
  let s = 0, s2 = 0;
  const n = 20000;
  for (let i = 0; i < n; i++) { const x = p.normal(); s += x; s2 += x * x; }
  assert.ok(Math.abs(s / n) < 0.03);
  assert.ok(Math.abs(Math.sqrt(s2 / n) - 1) < 0.03);
});

test.run();
