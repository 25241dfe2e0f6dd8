/**
 * The DSL ViT + DINO head against PyTorch: test/fixtures/ref/vit_tiny_ref.safetensors, made by
 * tools/make_vit_fixture.py (torch 1.13, float32; see tools/README.md). Checks the parameter names
 * (the fixture holds DINO's state_dict keys), the forward outputs on a native 16x16 crop, a smaller 8x8
 * crop and a 16x8 crop (both interpolate the position embedding), and the interpolated tables themselves; also
 * with symbolic H and W (the graph the any-size export runs), where the table is resized in the graph.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as E from 'fp-ts/lib/Either.js';
import { Graph, Scope, formatError } from '../../dsl/index.ts';
import { readSafetensors } from '../../runtime/io/safetensors.ts';
import { dinoNetwork, paramSpecs } from '../../models/network.ts';
import type { DinoModelConfig } from '../../models/presets.ts';
import { bicubicResizeMatrix, positionEmbedding, type ViTConfig, visionTransformer } from '../../models/vit.ts';
import { checkWeights, formatWeightProblems } from '../../models/weights.ts';
import { elementwiseRelativeError, relativeError, runGraph } from './run.ts';

const FIXTURE = new URL('../fixtures/ref/vit_tiny_ref.safetensors', import.meta.url).pathname;
const ref = readSafetensors(FIXTURE);
const tensor = (name: string) => {
  const t = ref.tensors.get(name);
  if (!t) throw new Error(`${FIXTURE}: no tensor "${name}" (regenerate with tools/make_vit_fixture.py)`);
  return { data: t.data as Float32Array, shape: t.shape };
};

const config = JSON.parse(ref.metadata['config']!) as Record<string, number | boolean>;
const vit: ViTConfig = {
  kind: 'vit',
  imgSize: config['img_size'] as number,
  patchSize: config['patch_size'] as number,
  inChans: config['in_chans'] as number,
  embedDim: config['embed_dim'] as number,
  depth: config['depth'] as number,
  numHeads: config['num_heads'] as number,
  mlpRatio: config['mlp_ratio'] as number,
  qkvBias: config['qkv_bias'] as boolean,
  layerNormEps: config['layer_norm_eps'] as number,
  dropPathRate: config['drop_path_rate'] as number,
};
const model: DinoModelConfig = {
  backbone: vit,
  head: {
    outDim: config['out_dim'] as number,
    hiddenDim: config['head_hidden_dim'] as number,
    bottleneckDim: config['head_bottleneck_dim'] as number,
    nlayers: config['head_nlayers'] as number,
    useBn: false,
    normLastLayer: config['norm_last_layer'] as boolean,
  },
};

/** Fixture parameters under our names: backbone keys as they are, head keys under `head.`. */
const weights = new Map<string, { data: Float32Array; shape: number[] }>();
for (const [key, t] of ref.tensors) {
  if (key.startsWith('param.backbone.')) weights.set(key.slice('param.backbone.'.length), { data: t.data as Float32Array, shape: t.shape });
  if (key.startsWith('param.head.')) weights.set(`head.${key.slice('param.head.'.length)}`, { data: t.data as Float32Array, shape: t.shape });
}
const values = new Map([...weights].map(([k, t]) => [k, t.data]));

function networkGraph(n: number, h: number, w: number): Graph {
  const g = new Graph('vit_ref');
  const images = g.input('images', 'float32', [n, vit.inChans, h, w]);
  const out = dinoNetwork(new Scope(g), images, model);
  g.output('features', out.features);
  g.output('patch_tokens', out.patchTokens!);
  g.output('attention', out.attention!);
  g.output('head', out.logits);
  return g;
}

const TOL = 1e-4;
const report: string[] = [];

test('parameter names and shapes are exactly DINO state_dict keys (backbone, head.*)', () => {
  const specs = paramSpecs(networkGraph(2, 16, 16));
  const checked = checkWeights(specs, weights);
  assert.ok(E.isRight(checked), E.isLeft(checked) ? formatWeightProblems(checked.left, FIXTURE) : '');
  assert.is(specs.length, weights.size);
  const frozen = specs.filter((s) => !s.trainable).map((s) => s.name);
  assert.equal(frozen, ['head.last_layer.weight_g']);
});

for (const input of ['images', 'images_small', 'images_rect']) {
  test(`forward on ${input} matches PyTorch to ${TOL} relative`, async () => {
    const x = tensor(`input.${input}`);
    const [n, , h, w] = x.shape as [number, number, number, number];
    const out = await runGraph(networkGraph(n, h, w), values, { images: { data: x.data, shape: x.shape } });
    for (const name of ['features', 'patch_tokens', 'attention', 'head']) {
      const expected = tensor(`output.${input}.${name}`);
      const actual = out.get(name)!;
      assert.equal([...actual.dims], expected.shape, `${input}.${name} shape`);
      const rel = relativeError(actual.data, expected.data);
      const elem = elementwiseRelativeError(actual.data, expected.data, 1e-3);
      report.push(`${input}.${name}: max|diff|/max|ref| ${rel.toExponential(2)}, elementwise ${elem.toExponential(2)}`);
      assert.ok(rel < TOL, `${input}.${name}: relative error ${rel} >= ${TOL}`);
    }
  });
}

