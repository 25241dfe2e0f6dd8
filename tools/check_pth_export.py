#!/usr/bin/python3
"""Checks .pth files written by dino-ts (runtime/io/pth-write.ts) with real PyTorch.

Needs Debian's PyTorch (`apt-get install -y python3-torch`, run with /usr/bin/python3) or any python with torch.
test/runtime/io/pth-write.test.ts runs it when a python with torch is found, and skips with a message otherwise.

    check_pth_export.py check FILE.pth [--safetensors FILE.safetensors] [--vit] [--num-heads H]
        torch.load(FILE, weights_only=True) must return an OrderedDict of contiguous CPU tensors with
        requires_grad False. With --safetensors, every tensor must equal the safetensors file's bit for bit
        (same keys, same order). With --vit, the dict must load with load_state_dict(strict=True) into DINO's
        VisionTransformer (tools/dino_reference.py, same parameter names as vision_transformer.py), its
        architecture read from the shapes (vits.vit_small() for ViT-S/16 weights), and a forward pass must be finite.
        Prints one JSON line describing what was checked.

    check_pth_export.py reference OUT.pth
        torch.save of reference_state_dict() below: the TypeScript test rebuilds the same dict and compares
        its data.pkl and storages with torch's bytes.
"""
import argparse
import collections
import json
import math
import os
import sys
import zipfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def reference_state_dict():
    """Tensors whose values follow from their index, so the TypeScript test can build them without a fixture.
    Enough tensors that the pickle memo passes 255 (LONG_BINPUT / LONG_BINGET); every dtype the writer supports;
    a scalar, an empty tensor and a 4-d conv weight."""
    def values(n, k):
        return [((i * 37 + k * 11) % 101 - 50) / 8 for i in range(n)]

    sd = collections.OrderedDict()
    sd['cls_token'] = torch.tensor(values(4, 0), dtype=torch.float32).reshape(1, 1, 4)
    sd['patch_embed.proj.weight'] = torch.tensor(values(4 * 3 * 2 * 2, 1), dtype=torch.float32).reshape(4, 3, 2, 2)
    for b in range(40):
        sd[f'blocks.{b}.attn.qkv.weight'] = torch.tensor(values(12 * 4, b + 2), dtype=torch.float32).reshape(12, 4)
    sd['scalar'] = torch.tensor(values(1, 3)[0], dtype=torch.float32)
    sd['empty'] = torch.zeros(0, 3, dtype=torch.float32)
    sd['double'] = torch.tensor(values(5, 4), dtype=torch.float64)
    sd['long'] = torch.tensor([-3, 0, 7, 2 ** 40], dtype=torch.int64)
    sd['int'] = torch.tensor([-5, 9, 300], dtype=torch.int32)
    sd['byte'] = torch.tensor([0, 1, 255], dtype=torch.uint8)
    sd['bool'] = torch.tensor([True, False, True], dtype=torch.bool)
    sd['wide'] = torch.tensor(values(300, 5), dtype=torch.float32)
    return sd


def vit_from_shapes(sd, num_heads):
    import dino_reference as ref
    embed_dim = sd['cls_token'].shape[-1]
    patch = sd['patch_embed.proj.weight'].shape[-1]
    in_chans = sd['patch_embed.proj.weight'].shape[1]
    depth = 1 + max(int(k.split('.')[1]) for k in sd if k.startswith('blocks.'))
    grid = math.isqrt(sd['pos_embed'].shape[1] - 1)
    mlp_ratio = sd['blocks.0.mlp.fc1.weight'].shape[0] / embed_dim
    heads = num_heads or max(1, embed_dim // 64)
    if embed_dim == 384 and patch == 16 and depth == 12 and in_chans == 3 and grid == 14 and heads == 6:
        name = 'vit_small'  # vision_transformer.vit_small(patch_size=16): the same modules, so the same load
    else:
        name = f'VisionTransformer(img_size={grid * patch}, patch_size={patch}, in_chans={in_chans}, embed_dim={embed_dim}, depth={depth}, num_heads={heads}, mlp_ratio={mlp_ratio})'
    model = ref.VisionTransformer(grid * patch, patch, in_chans, embed_dim, depth, heads, mlp_ratio)
    return model, name, (in_chans, grid * patch)


def check(args):
    loaded = torch.load(args.file, map_location='cpu', weights_only=True)
    assert isinstance(loaded, collections.OrderedDict), f'torch.load returned {type(loaded).__name__}, not an OrderedDict'
    for key, t in loaded.items():
        assert isinstance(t, torch.Tensor), f'{key} is a {type(t).__name__}'
        assert t.is_contiguous() and t.device.type == 'cpu' and not t.requires_grad, f'{key}: not a plain contiguous CPU tensor'
    report = {'file': args.file, 'torch': torch.__version__, 'tensors': len(loaded), 'weights_only': True}
    with zipfile.ZipFile(args.file) as z:
        assert z.testzip() is None, 'a CRC-32 does not match'
        report['entries'] = len(z.infolist())

    if args.safetensors:
        from safetensors_py import read_safetensors
        expected, metadata = read_safetensors(args.safetensors)
        assert list(expected.keys()) == list(loaded.keys()) or sorted(expected) == sorted(loaded), \
            f'keys differ: {sorted(set(expected) ^ set(loaded))}'
        for key, t in loaded.items():
            e = np.asarray(expected[key])
            a = t.numpy()
            assert a.dtype == e.dtype and a.shape == e.shape, f'{key}: {a.dtype}{a.shape} vs {e.dtype}{e.shape}'
            assert a.tobytes() == e.tobytes(), f'{key}: values differ'
        report['bit_equal_to'] = args.safetensors
        report['safetensors_metadata'] = metadata

    if args.vit:
        model, name, (in_chans, side) = vit_from_shapes(loaded, args.num_heads)
        result = model.load_state_dict(loaded, strict=True)
        assert not result.missing_keys and not result.unexpected_keys, str(result)
        with torch.no_grad():
            features = model(torch.rand(2, in_chans, side, side, generator=torch.Generator().manual_seed(0)))
        assert torch.isfinite(features).all(), 'the forward pass is not finite'
        report['load_state_dict'] = f'{name}: strict, {len(loaded)} keys'
        report['features'] = list(features.shape)
    print(json.dumps(report))


def reference(args):
    torch.save(reference_state_dict(), args.out)
    print(json.dumps({'file': args.out, 'torch': torch.__version__}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    c = sub.add_parser('check')
    c.add_argument('file')
    c.add_argument('--safetensors')
    c.add_argument('--vit', action='store_true')
    c.add_argument('--num-heads', type=int, default=0)
    r = sub.add_parser('reference')
    r.add_argument('out')
    args = parser.parse_args()
    {'check': check, 'reference': reference}[args.command](args)


if __name__ == '__main__':
    main()
