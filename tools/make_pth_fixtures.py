#!/usr/bin/python3
"""Build the committed .pth / safetensors fixtures in test/fixtures/io/ for runtime/io tests.

Regenerate (needs Debian's PyTorch, not the pyenv python on PATH):
    apt-get update && apt-get install -y python3-torch
    /usr/bin/python3 tools/make_pth_fixtures.py

Writes, with a fixed torch seed (byte-identical on every run for a given torch build, except
legacy_format.pth, whose storage keys are memory addresses; fixtures were made with torch 1.13.0a0):
  full_checkpoint.pth      a DINO-style training checkpoint: student (DDP `module.` prefix), teacher,
                           AdamW optimizer state, epoch, argparse.Namespace args, dino_loss center,
                           plus `extra_dtypes` (half, bfloat16, bool, uint8, int32, Python scalars, bytes)
  backbone_only.pth        a plain backbone state dict, keys without prefix (like dino_deitsmall16_pretrain.pth)
  backbone_deflated.pth    backbone_only.pth re-zipped with deflate compression (torch itself writes stored entries)
  legacy_format.pth        backbone_only state saved with the legacy (pre-1.6, non-zip) serialization
  expected.safetensors     every tensor above, contiguous, half/bfloat16 widened to float32; written by the
                           hand-rolled writer below (independent of the TypeScript writer)
  half_dtypes.safetensors  F16 and BF16 tensors with their float32 values, and a misaligned F32 tensor
  backbone_protocol4.pth   backbone_only saved with pickle_protocol=4 (FRAME, MEMOIZE, STACK_GLOBAL, ...)
  values_protocol2.pkl     plain pickles (no torch) of python_values() below, for the pickle VM tests
  values_protocol4.pkl
No other packages are used: the safetensors format is written by hand.
"""

import argparse
import collections
import json
import os
import pickle
import struct
import zipfile

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'io')

SAFETENSORS_DTYPE = {
    torch.float32: 'F32',
    torch.float64: 'F64',
    torch.int64: 'I64',
    torch.int32: 'I32',
    torch.uint8: 'U8',
    torch.bool: 'BOOL',
    torch.float16: 'F16',
    torch.bfloat16: 'BF16',
}


