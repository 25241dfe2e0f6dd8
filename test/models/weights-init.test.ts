/** Weight-map checking (all problems at once, by name) and deterministic initialisation from the PRNG. */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import { Prng } from '../../dsl/index.ts';
import { initialValues } from '../../dsl/init.ts';
import { buildNetworkGraph, paramSpecs } from '../../models/network.ts';
import { getPreset } from '../../models/presets.ts';
import { checkWeights, formatWeightProblems } from '../../models/weights.ts';

const specs = paramSpecs(buildNetworkGraph(getPreset('fmnist-tiny6')));
const fullMap = () => new Map(specs.map((s) => [s.name, { dtype: 'float32', shape: [...s.shape] }]));

test('a complete map passes', () => {
  assert.ok(E.isRight(checkWeights(specs, fullMap())));
});

test('a missing key, an extra key and a wrong shape give one error listing all three', () => {
  const m = fullMap();
  m.delete('blocks.3.attn.qkv.bias');
  m.set('head.mlp.6.weight', { dtype: 'float32', shape: [4, 4] });
  m.set('pos_embed', { dtype: 'float32', shape: [1, 197, 192] });
  const r = checkWeights(specs, m);
  assert.ok(E.isLeft(r));
  if (E.isRight(r)) return;
  assert.equal(r.left, [
    { kind: 'missing', name: 'blocks.3.attn.qkv.bias', expected: [576] },
    { kind: 'shape', name: 'pos_embed', expected: [1, 50, 192], actual: [1, 197, 192] },
    { kind: 'unexpected', name: 'head.mlp.6.weight', actual: [4, 4] },
  ]);
  const message = formatWeightProblems(r.left, 'ckpt.safetensors');
  assert.match(message, /^ckpt\.safetensors do not match the model: 1 missing, 1 unexpected, 1 wrong shape, 0 wrong dtype/);
  assert.match(message, /missing key "blocks\.3\.attn\.qkv\.bias" \(expected shape \[576\]\)/);
  assert.match(message, /unexpected key "head\.mlp\.6\.weight" \(shape \[4, 4\]\)/);
  assert.match(message, /wrong shape for "pos_embed": expected \[1, 50, 192\], got \[1, 197, 192\]/);
});

test('integer tensors are reported; num_batches_tracked is ignored by default but not when asked', () => {
  const m = fullMap();
  m.set('norm.weight', { dtype: 'int64', shape: [192] });
  m.set('bn1.num_batches_tracked', { dtype: 'int64', shape: [] });
  const r = checkWeights(specs, m);
  assert.ok(E.isLeft(r) && r.left.length === 1 && r.left[0]!.kind === 'dtype');
  const strict = checkWeights(specs, m, { ignore: () => false });
  assert.ok(E.isLeft(strict) && strict.left.some((p) => p.name === 'bn1.num_batches_tracked' && p.kind === 'unexpected'));
});

test('initialisation: deterministic per seed, independent of spec order, distributions as DINO', () => {
  const a = initialValues(specs, Prng.seeded(42));
  const b = initialValues([...specs].reverse(), Prng.seeded(42));
  const c = initialValues(specs, Prng.seeded(43));
  assert.is(a.size, specs.length);
  for (const [name, v] of a) assert.equal(Array.from(v.slice(0, 8)), Array.from(b.get(name)!.slice(0, 8)), name);
  assert.not.equal(Array.from(a.get('pos_embed')!.slice(0, 8)), Array.from(c.get('pos_embed')!.slice(0, 8)));

  const stats = (v: Float32Array) => {
    let s = 0, s2 = 0, lo = Infinity, hi = -Infinity;
    for (const x of v) { s += x; s2 += x * x; lo = Math.min(lo, x); hi = Math.max(hi, x); }
    const mean = s / v.length;
    return { mean, std: Math.sqrt(s2 / v.length - mean * mean), lo, hi };
  };
  const w = stats(a.get('head.mlp.2.weight')!); // 4M draws of trunc normal std 0.02
  assert.ok(Math.abs(w.mean) < 1e-4 && Math.abs(w.std - 0.02) < 1e-4, JSON.stringify(w));
  const v = stats(a.get('head.last_layer.weight_v')!); // U(-1/16, 1/16): std 1/(16 sqrt 3)
  assert.ok(v.lo >= -1 / 16 && v.hi <= 1 / 16 && Math.abs(v.std - 1 / (16 * Math.sqrt(3))) < 2e-4, JSON.stringify(v));
  const p = stats(a.get('patch_embed.proj.weight')!); // U(-1/4, 1/4)
  assert.ok(p.lo >= -0.25 && p.hi <= 0.25 && p.hi > 0.24, JSON.stringify(p));
  assert.ok(a.get('head.last_layer.weight_g')!.every((x) => x === 1));
  assert.ok(a.get('blocks.0.norm1.weight')!.every((x) => x === 1));
  assert.ok(a.get('blocks.0.attn.qkv.bias')!.every((x) => x === 0));
});

test('initialisation of ResNet buffers: running_mean 0, running_var 1; conv weights kaiming normal (fan_out)', () => {
  const rs = paramSpecs(buildNetworkGraph(getPreset('resnet18')));
  const v = initialValues(rs, Prng.seeded(1));
  assert.ok(v.get('layer1.0.bn1.running_mean')!.every((x) => x === 0));
  assert.ok(v.get('layer1.0.bn1.running_var')!.every((x) => x === 1));
  const w = v.get('layer3.0.conv2.weight')!; // [256, 256, 3, 3]: std sqrt(2 / (256 * 9))
  let s2 = 0;
  for (const x of w) s2 += x * x;
  assert.ok(Math.abs(Math.sqrt(s2 / w.length) / Math.sqrt(2 / (256 * 9)) - 1) < 0.01);
});

test.run();
