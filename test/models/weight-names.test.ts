// models/weight-names.ts: Hugging Face ViTModel and timm names to DINO's, on tiny synthetic state dicts with
// random values (the fused qkv is checked value by value: q rows, then k, then v).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Prng } from '../../dsl/index.ts';
import { detectConvention, dinoViTKeyRank, sortDinoViTKeys, toDinoViTNames, type WeightTensor } from '../../models/weight-names.ts';

const D = 8, DEPTH = 2, HIDDEN = 32, C = 3, P = 4, TOKENS = 17;
const prng = Prng.seeded(11);
const rand = (shape: number[]): WeightTensor => ({ dtype: 'float32', shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => prng.uniform() * 2 - 1) });

/** A DINO ViT state dict (DINO's keys and shapes). */
function dinoState(): Map<string, WeightTensor> {
  const sd = new Map<string, WeightTensor>();
  sd.set('cls_token', rand([1, 1, D]));
  sd.set('pos_embed', rand([1, TOKENS, D]));
  sd.set('patch_embed.proj.weight', rand([D, C, P, P]));
  sd.set('patch_embed.proj.bias', rand([D]));
  for (let b = 0; b < DEPTH; b++) {
    sd.set(`blocks.${b}.norm1.weight`, rand([D]));
    sd.set(`blocks.${b}.norm1.bias`, rand([D]));
    sd.set(`blocks.${b}.attn.qkv.weight`, rand([3 * D, D]));
    sd.set(`blocks.${b}.attn.qkv.bias`, rand([3 * D]));
    sd.set(`blocks.${b}.attn.proj.weight`, rand([D, D]));
    sd.set(`blocks.${b}.attn.proj.bias`, rand([D]));
    sd.set(`blocks.${b}.norm2.weight`, rand([D]));
    sd.set(`blocks.${b}.norm2.bias`, rand([D]));
    sd.set(`blocks.${b}.mlp.fc1.weight`, rand([HIDDEN, D]));
    sd.set(`blocks.${b}.mlp.fc1.bias`, rand([HIDDEN]));
    sd.set(`blocks.${b}.mlp.fc2.weight`, rand([D, HIDDEN]));
    sd.set(`blocks.${b}.mlp.fc2.bias`, rand([D]));
  }
  sd.set('norm.weight', rand([D]));
  sd.set('norm.bias', rand([D]));
  return sd;
}

/** Rows [from, from + n) of a row-major tensor's data (dim 0 slices). */
function rows(t: WeightTensor, from: number, n: number): Float32Array {
  const width = t.shape.slice(1).reduce((a, b) => a * b, 1);
  return (t.data as Float32Array).slice(from * width, (from + n) * width);
}

/** What transformers' DINO conversion script makes of a DINO state dict: split qkv, HF names (in HF's own order). */
function hfState(sd: Map<string, WeightTensor>, prefix = ''): Map<string, WeightTensor> {
  const hf = new Map<string, WeightTensor>();
  const put = (k: string, t: WeightTensor) => hf.set(prefix + k, t);
  put('embeddings.cls_token', sd.get('cls_token')!);
  put('embeddings.position_embeddings', sd.get('pos_embed')!);
  put('embeddings.patch_embeddings.projection.weight', sd.get('patch_embed.proj.weight')!);
  put('embeddings.patch_embeddings.projection.bias', sd.get('patch_embed.proj.bias')!);
  for (let b = 0; b < DEPTH; b++) {
    const e = `encoder.layer.${b}.`;
    for (const kind of ['weight', 'bias'] as const) {
      const qkv = sd.get(`blocks.${b}.attn.qkv.${kind}`)!;
      ['query', 'key', 'value'].forEach((part, i) => put(`${e}attention.attention.${part}.${kind}`, { dtype: 'float32', shape: [D, ...qkv.shape.slice(1)], data: rows(qkv, i * D, D) }));
      put(`${e}attention.output.dense.${kind}`, sd.get(`blocks.${b}.attn.proj.${kind}`)!);
      put(`${e}intermediate.dense.${kind}`, sd.get(`blocks.${b}.mlp.fc1.${kind}`)!);
      put(`${e}output.dense.${kind}`, sd.get(`blocks.${b}.mlp.fc2.${kind}`)!);
      put(`${e}layernorm_before.${kind}`, sd.get(`blocks.${b}.norm1.${kind}`)!);
      put(`${e}layernorm_after.${kind}`, sd.get(`blocks.${b}.norm2.${kind}`)!);
    }
  }
  put('layernorm.weight', sd.get('norm.weight')!);
  put('layernorm.bias', sd.get('norm.bias')!);
  return hf;
}

function assertSameState(actual: Map<string, WeightTensor>, expected: Map<string, WeightTensor>): void {
  assert.equal([...actual.keys()], [...expected.keys()], 'DINO keys in DINO order');
  for (const [k, t] of expected) {
    const a = actual.get(k)!;
    assert.equal(a.shape, t.shape, `${k} shape`);
    assert.equal([...a.data], [...t.data], `${k} values`);
  }
}