def raw_bytes(t):
    """Contiguous little-endian bytes of a tensor (this script runs on little-endian hosts)."""
    t = t.detach().contiguous()
    if t.dtype in (torch.float16, torch.bfloat16):
        return t.view(torch.int16).numpy().tobytes()
    if t.dtype == torch.bool:
        return t.to(torch.uint8).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors, metadata=None):
    """Header entries and data in insertion order (deliberately not sorted by alignment)."""
    header = {}
    if metadata:
        header['__metadata__'] = metadata
    chunks = []
    offset = 0
    for name, t in tensors.items():
        data = raw_bytes(t)
        header[name] = {'dtype': SAFETENSORS_DTYPE[t.dtype], 'shape': list(t.shape), 'data_offsets': [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(',', ':')).encode('utf-8')
    text += b' ' * (-len(text) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for c in chunks:
            f.write(c)


def state_dict(pairs):
    """An OrderedDict carrying `_metadata`, as nn.Module.state_dict() returns."""
    sd = collections.OrderedDict(pairs)
    sd._metadata = collections.OrderedDict([('', {'version': 1})])
    return sd


def backbone_tensors(scale):
    g = lambda *shape: torch.randn(*shape) * scale
    fused_qkv = g(24, 9)  # weight and bias share one storage, both non-contiguous views
    fc1_base = g(8, 16)
    proj_base = g(8, 16)
    return [
        ('cls_token', g(1, 1, 8)),
        ('pos_embed', g(1, 5, 8)),
        ('patch_embed.proj.weight', g(8, 1, 2, 2)),
        ('patch_embed.proj.bias', g(8)),
        ('blocks.0.norm1.weight', torch.ones(8) + g(8) * 0.1),
        ('blocks.0.attn.qkv.weight', fused_qkv[:, :8]),  # stride (9, 1): rows not packed
        ('blocks.0.attn.qkv.bias', fused_qkv[:, 8]),  # stride (9,), storage offset 8
        ('blocks.0.attn.proj.weight', proj_base[:, ::2]),  # stride (16, 2)
        ('blocks.0.mlp.fc1.weight', fc1_base.t()),  # transposed view saved as-is: stride (1, 16)
        ('norm.weight', g(8).double()),  # float64
        ('position_ids', torch.tensor([0, -5, 2**40 + 1, 2**62 + 3], dtype=torch.int64)),  # beyond 2^53
        ('num_batches_tracked', torch.tensor(7, dtype=torch.int64)),  # 0-d tensor
    ]


def head_tensors(scale):
    g = lambda *shape: torch.randn(*shape) * scale
    return [
        ('mlp.0.weight', g(16, 8)),
        ('mlp.0.bias', g(16)),
        ('mlp.2.weight', g(4, 16)),
        ('mlp.2.bias', g(4)),
        ('last_layer.weight_g', torch.ones(6, 1)),
        ('last_layer.weight_v', g(6, 4)),
    ]


def python_values():
    """Python values the checkpoint pickles may hold; test/runtime/io/pickle.test.ts spells out the same."""
    shared = [7, 'seven']
    return {
        'ints': [0, 255, 256, 65535, 65536, -1, 2**31 - 1, -(2**31), 2**53, 2**63, -(2**100)],
        'floats': [1.5, -0.0, 1e300, float('inf')],
        'text': 'h\u00e9llo \u2603',
        'long_text': 'x' * 300,
        'bytes': b'\x00\xff\x10',
        'set': {1, 2},
        'frozenset': frozenset({3}),
        'tuple': (1, (2, 3), ()),
        'nested': {'a': [None, True, False], 5: 'int key'},
        'shared': [shared, shared],
        'ns': argparse.Namespace(x=1, name='n'),
        'ordered': collections.OrderedDict([('z', 1), ('a', 2)]),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(20240601)

    student_backbone = backbone_tensors(1.0)
    student_head = head_tensors(1.0)
    teacher_backbone = backbone_tensors(0.5)
    teacher_head = head_tensors(0.5)

    student = state_dict(
        [('module.backbone.' + k, v) for k, v in student_backbone] + [('module.head.' + k, v) for k, v in student_head]
    )
    teacher = state_dict([('backbone.' + k, v) for k, v in teacher_backbone] + [('head.' + k, v) for k, v in teacher_head])

    # A real AdamW state after two steps on two small parameters.
    params = [torch.nn.Parameter(torch.randn(3, 2)), torch.nn.Parameter(torch.randn(3))]
    optimizer = torch.optim.AdamW(params, lr=0.0005, weight_decay=0.04)
    for _ in range(2):
        optimizer.zero_grad()
        sum((p * p).sum() for p in params).backward()
        optimizer.step()

    dino_loss = state_dict([('center', torch.randn(1, 6))])

    half = torch.tensor([[1.0, -2.5], [65504.0, 6e-8], [float('inf'), -0.0]], dtype=torch.float16)
    extra_dtypes = {
        'half': half,
        'bfloat16': torch.tensor([1.0, -3.140625, 1e30, -1e-30, float('-inf')], dtype=torch.bfloat16),
        'bool': torch.tensor([True, False, True]),
        'uint8': torch.tensor([0, 255, 7], dtype=torch.uint8),
        'int32': torch.tensor([-1, 2**31 - 1, -(2**31)], dtype=torch.int32),
        'big_int': 2**70,
        'neg_int': -300,
        'float': 1.5,
        'tuple': (1, 'a', None, True),
        'bytes': b'\x00\x01\xff',
        'list': [1, 2.5, 'three'],
    }

    checkpoint = {
        'student': student,
        'teacher': teacher,
        'optimizer': optimizer.state_dict(),
        'epoch': 3,
        'args': argparse.Namespace(arch='vit_tiny', lr=0.0005, patch_size=2, out_dim=6, use_fp16=False, local_crops_scale=(0.05, 0.4)),
        'dino_loss': dino_loss,
        'extra_dtypes': extra_dtypes,
    }
    torch.save(checkpoint, os.path.join(OUT, 'full_checkpoint.pth'))

    backbone_only = state_dict([(k, v) for k, v in student_backbone])
    torch.save(backbone_only, os.path.join(OUT, 'backbone_only.pth'))
    torch.save(backbone_only, os.path.join(OUT, 'legacy_format.pth'), _use_new_zipfile_serialization=False)

    torch.save(backbone_only, os.path.join(OUT, 'backbone_protocol4.pth'), pickle_protocol=4)
    for protocol in (2, 4):
        with open(os.path.join(OUT, 'values_protocol%d.pkl' % protocol), 'wb') as f:
            pickle.dump(python_values(), f, protocol=protocol)

    with zipfile.ZipFile(os.path.join(OUT, 'backbone_only.pth')) as src, zipfile.ZipFile(
        os.path.join(OUT, 'backbone_deflated.pth'), 'w', compression=zipfile.ZIP_DEFLATED
    ) as dst:
        for info in src.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))  # fixed: reproducible bytes
            entry.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(entry, src.read(info.filename))

    # Check that torch reads back what we saved, then record the expected values.
    loaded = torch.load(os.path.join(OUT, 'full_checkpoint.pth'))
    for k, v in student.items():
        assert torch.equal(loaded['student'][k], v), k

    expected = collections.OrderedDict()
    widen = lambda t: t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
    for k, v in student.items():
        expected['full/student/' + k] = v
    for k, v in teacher.items():
        expected['full/teacher/' + k] = v
    for i, s in optimizer.state_dict()['state'].items():
        for k, v in s.items():
            expected['full/optimizer/state/%d/%s' % (i, k)] = v
    expected['full/dino_loss/center'] = dino_loss['center']
    for k, v in extra_dtypes.items():
        if torch.is_tensor(v):
            expected['full/extra_dtypes/' + k] = widen(v)
    for k, v in backbone_only.items():
        expected['backbone_only/' + k] = v
    write_safetensors(
        os.path.join(OUT, 'expected.safetensors'),
        expected,
        {'made_by': 'tools/make_pth_fixtures.py', 'torch': torch.__version__},
    )

    write_safetensors(
        os.path.join(OUT, 'half_dtypes.safetensors'),
        collections.OrderedDict(
            [
                ('flags', torch.tensor([True, False, True])),  # 3 bytes: the next tensor starts misaligned
                ('misaligned_f32', torch.tensor([1.5, -2.25, 3.0e-3])),
                ('f16', half),
                ('f16_as_f32', half.float()),
                ('bf16', extra_dtypes['bfloat16']),
                ('bf16_as_f32', extra_dtypes['bfloat16'].float()),
            ]
        ),
        {'note': 'F16/BF16 read test'},
    )
    for name in sorted(os.listdir(OUT)):
        print('%-26s %6d bytes' % (name, os.path.getsize(os.path.join(OUT, name))))


if __name__ == '__main__':
    main()
