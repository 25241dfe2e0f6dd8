/**
 * The fmnist-tiny6 network runs through ONNX Runtime with a symbolic batch on global (28 px) and local
 * (12 px) crops; samples do not interact (batch 3 vs each alone); stochastic-depth masks act per sample.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Graph, Prng, Scope } from '../../dsl/index.ts';
import { initialValues } from '../../dsl/init.ts';
import { dinoNetwork, paramSpecs } from '../../models/network.ts';
import { getPreset } from '../../models/presets.ts';
import { dropPathRates, sampleDropPathMasks, type ViTConfig } from '../../models/vit.ts';
import { relativeError, runGraph } from './run.ts';

const preset = getPreset('fmnist-tiny6');
const vit = preset.backbone as ViTConfig;
const prng = Prng.seeded(11);
const images = (n: number, side: number) => Float32Array.from({ length: n * side * side }, () => prng.normal());

function graph(side: number, withMasks: boolean): Graph {
  const g = new Graph('tiny6');
  const x = g.input('images', 'float32', ['batch', 1, side, side]);
  const masks = withMasks ? g.input('masks', 'float32', [vit.depth, 2, 'batch']) : undefined;
  const out = dinoNetwork(new Scope(g), x, preset, masks ? { dropPathMasks: masks } : {});
  g.output('features', out.features);
  g.output('logits', out.logits);
  return g;
}
const values = initialValues(paramSpecs(graph(28, false)), Prng.seeded(0));

for (const side of [28, 12]) {
  test(`${side} px crops, symbolic batch: shapes, and each sample is independent of the others`, async () => {
    const x = images(3, side);
    const all = await runGraph(graph(side, false), values, { images: { data: x, shape: [3, 1, side, side] } });
    assert.equal([...all.get('features')!.dims], [3, 192]);
    assert.equal([...all.get('logits')!.dims], [3, 4096]);
    assert.ok(all.get('logits')!.data.every(Number.isFinite));
    for (let i = 0; i < 3; i++) {
      const one = await runGraph(graph(side, false), values, { images: { data: x.slice(i * side * side, (i + 1) * side * side), shape: [1, 1, side, side] } });
      const rel = relativeError(one.get('features')!.data, all.get('features')!.data.slice(i * 192, (i + 1) * 192));
      assert.ok(rel < 1e-5, `sample ${i}: ${rel}`);
    }
  });
}

test('drop-path masks: all-ones masks change nothing; dropping sample 0 in a block changes only sample 0', async () => {
  const x = images(2, 28);
  const feed = { data: x, shape: [2, 1, 28, 28] };
  const plain = await runGraph(graph(28, false), values, { images: feed });
  const ones = new Float32Array(vit.depth * 2 * 2).fill(1);
  const same = await runGraph(graph(28, true), values, { images: feed, masks: { data: ones, shape: [vit.depth, 2, 2] } });
  assert.ok(relativeError(same.get('features')!.data, plain.get('features')!.data) < 1e-6);
  const drop = ones.slice();
  drop[3 * 4 + 0 * 2 + 0] = 0; // block 3, attention branch, sample 0
  const dropped = await runGraph(graph(28, true), values, { images: feed, masks: { data: drop, shape: [vit.depth, 2, 2] } });
  const f0 = dropped.get('features')!.data, p0 = plain.get('features')!.data;
  assert.ok(relativeError(f0.slice(0, 192), p0.slice(0, 192)) > 1e-3, 'sample 0 changes');
  assert.ok(relativeError(f0.slice(192), p0.slice(192)) < 1e-6, 'sample 1 does not');
});

test('sampleDropPathMasks: linspace rates, values 0 or 1/keep, keep frequency', () => {
  const rates = dropPathRates(vit);
  assert.equal(rates.map((r) => +r.toFixed(6)), [0, 0.02, 0.04, 0.06, 0.08, 0.1]);
  const batch = 20000;
  const m = sampleDropPathMasks(Prng.seeded(3), vit, batch);
  assert.is(m.length, vit.depth * 2 * batch);
  for (let i = 0; i < vit.depth; i++) {
    const keep = 1 - rates[i]!;
    const row = m.subarray(i * 2 * batch, (i + 1) * 2 * batch);
    let kept = 0;
    for (const v of row) {
      assert.ok(v === 0 || Math.abs(v - 1 / keep) < 1e-6, `block ${i}: value ${v}`);
      if (v !== 0) kept++;
    }
    const freq = kept / row.length;
    assert.ok(Math.abs(freq - keep) < 4 * Math.sqrt((keep * (1 - keep)) / row.length) + 1e-9, `block ${i}: kept ${freq} vs ${keep}`);
  }
});

test.run();