test('Hugging Face ViTModel (facebook/dino-vits16 layout) -> DINO keys, q/k/v fused in q, k, v order by value', () => {
  const dino = dinoState();
  const hf = hfState(dino);
  assert.is(detectConvention(hf.keys()), 'hf');
  const out = toDinoViTNames(hf);
  assert.is(out.convention, 'hf');
  assert.equal(out.dropped, []);
  assertSameState(out.tensors, dino);
  // The fused weight's first D rows are the query's, the next D the key's, the last D the value's.
  const qkv = out.tensors.get('blocks.1.attn.qkv.weight')!;
  assert.equal(qkv.shape, [3 * D, D]);
  assert.equal([...rows(qkv, 0, D)], [...hf.get('encoder.layer.1.attention.attention.query.weight')!.data]);
  assert.equal([...rows(qkv, D, D)], [...hf.get('encoder.layer.1.attention.attention.key.weight')!.data]);
  assert.equal([...rows(qkv, 2 * D, D)], [...hf.get('encoder.layer.1.attention.attention.value.weight')!.data]);
  assert.equal([...rows(out.tensors.get('blocks.0.attn.qkv.bias')!, D, D)], [...hf.get('encoder.layer.0.attention.attention.key.bias')!.data]);
});

test('Hugging Face with vit. prefix, pooler and classifier: those are dropped and reported', () => {
  const dino = dinoState();
  const hf = hfState(dino, 'vit.');
  hf.set('vit.pooler.dense.weight', rand([D, D]));
  hf.set('vit.pooler.dense.bias', rand([D]));
  hf.set('classifier.weight', rand([10, D]));
  hf.set('classifier.bias', rand([10]));
  const out = toDinoViTNames(hf);
  assert.equal(out.dropped.sort(), ['classifier.bias', 'classifier.weight', 'vit.pooler.dense.bias', 'vit.pooler.dense.weight']);
  assertSameState(out.tensors, dino);
});

test('Hugging Face errors: unknown keys listed all at once; an incomplete q/k/v triple named', () => {
  const hf = hfState(dinoState());
  hf.set('encoder.layer.0.attention.attention.relative_bias', rand([2]));
  hf.set('embeddings.distillation_token', rand([1, 1, D]));
  assert.throws(() => toDinoViTNames(hf), (e: Error) =>
    /2 weight name\(s\) are not Hugging Face ViTModel keys/.test(e.message) &&
    e.message.includes('encoder.layer.0.attention.attention.relative_bias') && e.message.includes('embeddings.distillation_token'));
  const partial = hfState(dinoState());
  partial.delete('encoder.layer.1.attention.attention.value.bias');
  assert.throws(() => toDinoViTNames(partial), /layer 1: attention bias needs query, key and value \(.*value missing\)/);
  const mismatched = hfState(dinoState());
  mismatched.set('encoder.layer.0.attention.attention.key.weight', rand([D, D + 1]));
  assert.throws(() => toDinoViTNames(mismatched), /layer 0: attention query\/key\/value weight must have one shape/);
});

test('timm (vit_small_patch16_224.dino): DINO keys already; head.* and an unused fc_norm dropped', () => {
  const dino = dinoState();
  const timm = new Map(dino);
  timm.set('head.weight', rand([1000, D]));
  timm.set('head.bias', rand([1000]));
  assert.is(detectConvention(timm.keys()), 'timm');
  const out = toDinoViTNames(timm);
  assert.is(out.convention, 'timm');
  assert.equal(out.dropped, ['head.weight', 'head.bias']);
  assertSameState(out.tensors, dino);
  // Average pooling (fc_norm instead of norm) is a different model: refused.
  const avg = new Map(dino);
  avg.delete('norm.weight');
  avg.delete('norm.bias');
  avg.set('fc_norm.weight', rand([D]));
  avg.set('fc_norm.bias', rand([D]));
  assert.throws(() => toDinoViTNames(avg), /fc_norm.*no norm\.\*/);
});

test('DINO keys pass through (reordered to DINO\'s state_dict order); unknown keys are listed', () => {
  const dino = dinoState();
  const shuffled = new Map([...dino].reverse());
  assert.is(detectConvention(shuffled.keys()), 'dino');
  const out = toDinoViTNames(shuffled);
  assertSameState(out.tensors, dino);
  const odd = new Map(dino);
  odd.set('blocks.0.ls1.gamma', rand([D]));
  odd.set('dist_token', rand([1, 1, D]));
  assert.throws(() => toDinoViTNames(odd), (e: Error) => e.message.includes('blocks.0.ls1.gamma') && e.message.includes('dist_token') && /2 weight name/.test(e.message));
});

test('key ranks follow DINO\'s registration order; other keys sort last', () => {
  assert.is(dinoViTKeyRank('cls_token'), 0);
  assert.ok(dinoViTKeyRank('blocks.9.norm1.weight')! < dinoViTKeyRank('blocks.10.norm1.weight')!, 'numeric block order, not string order');
  assert.ok(dinoViTKeyRank('blocks.11.mlp.fc2.bias')! < dinoViTKeyRank('norm.weight')!);
  assert.is(dinoViTKeyRank('head.weight'), undefined);
  assert.equal([...sortDinoViTKeys(new Map([['x', 1], ['norm.bias', 2], ['pos_embed', 3]])).keys()], ['pos_embed', 'norm.bias', 'x']);
});

test.run();
