/** DINO's real training graph (vit_small/16, 224 px, K = 65536) compiles and one CPU step at batch 2 gives a finite loss. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { vitSmallStep } from '../../../bench/experiments/vit-small-step.ts';

test('vit_small/16 224 px, K = 65536, batch 2, 2 + 2 crops: compiles and runs one step', async () => {
  const r = await vitSmallStep(false);
  assert.equal([r['globalSize'], r['localSize'], r['outDim'], r['localCrops']], [224, 96, 65536, 2]);
  const loss = r['loss'] as number;
  // At initialisation teacher and student outputs are near uniform over K, so each pair's cross-entropy is near ln K.
  assert.ok(Number.isFinite(loss) && loss > 0.5 * Math.log(65536) && loss < 1.5 * Math.log(65536), `loss ${loss}`);
});

test.run();
