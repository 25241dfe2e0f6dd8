/**
 * Every preset builds, with the exact parameter counts of the reference implementations (DINO's
 * vision_transformer.py, torchvision's resnet.py without fc), DINO's naming and decay/freeze flags, and
 * the inspect table as text and JSON.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import { Graph, Scope } from '../../dsl/index.ts';
import { inspectPreset, parameterTable } from '../../models/inspect.ts';
import { buildNetworkGraph, dinoNetwork, paramSpecs } from '../../models/network.ts';
import { getPreset, presetNames, vitSmall } from '../../models/presets.ts';
import { RECOMPUTE_MODES, parseRecompute } from '../../models/vit.ts';

/**
 * Backbone: ViT = patch embed D(C p^2 + 1) + cls D + pos (N + 1) D + depth (12 D^2 + 13 D) + final norm 2D;
 * e.g. ViT-S/16: 295,296 + 384 + 75,648 + 12 x 1,774,464 + 768 = 21,665,664 (the paper's 21 M).
 * Head: d*2048 + 2048 + 2048^2 + 2048 + 2048*256 + 256 + K*256 (weight_v) + K (weight_g).
 */
const EXPECTED: Record<string, { backbone: number; head: number }> = {
  vit_tiny: { backbone: 5_524_416, head: 21_958_912 },
  vit_small: { backbone: 21_665_664, head: 22_352_128 },
  vit_base: { backbone: 85_798_656, head: 23_138_560 },
  resnet18: { backbone: 11_176_512, head: 22_614_272 }, // torchvision 11,689,512 minus fc (513,000)
  resnet50: { backbone: 23_508_032, head: 25_760_000 }, // torchvision 25,557,032 minus fc (2,049,000)
  'fmnist-tiny6': { backbone: 2_682_624, head: 6_168_832 },
  'fmnist-tiny12': { backbone: 5_351_808, head: 6_168_832 },
};

test('every preset is listed and has the expected parameter counts', () => {
  assert.equal(presetNames().sort(), Object.keys(EXPECTED).sort());
  for (const [name, want] of Object.entries(EXPECTED)) {
    const t = parameterTable(name);
    assert.is(t.backboneParams, want.backbone, `${name} backbone`);
    assert.is(t.headParams, want.head, `${name} head`);
  }
});

test('the ViT parameter count follows the closed form for any patch size and channel count', () => {
  for (const [patchSize, inChans] of [[8, 3], [14, 1], [16, 4]] as const) {
    const cfg = vitSmall({ patchSize, inChans, imgSize: 224 });
    const d = cfg.embedDim, n = Math.floor(224 / patchSize) ** 2;
    const expected = d * (inChans * patchSize ** 2 + 1) + d + (n + 1) * d + 12 * (12 * d * d + 13 * d) + 2 * d;
    const g = new Graph('vit');
    dinoNetwork(new Scope(g), g.input('x', 'float32', [1, inChans, 224, 224]), { backbone: cfg, head: getPreset('vit_small').head });
    const backbone = paramSpecs(g).filter((s) => !s.name.startsWith('head.')).reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
    assert.is(backbone, expected, `ViT-S/${patchSize} with ${inChans} channels`);
  }
  assert.is(parameterTable('vit_small_p8').backboneParams, 21_670_272);
  assert.throws(() => getPreset('vit_huge'), /unknown preset "vit_huge"; known presets: vit_tiny, vit_small/);
});

test('fmnist-tiny6 is the reference preset: 1 channel, 28 px, patch 4, width 192, depth 6, 3 heads, MLP 768, drop path 0.1, K 4096', () => {
  const p = getPreset('fmnist-tiny6');
  assert.equal(p.backbone, {
    kind: 'vit', imgSize: 28, patchSize: 4, inChans: 1, embedDim: 192, depth: 6, numHeads: 3,
    mlpRatio: 4, qkvBias: true, layerNormEps: 1e-6, dropPathRate: 0.1,
  });
  assert.equal(p.head, { outDim: 4096, hiddenDim: 2048, bottleneckDim: 256, nlayers: 3, useBn: false, normLastLayer: true });
  assert.is(getPreset('fmnist-tiny12').backbone.kind === 'vit' && (getPreset('fmnist-tiny12').backbone as { depth: number }).depth, 12);
  const specs = paramSpecs(buildNetworkGraph(p));
  const pos = specs.find((s) => s.name === 'pos_embed')!;
  assert.equal(pos.shape, [1, 50, 192], '7x7 patches + CLS');
  assert.equal(specs.find((s) => s.name === 'blocks.5.mlp.fc1.weight')!.shape, [768, 192]);
  assert.not.ok(specs.some((s) => s.name.startsWith('blocks.6.')));
});

