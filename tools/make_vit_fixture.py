"""Reference fixture for the tiny ViT + DINO head forward pass.

Regenerate (from the repository root, Debian's python3-torch, CPU):
    /usr/bin/python3 tools/make_vit_fixture.py
writes test/fixtures/ref/vit_tiny_ref.safetensors. Deterministic: torch.manual_seed(0), one thread, float32.

Tensors (all float32, PyTorch layouts, Linear.weight is [out, in], Conv2d.weight is [D, C, p, p]):
  param.backbone.<ViT state_dict key>   cls_token, pos_embed, patch_embed.proj.*, blocks.<i>.*, norm.*
  param.head.<DINOHead state_dict key>  mlp.{0,2,4}.{weight,bias}, last_layer.weight_g [K,1], last_layer.weight_v
  input.images [2,3,16,16], input.images_small [2,3,8,8], input.images_rect [1,3,16,8]   (already normalised)
  output.<X>.features [N,D]  output.<X>.patch_tokens [N,P,D]  output.<X>.attention [N,heads,T,T]
  output.<X>.head [N,K]      output.pos_embed_small [1,5,D]   output.pos_embed_rect [1,9,D]
Before writing, the script checks its model against an independent functional re-statement and a float64
bicubic, and that attention rows sum to 1; it fails loudly if any check does not hold.
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep tools/ free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dino_reference import bicubic_reference, build, init_random_, vit_config  # noqa: E402
from safetensors_py import write_fixture  # noqa: E402

OUT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'ref',
                        'vit_tiny_ref.safetensors')


def functional_forward(params, x, config, pos_embed):
    """Second statement of the ViT + head maths from raw tensors, with explicit ops only (check, not fixture)."""
    eps, heads, p = config['layer_norm_eps'], config['num_heads'], config['patch_size']

    def layer_norm(t, prefix):
        mean = t.mean(-1, keepdim=True)
        var = ((t - mean) ** 2).mean(-1, keepdim=True)  # biased variance
        return (t - mean) / torch.sqrt(var + eps) * params[prefix + '.weight'] + params[prefix + '.bias']

    def linear(t, prefix):
        return t @ params[prefix + '.weight'].T + params[prefix + '.bias']

    def gelu(t):
        return 0.5 * t * (1 + torch.erf(t / math.sqrt(2)))

    batch, chans, rows, cols = x.shape
    # patchify: [B, C, R/p, p, C/p, p] -> [B, R/p, C/p, C*p*p] matching Conv2d.weight [D, C, p, p] flattened
    patches = x.reshape(batch, chans, rows // p, p, cols // p, p).permute(0, 2, 4, 1, 3, 5)
    patches = patches.reshape(batch, (rows // p) * (cols // p), chans * p * p)
    w = params['patch_embed.proj.weight'].reshape(config['embed_dim'], -1)
    tokens = patches @ w.T + params['patch_embed.proj.bias']
    tokens = torch.cat([params['cls_token'].expand(batch, 1, -1), tokens], dim=1) + pos_embed
    attn = None
    for i in range(config['depth']):
        b = f'blocks.{i}'
        h = layer_norm(tokens, b + '.norm1')
        qkv = linear(h, b + '.attn.qkv')  # [B, T, 3D], feature axis = [3, heads, head_dim]
        n_tok, dim = tokens.shape[1], tokens.shape[2]
        qkv = qkv.reshape(batch, n_tok, 3, heads, dim // heads)
        q, k, v = (qkv[:, :, j].transpose(1, 2) for j in range(3))  # [B, heads, T, hd]
        logits = q @ k.transpose(-1, -2) * (dim // heads) ** -0.5
        logits = logits - logits.max(-1, keepdim=True).values
        attn = logits.exp() / logits.exp().sum(-1, keepdim=True)
        mixed = (attn @ v).transpose(1, 2).reshape(batch, n_tok, dim)
        tokens = tokens + linear(mixed, b + '.attn.proj')
        tokens = tokens + linear(gelu(linear(layer_norm(tokens, b + '.norm2'), b + '.mlp.fc1')), b + '.mlp.fc2')
    tokens = layer_norm(tokens, 'norm')
    return tokens, attn


def functional_head(params, features):
    def gelu(t):
        return 0.5 * t * (1 + torch.erf(t / math.sqrt(2)))
    h = gelu(features @ params['mlp.0.weight'].T + params['mlp.0.bias'])
    h = gelu(h @ params['mlp.2.weight'].T + params['mlp.2.bias'])
    h = h @ params['mlp.4.weight'].T + params['mlp.4.bias']
    h = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    v, g = params['last_layer.weight_v'], params['last_layer.weight_g']
    weight = g * v / v.norm(dim=1, keepdim=True)  # per output row k: g_k * v_k / ||v_k||
    return h @ weight.T


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    config = vit_config()
    backbone, head = build(config)
    init_random_(backbone)
    init_random_(head)
    backbone.eval()
    head.eval()

    inputs = {
        'images': torch.randn(2, 3, 16, 16),
        'images_small': torch.randn(2, 3, 8, 8),
        'images_rect': torch.randn(1, 3, 16, 8),  # 4 x 2 patch grid, exercises non-square interpolation
    }
    tensors = {}
    for name, value in backbone.state_dict().items():
        tensors[f'param.backbone.{name}'] = value.clone()
    for name, value in head.state_dict().items():
        tensors[f'param.head.{name}'] = value.clone()
    assert set(dict(head.named_parameters())) == {k for k in head.state_dict()}, 'head state_dict has extras'
    for name, value in inputs.items():
        tensors[f'input.{name}'] = value

    with torch.no_grad():
        for name, x in inputs.items():
            tokens, attn = backbone.forward_all(x)
            features = tokens[:, 0]
            tensors[f'output.{name}.features'] = features
            tensors[f'output.{name}.patch_tokens'] = tokens[:, 1:]
            tensors[f'output.{name}.attention'] = attn
            tensors[f'output.{name}.head'] = head(features)
        pos_small = backbone.interpolate_pos_encoding(4, 8, 8)
        pos_rect = backbone.interpolate_pos_encoding(8, 16, 8)
        tensors['output.pos_embed_small'] = pos_small
        tensors['output.pos_embed_rect'] = pos_rect

        # ---- checks ----
        # 1. at the native 16px grid DINO uses the table as is; interpolating it with scale exactly 1 is the identity
        backbone.pos_interpolation = 'always'
        tokens_always, attn_always = backbone.forward_all(inputs['images'])
        backbone.pos_interpolation = 'dino'
        assert torch.equal(tokens_always[:, 1:], tensors['output.images.patch_tokens'])
        assert torch.equal(attn_always, tensors['output.images.attention'])
        # 2. attention rows are probability distributions
        for name in inputs:
            row_sums = tensors[f'output.{name}.attention'].sum(-1)
            assert torch.allclose(row_sums, torch.ones_like(row_sums), atol=1e-6), name
        # 3. bicubic against a float64 restatement with DINO's scale factors (+0.1 offset)
        table = backbone.pos_embed[0, 1:].double().reshape(4, 4, -1).permute(2, 0, 1).numpy()
        for pos, grid_rows, grid_cols in ((pos_small, 2, 2), (pos_rect, 4, 2)):
            ref = bicubic_reference(table, grid_rows, grid_cols, (grid_rows + 0.1) / 4, (grid_cols + 0.1) / 4)
            ref = ref.transpose(1, 2, 0).reshape(-1, table.shape[0])
            err = np.abs(pos[0, 1:].numpy() - ref).max()
            assert err < 1e-5, f'bicubic mismatch {err}'
            assert torch.equal(pos[0, 0], backbone.pos_embed[0, 0])
            # the offset matters: sampling with out/in scale (no +0.1) would give different values
            plain = bicubic_reference(table, grid_rows, grid_cols, grid_rows / 4, grid_cols / 4)
            plain = plain.transpose(1, 2, 0).reshape(-1, table.shape[0])
            print(f'bicubic {grid_rows}x{grid_cols}: max |torch - float64 ref| = {err:.2e}; '
                  f'max |dino - (scale out/in)| = {np.abs(ref - plain).max():.3f}')
        # 4. independent functional forward (explicit LayerNorm, erf GELU, softmax, weight norm)
        bparams = {k: v.double() for k, v in backbone.state_dict().items()}
        hparams = {k: v.double() for k, v in head.state_dict().items()}
        worst = 0.0
        for name, x in inputs.items():
            pos = backbone.interpolate_pos_encoding((x.shape[2] // 4) * (x.shape[3] // 4), x.shape[2], x.shape[3])
            tokens, attn = functional_forward(bparams, x.double(), config, pos.double())
            logits = functional_head(hparams, tokens[:, 0])
            for got, want in ((tokens[:, 0], tensors[f'output.{name}.features']),
                              (tokens[:, 1:], tensors[f'output.{name}.patch_tokens']),
                              (attn, tensors[f'output.{name}.attention']),
                              (logits, tensors[f'output.{name}.head'])):
                worst = max(worst, (got - want.double()).abs().max().item())
        print(f'functional float64 forward vs module float32: max abs diff {worst:.2e}')
        assert worst < 1e-4, worst
        # 5. torch's weight_norm is g * v / ||v|| per output row
        v, g = head.last_layer.weight_v, head.last_layer.weight_g
        assert torch.allclose(head.last_layer.weight, g * v / v.norm(dim=1, keepdim=True), atol=1e-7)

    metadata = {
        'config': json.dumps(config),
        'torch_version': torch.__version__,
        'script': 'tools/make_vit_fixture.py',
        'notes': (
            'Forward in eval mode, float32, CPU. features = final LayerNorm output at CLS; patch_tokens = final '
            'LayerNorm output at the patch tokens (row-major patch order); attention = softmax(q k^T * '
            'head_dim^-0.5) of the last block, computed from norm1 of that block input (get_last_selfattention). '
            'Position embedding: the table is used as is when the crop has the native patch count and is square; '
            'otherwise the 4x4 patch table [1,D,4,4] is resized with F.interpolate(mode=bicubic, align_corners='
            'False, scale_factor=((H/p+0.1)/4, (W/p+0.1)/4)) with recompute_scale_factor unset, so torch uses the '
            'given scale in src = (dst+0.5)/scale - 0.5 (no clamping of src), taps floor(src)-1..+2 clamped to '
            'the border, cubic convolution A=-0.75; output size floor(in*scale). CLS position row is kept. '
            'pos_embed_small is the 2x2 result (8x8 crop), pos_embed_rect the 4x2 result (16x8 crop: rows are '
            'resampled too, scale 4.1/4, since the original only skips when H == W). head = DINOHead on features: '
            'Linear GELU(erf) Linear GELU Linear, x / max(||x||_2, 1e-12), then x @ W^T with W[k] = g[k] * v[k] / '
            '||v[k]||_2 (torch.nn.utils.weight_norm, dim=0).'),
    }
    write_fixture(OUT_PATH, tensors, metadata)


if __name__ == '__main__':
    main()
