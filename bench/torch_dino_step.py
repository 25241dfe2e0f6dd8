"""The original PyTorch DINO training step on this CPU, driven step by step from stdin (bench/experiments/vs-torch.ts).

Not part of the product: a yardstick. It builds the fmnist-tiny6 student and teacher with tools/dino_reference.py
(DINO's ViT, DINOHead, MultiCropWrapper, DINOLoss, clip_gradients, cancel_gradients_last_layer, get_params_groups),
adds DINO's stochastic depth to the student (drop_path_rate 0.1, linspace over the blocks; the reference leaves it
out because its fixtures run without it), and runs main_dino.py's `train_one_epoch` body on random crops:
teacher on the 2 global crops, student on all 8, DINO loss, zero_grad, backward, clip_gradients(3.0), last layer
cancelled (DINO's first epoch, as the dino-ts bench's mid-run step has its last layer gated off), AdamW step with the
scheduled lr / weight decay set per param group, teacher EMA. Augmentation is left out on both sides.

Protocol (one line each way): `run N` -> `{"ms": [...], "cpu_ms": [...], "loss": x}` for N steps; `quit` ends.
Threads: `--threads T` sets torch.set_num_threads(T); BLAS threads come from OPENBLAS_NUM_THREADS / OMP_NUM_THREADS,
which the driver sets to T as well. Debian's python3-torch calls whatever libblas.so.3 the system selects; with the
netlib reference BLAS (Debian's default without libopenblas0) a 2048^3 MatMul runs at ~2.5 GFLOP/s, so the driver
can point LD_LIBRARY_PATH at an OpenBLAS (see vs-torch.ts) to measure PyTorch as a user with OpenBLAS would run it.

    /usr/bin/python3 bench/torch_dino_step.py [--batch 64] [--threads 2]
"""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tools'))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import dino_reference as ref  # noqa: E402


def drop_path(x, rate, training):
    """timm's per-sample stochastic depth: keep a sample's branch with probability 1 - rate, scaled by 1 / keep."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


def add_drop_path(backbone, rate):
    """Gives each block its linspace(0, rate, depth) drop rate, as DINO's VisionTransformer does."""
    depth = len(backbone.blocks)
    for i, blk in enumerate(backbone.blocks):
        blk.drop_rate = rate * i / (depth - 1) if depth > 1 else 0.0

        def forward(x, blk=blk):
            y, attn = blk.attn(blk.norm1(x))
            x = x + drop_path(y, blk.drop_rate, blk.training)
            x = x + drop_path(blk.mlp(blk.norm2(x)), blk.drop_rate, blk.training)
            return x, attn
        blk.forward = forward


def fmnist_tiny6():
    # models/presets.ts fmnistTiny(6): 28 px, patch 4, 1 channel, width 192, depth 6, 3 heads, MLP 4x; head 2048/256/4096
    return ref.vit_config(img_size=28, patch_size=4, in_chans=1, embed_dim=192, depth=6, num_heads=3, mlp_ratio=4,
                          head_hidden_dim=2048, head_bottleneck_dim=256, out_dim=4096, head_nlayers=3,
                          norm_last_layer=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--batch', type=int, default=64)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--local-crops', type=int, default=6)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cfg = fmnist_tiny6()
    student = ref.MultiCropWrapper(*ref.build(cfg))
    teacher = ref.MultiCropWrapper(*ref.build(cfg))
    add_drop_path(student.backbone, 0.1)
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    ncrops = 2 + args.local_crops
    loss_fn = ref.DINOLoss(cfg['out_dim'], ncrops, student_temp=0.1, center_momentum=0.9)
    optimizer = torch.optim.AdamW(ref.get_params_groups(student))
    b = args.batch
    crops = [torch.randn(b, 1, 28, 28) for _ in range(2)] + [torch.randn(b, 1, 12, 12) for _ in range(args.local_crops)]
    # The mid-run values of fmnist-tiny6's schedules are irrelevant to the time; these are typical ones.
    lr, wd, momentum, teacher_temp = 5e-4 * b / 256, 0.2, 0.998, 0.04

    def step():
        for i, group in enumerate(optimizer.param_groups):
            group['lr'] = lr
            if i == 0:
                group['weight_decay'] = wd
        teacher_output = teacher(crops[:2])
        student_output = student(crops)
        loss = loss_fn(student_output, teacher_output, teacher_temp)
        optimizer.zero_grad()
        loss.backward()
        ref.clip_gradients(student, 3.0)
        ref.cancel_gradients_last_layer(student, frozen=True)
        optimizer.step()
        with torch.no_grad():
            for param_q, param_k in zip(student.parameters(), teacher.parameters()):
                param_k.data.mul_(momentum).add_((1 - momentum) * param_q.detach().data)
        return loss.item()

    print(json.dumps({'ready': True, 'torch': torch.__version__, 'threads': torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == 'quit':
            break
        n = int(cmd[1])
        ms, cpu_ms, loss = [], [], math.nan
        for _ in range(n):
            t0, c0 = time.perf_counter(), time.process_time()
            loss = step()
            ms.append(1000 * (time.perf_counter() - t0))
            cpu_ms.append(1000 * (time.process_time() - c0))
        print(json.dumps({'ms': ms, 'cpu_ms': cpu_ms, 'loss': loss}), flush=True)


if __name__ == '__main__':
    main()
