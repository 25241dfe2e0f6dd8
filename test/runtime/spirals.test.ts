import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { trainSpirals } from '../../runtime/examples/spirals.ts';

test('an MLP trained only through compiled ONNX step graphs learns two spirals (>= 95%)', async () => {
  const r = await trainSpirals({ steps: 600, seed: 0 });
  assert.ok(r.losses[r.losses.length - 1]! < r.losses[0]! * 0.2, `loss ${r.losses[0]} -> ${r.losses.at(-1)}`);
  assert.ok(r.accuracy >= 0.95, `accuracy ${r.accuracy}`);
});

test.run();
