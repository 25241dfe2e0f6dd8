/**
 * `dino train --precision fp16` (DINO's `--use-fp16 true`): the flag reaches the config and the step graph, fp32
 * leaves no key in the config (runs from before the option resume), and a short fp16 run writes the scaler's
 * metrics and state.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newRunFromArgs } from '../../../cli/train.ts';
import { UsageError } from '../../../cli/args.ts';
import { applyOverrides, getPreset, stepConfig } from '../../../runtime/dino/config.ts';
import { train } from '../../../runtime/dino/train.ts';
import { loadFashionMnist } from '../../../runtime/data/fashion-mnist.ts';
import { LOSS_SCALE } from '../../../dsl/index.ts';

test('--precision / --use-fp16 set the config; fp32 writes no key', async () => {
  const cfg = async (...argv: string[]) => (await newRunFromArgs(['--preset', 'fmnist-tiny6', ...argv])).config;
  assert.is((await cfg('--precision', 'fp16')).precision, 'fp16');
  assert.is((await cfg('--use_fp16', 'true')).precision, 'fp16');
  assert.not.ok('precision' in (await cfg('--use-fp16', 'false')));
  assert.not.ok('precision' in (await cfg('--precision', 'fp32')));
  assert.not.ok('precision' in (await cfg()));
  assert.is(stepConfig(await cfg('--precision', 'fp16')).precision, 'fp16');
  assert.not.ok('precision' in stepConfig(await cfg()));
  const both = await newRunFromArgs(['--precision', 'fp16', '--use-fp16', 'true']).catch((e: unknown) => e);
  assert.instance(both, UsageError);
});

test('a 3-step fp16 run records the loss scale and skipped steps, and checkpoints the scaler', async () => {
  const out = mkdtempSync(join(tmpdir(), 'dino-fp16-'));
  try {
    const config = { ...applyOverrides(getPreset('fmnist-tiny6'), [
      'backbone.embedDim=16', 'backbone.depth=1', 'backbone.numHeads=2', 'head.outDim=32', 'head.hiddenDim=32', 'head.bottleneckDim=8',
      'batch=4', 'augment.localCrops=1', 'steps=3',
    ]), precision: 'fp16' as const };
    const r = await train({ config, out, dataset: await loadFashionMnist({ limitPerClass: 2 }), progress: 'none', log: () => {}, threads: 1 });
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.is(lines.length, 3);
    for (const m of lines) assert.ok(typeof m.loss_scale === 'number' && (m.skipped === 0 || m.skipped === 1), JSON.stringify(m));
    assert.is(lines[0].loss_scale, 65536);
    assert.ok(r.state.names().includes(LOSS_SCALE));
    assert.is(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).precision, 'fp16');
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test.run();