test('names, decay flags, frozen weight_g and last_layer tags follow DINO', () => {
  const specs = paramSpecs(buildNetworkGraph(getPreset('fmnist-tiny6')));
  const byName = new Map(specs.map((s) => [s.name, s]));
  for (const key of ['cls_token', 'pos_embed', 'patch_embed.proj.weight', 'blocks.0.norm1.weight', 'blocks.0.attn.qkv.weight', 'blocks.0.attn.qkv.bias',
    'blocks.0.attn.proj.weight', 'blocks.0.mlp.fc1.weight', 'blocks.0.mlp.fc2.bias', 'norm.weight', 'head.mlp.0.weight', 'head.mlp.2.weight',
    'head.mlp.4.weight', 'head.last_layer.weight_g', 'head.last_layer.weight_v']) assert.ok(byName.has(key), key);
  // DINO's get_params_groups: no decay for biases and 1-D tensors; cls_token, pos_embed and weight_v are decayed.
  for (const s of specs) assert.is(s.decay, !(s.name.endsWith('.bias') || s.shape.length === 1), s.name);
  assert.equal(specs.filter((s) => !s.trainable).map((s) => s.name), ['head.last_layer.weight_g']);
  assert.equal(specs.filter((s) => s.tags.includes('last_layer')).map((s) => s.name), ['head.last_layer.weight_g', 'head.last_layer.weight_v']);
  // init as DINO: trunc normal 0.02 for Linear weights, pos_embed, cls_token; PyTorch default for the patch conv and weight_v.
  assert.equal(byName.get('blocks.0.attn.qkv.weight')!.init, { kind: 'truncnormal', std: 0.02, lo: -2, hi: 2 });
  assert.equal(byName.get('pos_embed')!.init, { kind: 'truncnormal', std: 0.02, lo: -2, hi: 2 });
  assert.equal(byName.get('blocks.0.mlp.fc1.bias')!.init, { kind: 'zeros' });
  assert.equal(byName.get('norm.weight')!.init, { kind: 'ones' });
  assert.equal(byName.get('patch_embed.proj.weight')!.init, { kind: 'uniform', lo: -0.25, hi: 0.25 }); // 1/sqrt(1*4*4)
  assert.equal(byName.get('patch_embed.proj.bias')!.init, { kind: 'uniform', lo: -0.25, hi: 0.25 });
  assert.equal(byName.get('head.last_layer.weight_v')!.init, { kind: 'uniform', lo: -1 / 16, hi: 1 / 16 }); // 1/sqrt(256)
  assert.equal(byName.get('head.last_layer.weight_g')!.init, { kind: 'ones' });
});

test('ResNet presets: torchvision names, BatchNorm buffers, no fc', () => {
  const specs = paramSpecs(buildNetworkGraph(getPreset('resnet50')));
  const names = new Set(specs.map((s) => s.name));
  for (const key of ['conv1.weight', 'bn1.weight', 'bn1.running_mean', 'bn1.running_var', 'layer1.0.conv3.weight', 'layer1.0.downsample.0.weight',
    'layer1.0.downsample.1.running_var', 'layer4.2.bn3.bias']) assert.ok(names.has(key), key);
  assert.not.ok([...names].some((n) => n.startsWith('fc.')));
  assert.is(specs.filter((s) => s.kind === 'buffer').length, 2 * 53, 'ResNet-50 has 53 BatchNorm layers');
  assert.equal(specs.find((s) => s.name === 'head.mlp.0.weight')!.shape, [2048, 2048]);
  const r18 = new Set(paramSpecs(buildNetworkGraph(getPreset('resnet18'))).map((s) => s.name));
  assert.not.ok(r18.has('layer1.0.downsample.0.weight'), 'ResNet-18 layer1 keeps the identity shortcut');
  assert.ok(r18.has('layer2.0.downsample.0.weight'));
});

test('inspect: text table with totals, and JSON', () => {
  const text = inspectPreset('fmnist-tiny6', false);
  assert.match(text, /^preset fmnist-tiny6/);
  assert.match(text, /head\.last_layer\.weight_g\s+\[4096, 1\]\s+4,096\s+frozen/);
  assert.match(text, /blocks\.0\.attn\.qkv\.weight\s+\[576, 192\]\s+110,592\s+decay/);
  assert.match(text, /backbone parameters: 2,682,624/);
  assert.match(text, /head parameters:\s+6,168,832/);
  const json = JSON.parse(inspectPreset('fmnist-tiny6', true));
  assert.is(json.preset, 'fmnist-tiny6');
  assert.is(json.backbone_params, 2_682_624);
  assert.is(json.head_params, 6_168_832);
  assert.equal(json.params[0], { name: 'cls_token', shape: [1, 1, 192], count: 192, decay: true, trainable: true, kind: 'param' });
  const r = JSON.parse(inspectPreset('resnet18', true));
  assert.ok(r.params.some((p: { name: string; kind: string }) => p.name === 'bn1.running_mean' && p.kind === 'buffer'));
  assert.match(inspectPreset('resnet18', false), /buffers \(not counted\): 9,600/);
});

test('--recompute values: the three modes parse, anything else is an error naming the choices', () => {
  for (const mode of RECOMPUTE_MODES) assert.is(parseRecompute(mode), mode);
  assert.throws(() => parseRecompute('gelu'), /recompute must be one of none, mlp, blocks, got "gelu"/);
});

test('the network graph emits to ONNX with a symbolic batch', async () => {
  const { emitOnnx } = await import('../../dsl/index.ts');
  for (const name of ['fmnist-tiny6', 'resnet18']) {
    const bytes = emitOnnx(buildNetworkGraph(getPreset(name)), { params: 'inputs' });
    assert.ok(E.isRight(bytes), name);
  }
});

test.run();
