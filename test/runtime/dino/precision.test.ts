/**
 * `dino train --precision fp16` (DINO's `--use-fp16 true`) and `--precision bf16`: the flag reaches the config and
 * the step graph, fp32 leaves no key in the config (runs from before the option resume), a short fp16 run writes the
 * scaler's metrics and state, and a short bf16 run (emulated on the CPU provider) writes neither.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newRunFromArgs } from '../../../cli/train.ts';
import { UsageError } from '../../../cli/args.ts';
import { applyOverrides, stepConfig } from '../../../runtime/dino/config.ts';
import { getPreset } from '../../../runtime/dino/presets.ts';
import { stepPrecision, train, trainingStepGraph } from '../../../runtime/dino/train.ts';
import { loadFashionMnist } from '../../../runtime/data/fashion-mnist.ts';
import { GROWTH_TRACKER, LOSS_SCALE } from '../../../dsl/index.ts';
import { DINO_METRICS } from '../../../models/dino-step.ts';

/** A tiny fmnist-tiny6 of 3 steps in `precision`. */
function tinyConfig(precision: 'fp16' | 'bf16') {
  return { ...applyOverrides(getPreset('fmnist-tiny6'), [
    'backbone.embedDim=16', 'backbone.depth=1', 'backbone.numHeads=2', 'head.outDim=32', 'head.hiddenDim=32', 'head.bottleneckDim=8',
    'batch=4', 'augment.localCrops=1', 'steps=3',
  ]), precision };
}

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
  assert.is((await cfg('--precision', 'bf16')).precision, 'bf16');
  assert.is(stepConfig(await cfg('--precision', 'bf16')).precision, 'bf16');
  const bad = await newRunFromArgs(['--precision', 'bf17']).catch((e: unknown) => e);
  assert.instance(bad, UsageError);
  assert.match((bad as Error).message, /--precision must be one of fp32, fp16, bf16/);
});

test('bf16 builds bfloat16 MatMuls for CUDA only; elsewhere the same numbers in float32 (bf16-emulated)', async () => {
  assert.equal(['cpu', 'webgpu', 'cuda'].map((ep) => stepPrecision('bf16', ep as 'cpu')), ['bf16-emulated', 'bf16-emulated', 'bf16']);
  assert.equal(['cpu', 'cuda'].map((ep) => stepPrecision('fp16', ep as 'cpu')), ['fp16', 'fp16']);
  const config = tinyConfig('bf16');
  const dtypes = (ep: 'cpu' | 'cuda') => new Set(trainingStepGraph(config, { ep }).graph.nodes.filter((n) => n.op.name === 'MatMul').flatMap((n) => n.inputs.map((x) => x.dtype)));
  assert.equal([...dtypes('cuda')].sort(), ['bfloat16', 'float32']); // float32: the constant position-embedding resize
  assert.equal([...dtypes('cpu')], ['float32']);
});

test('a 3-step fp16 run records the loss scale and skipped steps, and checkpoints the scaler', async () => {
  const out = mkdtempSync(join(tmpdir(), 'dino-fp16-'));
  try {
    const config = tinyConfig('fp16');
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

test('a 3-step bf16 run on the CPU records bf16 in config.json, and neither scaler metrics nor scaler state', async () => {
  const out = mkdtempSync(join(tmpdir(), 'dino-bf16-'));
  try {
    const logs: string[] = [];
    const r = await train({ config: tinyConfig('bf16'), out, dataset: await loadFashionMnist({ limitPerClass: 2 }), progress: 'none', log: (l) => logs.push(l), threads: 1 });
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.is(lines.length, 3);
    for (const m of lines) {
      for (const k of DINO_METRICS) assert.ok(Number.isFinite(m[k]), `${k}: ${JSON.stringify(m)}`);
      assert.not.ok('loss_scale' in m || 'skipped' in m, JSON.stringify(m));
    }
    assert.not.ok(r.state.names().some((n) => n === LOSS_SCALE || n === GROWTH_TRACKER));
    assert.is(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).precision, 'bf16');
    assert.ok(logs.some((l) => /precision bf16 on the cpu provider/.test(l)), logs.join('\n'));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test.run();