for (const [name, rows, cols] of [['pos_embed_small', 2, 2], ['pos_embed_rect', 4, 2]] as const) {
  test(`interpolated position embedding ${name} (${rows}x${cols} grid) matches torch's bicubic`, async () => {
    const g = new Graph('pos');
    const pos = new Scope(g).param('pos_embed', [1, 17, vit.embedDim], { kind: 'zeros' });
    g.output('pos', positionEmbedding(pos, vit, rows, cols));
    const out = await runGraph(g, new Map([['pos_embed', weights.get('pos_embed')!.data]]), {});
    const expected = tensor(`output.${name}`);
    const rel = relativeError(out.get('pos')!.data, expected.data);
    report.push(`${name}: max|diff|/max|ref| ${rel.toExponential(2)}`);
    assert.ok(rel < 2e-6, `${name}: relative error ${rel}`);
  });
}

// ---- symbolic H and W (the inference export for any image size) ----------------------------------------

test('symbolic H, W: one ViT graph (grid H/4 x W/4) matches PyTorch on all three inputs; pos-embed resize matches torch', async () => {
  const g = new Graph('vit_dynamic');
  const images = g.input('images', 'float32', ['N', vit.inChans, 'H', 'W']);
  const out = visionTransformer(new Scope(g), images, vit);
  assert.equal([...out.tokens.shape], ['N', '1+H/4*W/4', vit.embedDim]);
  assert.equal([...out.patchTokens.shape], ['N', 'H/4*W/4', vit.embedDim]);
  assert.equal([...out.clsAttention.shape], ['N', vit.numHeads, 'H/4*W/4']);
  g.output('features', out.cls);
  g.output('patch_tokens', out.patchTokens);
  g.output('attention', out.attention);
  const backbone = new Map([...values].filter(([k]) => !k.startsWith('head.')));
  for (const input of ['images', 'images_small', 'images_rect']) {
    const x = tensor(`input.${input}`);
    const res = await runGraph(g, backbone, { images: { data: x.data, shape: x.shape } });
    for (const name of ['features', 'patch_tokens', 'attention']) {
      const rel = relativeError(res.get(name)!.data, tensor(`output.${input}.${name}`).data);
      report.push(`symbolic H, W ${input}.${name}: ${rel.toExponential(2)}`);
      assert.ok(rel < TOL, `symbolic ${input}.${name}: relative error ${rel}`);
    }
  }
  // The table alone, resized in the graph at the sizes of the fixture's tables, and at its own grid (unchanged).
  const gp = new Graph('pos_dynamic');
  const img = gp.input('images', 'float32', [1, vit.inChans, 'H', 'W']);
  const pos = new Scope(gp).param('pos_embed', [1, 17, vit.embedDim], { kind: 'zeros' });
  gp.output('pos', positionEmbedding(pos, vit, 'H/4', 'W/4', img));
  const table = new Map([['pos_embed', weights.get('pos_embed')!.data]]);
  for (const [name, rows, cols] of [['pos_embed_small', 2, 2], ['pos_embed_rect', 4, 2], ['pos_embed', 4, 4]] as const) {
    const zeros = new Float32Array(vit.inChans * 16 * rows * cols);
    const res = await runGraph(gp, table, { images: { data: zeros, shape: [1, vit.inChans, 4 * rows, 4 * cols] } });
    const expected = name === 'pos_embed' ? weights.get('pos_embed')!.data : tensor(`output.${name}`).data;
    const rel = relativeError(res.get('pos')!.data, expected);
    assert.ok(name === 'pos_embed' ? rel === 0 : rel < 2e-6, `${name} in the graph: relative error ${rel}`);
  }
});

test('images whose size is not a multiple of the patch are reported with the module path', () => {
  const g = new Graph('bad');
  visionTransformer(new Scope(g).child('backbone'), g.input('images', 'float32', ['N', vit.inChans, 10, 'W']), vit);
  assert.ok(g.errors.length > 0);
  assert.match(formatError(g.errors[0]!), 'visionTransformer at backbone: expects images [B, 3, H, W] with H and W multiples of patch 4');
});

test("the +0.1 of DINO's scale factor matters: scale = out/in would miss the reference", () => {
  // 4x4 -> 2x2 along rows with scale 2/4 instead of 2.1/4; the table's patch rows, [16, D] row-major.
  const table = weights.get('pos_embed')!.data.slice(vit.embedDim);
  const resize = (scale: number) => {
    const w = bicubicResizeMatrix(4, 2, scale);
    const out = new Float64Array(4 * vit.embedDim);
    for (let r = 0; r < 2; r++) for (let c = 0; c < 2; c++) for (let a = 0; a < 4; a++) for (let b = 0; b < 4; b++)
      for (let d = 0; d < vit.embedDim; d++) out[(r * 2 + c) * vit.embedDim + d]! += w[r * 4 + a]! * w[c * 4 + b]! * table[(a * 4 + b) * vit.embedDim + d]!;
    return out;
  };
  const expected = tensor('output.pos_embed_small').data.slice(vit.embedDim);
  assert.ok(relativeError(resize(2.1 / 4), expected) < 2e-6);
  assert.ok(relativeError(resize(2 / 4), expected) > 1e-2);
});

test('report', () => {
  console.log(report.map((l) => `    ${l}`).join('\n'));
});

test.run();
