/**
 * Whole-model gradient checks (central differences along random directions through every trainable
 * parameter at once, see model-gradcheck.ts).
 *
 * Float32: GELU needs Erf, which ORT's CPU EP runs in float32 only, and Conv is float32-only
 * too. With h = 1e-3 and Richardson extrapolation the truncation error is O(h^4); the float32 round-off
 * of L (|L| ~ 1..10, relative 1e-7 over a few thousand terms) divided by 2h is ~1e-4 of a directional
 * derivative of size ~1..10, so a tolerance of 5e-3 leaves a margin of ~10x while a wrong rule (an error
 * of the size of one parameter block's contribution) is far above it.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Graph, Prng, Scope, type Tensor, add, concat, logSoftmax, mul, neg, sumAll } from '../../dsl/index.ts';
import { dinoHead, type DinoHeadConfig } from '../../models/head.ts';
import { sampleDropPathMasks, visionTransformer, type ViTConfig } from '../../models/vit.ts';
import { modelGradCheck } from './model-gradcheck.ts';
import type { Feed } from './run.ts';

const vit: ViTConfig = {
  kind: 'vit', imgSize: 8, patchSize: 4, inChans: 1, embedDim: 8, depth: 2, numHeads: 2,
  mlpRatio: 4, qkvBias: true, layerNormEps: 1e-6, dropPathRate: 0.5,
};
const head: DinoHeadConfig = { outDim: 12, hiddenDim: 16, bottleneckDim: 6, nlayers: 3, useBn: false, normLastLayer: true };

const prng = Prng.seeded(99);
const randomFeed = (shape: number[]): Feed => ({ data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => prng.normal()), shape });

/** -sum(target * log_softmax(logits / 0.1)): a DINO-like cross-entropy against fixed target rows. */
function crossEntropy(g: Graph, logits: Tensor, feeds: Record<string, Feed>): Tensor {
  const shape = logits.shape as number[];
  const t = Float32Array.from({ length: shape[0]! * shape[1]! }, () => prng.uniform());
  feeds['target'] = { data: t, shape };
  return neg(sumAll(mul(g.input('target', 'float32', shape), logSoftmax(mul(logits, 10), -1))));
}

test('ViT student (global + local crops, drop path, shared weights) + head + loss: gradients match finite differences', async () => {
  const B = 2;
  const r = await modelGradCheck({
    dtype: 'float32',
    build: (g) => {
      const s = new Scope(g);
      const feeds: Record<string, Feed> = {
        global: randomFeed([B, 1, 8, 8]),
        local: randomFeed([B, 1, 4, 4]), // 1x1 patch grid: the position table is interpolated (a MatMul)
        masks_global: { data: sampleDropPathMasks(prng, vit, B), shape: [vit.depth, 2, B] },
        masks_local: { data: sampleDropPathMasks(prng, vit, B), shape: [vit.depth, 2, B] },
      };
      const f1 = visionTransformer(s, g.input('global', 'float32', [B, 1, 8, 8]), vit, { dropPathMasks: g.input('masks_global', 'float32', [vit.depth, 2, B]) });
      const f2 = visionTransformer(s, g.input('local', 'float32', [B, 1, 4, 4]), vit, { dropPathMasks: g.input('masks_local', 'float32', [vit.depth, 2, B]) });
      const logits = dinoHead(s.child('head'), concat([f1.cls, f2.cls], 0), vit.embedDim, head).logits;
      return { y: crossEntropy(g, logits, feeds), feeds };
    },
  });
  console.log(`    ViT+head: ${r.params.length} parameter tensors, ${r.elements} elements, direction errors ${r.errors.map((e) => e.toExponential(1)).join(' ')}`);
  assert.ok(r.params.includes('pos_embed') && r.params.includes('patch_embed.proj.weight') && r.params.includes('head.last_layer.weight_v'));
  assert.not.ok(r.params.includes('head.last_layer.weight_g'), 'weight_g is frozen with norm_last_layer');
});

test('ViT patch tokens and last-block attention on a non-square crop: gradients', async () => {
  const r = await modelGradCheck({
    dtype: 'float32',
    build: (g) => {
      const feeds: Record<string, Feed> = { images: randomFeed([2, 1, 8, 4]) }; // non-square: interpolated table
      const out = visionTransformer(new Scope(g), g.input('images', 'float32', [2, 1, 8, 4]), { ...vit, dropPathRate: 0 });
      return { y: add(sumAll(mul(out.patchTokens, out.patchTokens)), sumAll(mul(out.attention, out.attention))), feeds };
    },
  });
  assert.ok(r.maxError < 5e-3);
});

test('ViT with a conv stem (two 3x3 conv + GELU layers), global + local crops + head + loss: gradients', async () => {
  const stemVit: ViTConfig = { ...vit, dropPathRate: 0, convStem: [3, 2] };
  const B = 2;
  const r = await modelGradCheck({
    dtype: 'float32',
    build: (g) => {
      const s = new Scope(g);
      const feeds: Record<string, Feed> = { global: randomFeed([B, 1, 8, 8]), local: randomFeed([B, 1, 4, 4]) };
      const f1 = visionTransformer(s, g.input('global', 'float32', [B, 1, 8, 8]), stemVit);
      const f2 = visionTransformer(s, g.input('local', 'float32', [B, 1, 4, 4]), stemVit);
      const logits = dinoHead(s.child('head'), concat([f1.cls, f2.cls], 0), stemVit.embedDim, head).logits;
      return { y: crossEntropy(g, logits, feeds), feeds };
    },
  });
  for (const name of ['patch_embed.stem.0.weight', 'patch_embed.stem.0.bias', 'patch_embed.stem.1.weight', 'patch_embed.stem.1.bias', 'patch_embed.proj.weight']) {
    assert.ok(r.params.includes(name), name);
  }
  assert.ok(r.maxError < 5e-3, `max direction error ${r.maxError}`);
});

test('head with BatchNorm1d (training mode), trainable weight_g and 2 layers: gradients', async () => {
  const cfg: DinoHeadConfig = { outDim: 10, hiddenDim: 12, bottleneckDim: 5, nlayers: 2, useBn: true, normLastLayer: false };
  const r = await modelGradCheck({
    dtype: 'float32',
    build: (g) => {
      const feeds: Record<string, Feed> = { x: randomFeed([6, 7]) };
      const logits = dinoHead(new Scope(g).child('head'), g.input('x', 'float32', [6, 7]), 7, cfg, { train: true }).logits;
      return { y: crossEntropy(g, logits, feeds), feeds };
    },
  });
  assert.ok(r.params.includes('head.last_layer.weight_g'));
  assert.ok(r.params.includes('head.mlp.1.weight'), 'BN at index 1');
  assert.ok(r.params.includes('head.mlp.3.weight'), 'last Linear at index 3 (Linear, BN, GELU, Linear)');
});

test.run();
