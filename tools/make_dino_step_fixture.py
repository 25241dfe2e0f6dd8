"""Reference fixture for three DINO training steps (main_dino.py train_one_epoch semantics) of the tiny ViT + head.

Regenerate (from the repository root, Debian's python3-torch, CPU):
    /usr/bin/python3 tools/make_dino_step_fixture.py
writes test/fixtures/ref/dino_step_ref.safetensors. Deterministic: torch.manual_seed(0), one thread, float32.

Parameter names <name> are the student MultiCropWrapper's: backbone.<ViT key> and head.<DINOHead key>.
Tensors (all float32):
  init.student.<name>, init.teacher.<name>               before step 1 (teacher = copy of student, weight_g too)
  step<s>.crops.global [2B,3,16,16], step<s>.crops.local [2B,3,8,8]   view-major: rows 0..B-1 are view 0, ...
  step<s>.teacher_output [2B,K]  step<s>.student_output [4B,K]  (logits, crop order global0, global1, local0, local1)
  step<s>.center_before [1,K]  step<s>.loss []  step<s>.center [1,K]  (center after this step's update)
  step1.grad.<name>          raw gradient of step 1 from loss.backward(), before clipping and cancelling
                             (only params with requires_grad: all but head.last_layer.weight_g)
  step<s>.student.<name>, step<s>.teacher.<name>       after the optimizer step and the teacher EMA
  step<s>.adam.exp_avg.<name>, step<s>.adam.exp_avg_sq.<name>
      for each student param that has optimizer state after step s (weight_v has none after step 1)
Metadata (JSON strings): config, schedule, clipped ({step<s>: {name: pre-clip grad norm}}), adam_steps
({step<s>: {name: per-param AdamW step count}}), torch_version, notes, script.
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
from dino_reference import (DINOLoss, MultiCropWrapper, build, cancel_gradients_last_layer,  # noqa: E402
                            clip_gradients, get_params_groups, init_random_, vit_config)
from safetensors_py import write_fixture  # noqa: E402

OUT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'fixtures', 'ref',
                        'dino_step_ref.safetensors')
BATCH = 3
CLIP_GRAD = 3.0
BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
STUDENT_TEMP = 0.1
CENTER_MOMENTUM = 0.9
SCHEDULE = [
    dict(step=1, lr=0.01, weight_decay=0.04, teacher_momentum=0.9, teacher_temp=0.04, last_layer_frozen=True),
    dict(step=2, lr=0.02, weight_decay=0.1, teacher_momentum=0.95, teacher_temp=0.05, last_layer_frozen=False),
    dict(step=3, lr=0.015, weight_decay=0.2, teacher_momentum=0.99, teacher_temp=0.06, last_layer_frozen=False),
]


def check_dino_loss_by_hand():
    """DINOLoss against explicit float64 loops, and a closed form: uniform teacher and student give log K."""
    gen = torch.Generator().manual_seed(123)
    k, batch, ncrops, t_temp = 5, 2, 3, 0.07
    student = torch.randn(ncrops * batch, k, generator=gen)
    teacher = torch.randn(2 * batch, k, generator=gen)
    center = torch.randn(1, k, generator=gen)
    loss_fn = DINOLoss(k, ncrops, STUDENT_TEMP, CENTER_MOMENTUM)
    loss_fn.center = center.clone()
    got = loss_fn(student, teacher, t_temp).item()
    s, t, c = student.double().numpy(), teacher.double().numpy(), center.double().numpy()[0]
    total, terms = 0.0, 0
    for iq in range(2):
        for v in range(ncrops):
            if v == iq:
                continue
            pair = 0.0
            for b in range(batch):
                tl = (t[iq * batch + b] - c) / t_temp
                pt = np.exp(tl - tl.max()) / np.exp(tl - tl.max()).sum()
                sl = s[v * batch + b] / STUDENT_TEMP
                log_ps = sl - (sl.max() + np.log(np.exp(sl - sl.max()).sum()))
                pair += -(pt * log_ps).sum()
            total += pair / batch
            terms += 1
    want = total / terms
    assert abs(got - want) < 1e-5, (got, want)
    want_center = c * CENTER_MOMENTUM + t.mean(0) * (1 - CENTER_MOMENTUM)
    assert np.abs(loss_fn.center.double().numpy()[0] - want_center).max() < 1e-6
    uniform = DINOLoss(k, ncrops)(torch.zeros(ncrops * batch, k), torch.zeros(2 * batch, k), t_temp).item()
    assert abs(uniform - math.log(k)) < 1e-6, uniform
    print(f'DINOLoss hand check: {got:.6f} vs {want:.6f}; uniform = log K = {uniform:.6f}')


def manual_adamw(param, grad, exp_avg, exp_avg_sq, step, lr, weight_decay):
    """torch.optim.AdamW for one param, in float64: returns new (param, exp_avg, exp_avg_sq)."""
    beta1, beta2 = BETAS
    param = param * (1 - lr * weight_decay)  # decoupled decay first, on the old param
    exp_avg = beta1 * exp_avg + (1 - beta1) * grad
    exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * grad * grad
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    denom = exp_avg_sq.sqrt() / math.sqrt(bias_correction2) + ADAM_EPS
    param = param - (lr / bias_correction1) * exp_avg / denom
    return param, exp_avg, exp_avg_sq


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    check_dino_loss_by_hand()

    config = vit_config()
    backbone, head = build(config)
    init_random_(backbone)
    init_random_(head)
    student = MultiCropWrapper(backbone, head)
    teacher = MultiCropWrapper(*build(config))
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    dino_loss = DINOLoss(config['out_dim'], ncrops=4, student_temp=STUDENT_TEMP, center_momentum=CENTER_MOMENTUM)
    groups = get_params_groups(student)
    optimizer = torch.optim.AdamW(groups, betas=BETAS, eps=ADAM_EPS)
    name_of = {id(p): n for n, p in student.named_parameters()}
    regularized = sorted(name_of[id(p)] for p in groups[0]['params'])
    not_regularized = sorted(name_of[id(p)] for p in groups[1]['params'])
    frozen_params = sorted(n for n, p in student.named_parameters() if not p.requires_grad)

    tensors = {}
    for name, p in student.named_parameters():
        tensors[f'init.student.{name}'] = p.detach().clone()
    for name, p in teacher.named_parameters():
        tensors[f'init.teacher.{name}'] = p.detach().clone()
    assert set(dict(student.named_parameters())) == set(student.state_dict()), 'state has non-parameters'

    clipped = {}
    adam_steps = {}
    for sched in SCHEDULE:
        s = sched['step']
        for i, group in enumerate(optimizer.param_groups):
            group['lr'] = sched['lr']
            if i == 0:  # only the first group is regularized
                group['weight_decay'] = sched['weight_decay']
        global_crops = torch.randn(2 * BATCH, 3, 16, 16)
        local_crops = torch.randn(2 * BATCH, 3, 8, 8)
        crops = list(global_crops.chunk(2)) + list(local_crops.chunk(2))
        tensors[f'step{s}.crops.global'] = global_crops
        tensors[f'step{s}.crops.local'] = local_crops

        teacher_output = teacher(crops[:2])
        student_output = student(crops)
        tensors[f'step{s}.center_before'] = dino_loss.center.clone()
        loss = dino_loss(student_output, teacher_output, sched['teacher_temp'])
        tensors[f'step{s}.teacher_output'] = teacher_output.detach().clone()
        tensors[f'step{s}.student_output'] = student_output.detach().clone()
        tensors[f'step{s}.loss'] = loss.detach().clone().reshape(())
        tensors[f'step{s}.center'] = dino_loss.center.clone()

        optimizer.zero_grad()
        loss.backward()
        if s == 1:  # raw gradients of one step are enough to test autodiff and keep the file small
            for name, p in student.named_parameters():
                if p.grad is not None:
                    tensors[f'step{s}.grad.{name}'] = p.grad.detach().clone()
        clipped[f'step{s}'] = clip_gradients(student, CLIP_GRAD)
        cancel_gradients_last_layer(student, sched['last_layer_frozen'])
        # what the optimizer will see, and the state before the update (for the manual AdamW check)
        before = {}
        for name, p in student.named_parameters():
            if p.grad is None:
                continue
            state = optimizer.state.get(p, {})
            before[name] = (p.detach().double().clone(), p.grad.detach().double().clone(),
                            state['exp_avg'].double().clone() if state else torch.zeros_like(p, dtype=torch.float64),
                            state['exp_avg_sq'].double().clone() if state else torch.zeros_like(p, dtype=torch.float64),
                            (float(state['step']) if state else 0.0) + 1)
        optimizer.step()

        # teacher EMA over all parameters (weight_g included), t = m * t + (1 - m) * s
        with torch.no_grad():
            m = sched['teacher_momentum']
            for (ns, ps), (nt, pt) in zip(student.named_parameters(), teacher.named_parameters()):
                assert ns == nt
                pt.data.mul_(m).add_((1 - m) * ps.detach().data)

        adam_steps[f'step{s}'] = {}
        for name, p in student.named_parameters():
            tensors[f'step{s}.student.{name}'] = p.detach().clone()
            state = optimizer.state.get(p)
            if state:
                tensors[f'step{s}.adam.exp_avg.{name}'] = state['exp_avg'].clone()
                tensors[f'step{s}.adam.exp_avg_sq.{name}'] = state['exp_avg_sq'].clone()
                adam_steps[f'step{s}'][name] = int(state['step'])
        for name, p in teacher.named_parameters():
            tensors[f'step{s}.teacher.{name}'] = p.detach().clone()

        # ---- checks of this step ----
        worst = 0.0
        for name, (p0, g, m1, m2, count) in before.items():
            wd = sched['weight_decay'] if name in regularized else 0.0
            want_p, want_m1, want_m2 = manual_adamw(p0, g, m1, m2, count, sched['lr'], wd)
            for want, got in ((want_p, tensors[f'step{s}.student.{name}']),
                              (want_m1, tensors[f'step{s}.adam.exp_avg.{name}']),
                              (want_m2, tensors[f'step{s}.adam.exp_avg_sq.{name}'])):
                worst = max(worst, (want - got.double()).abs().max().item())
        assert worst < 1e-6, f'manual AdamW mismatch {worst}'
        skipped = sorted(n for n, p in student.named_parameters() if p.requires_grad and n not in before)
        for name in skipped:  # no grad: AdamW leaves the param, its moments and its step count untouched
            prev = 'init.student' if s == 1 else f'step{s - 1}.student'
            assert torch.equal(tensors[f'step{s}.student.{name}'], tensors[f'{prev}.{name}']), name
        moved = max((tensors[f'step{s}.student.{n}'] - tensors[f'{"init" if s == 1 else f"step{s - 1}"}.student.{n}'])
                    .abs().max().item() for n in before)
        print(f'step {s}: loss {loss.item():.6f}, manual AdamW max diff {worst:.1e}, max |dparam| {moved:.4f}, '
              f'skipped {skipped}, clipped {sorted(clipped[f"step{s}"])}')

    assert any(clipped.values()), 'clipping never active: raise the lr or the init scale'
    assert 'head.last_layer.weight_v' not in adam_steps['step1']
    assert adam_steps['step3']['head.last_layer.weight_v'] == 2
    assert adam_steps['step3']['backbone.cls_token'] == 3
    w_g = [k for k in tensors if k.endswith('last_layer.weight_g')]
    assert all(torch.all(tensors[k] == 1) for k in w_g), 'weight_g must stay 1'

    metadata = {
        'config': json.dumps(dict(config, batch=BATCH, global_crops=2, global_size=16, local_crops=2,
                                  local_size=8, ncrops=4, student_temp=STUDENT_TEMP,
                                  center_momentum=CENTER_MOMENTUM, clip_grad=CLIP_GRAD, adam_betas=list(BETAS),
                                  adam_eps=ADAM_EPS, regularized=regularized, not_regularized=not_regularized,
                                  frozen=frozen_params)),
        'schedule': json.dumps(SCHEDULE),
        'clipped': json.dumps(clipped),
        'adam_steps': json.dumps(adam_steps),
        'torch_version': torch.__version__,
        'script': 'tools/make_dino_step_fixture.py',
        'notes': (
            'One step = main_dino.py train_one_epoch: set lr on both param groups and the scheduled weight decay on '
            'the regularized group (group 1 keeps weight_decay 0); teacher_output = teacher([global0, global1]) '
            '[2B,K]; student_output = student(all 4 crops) [4B,K] (backbone once per resolution run, then head on '
            'the concatenation); loss = DINOLoss with the center from before this step, then center = 0.9 * center '
            '+ 0.1 * mean over the 2B teacher logits; loss.backward(); clip_gradients per parameter: coef = '
            '3.0 / (||g||_2 + 1e-6), g *= coef if coef < 1 (metadata clipped lists the pre-clip norms; '
            'last_layer.weight_v is clipped before being cancelled at a frozen step); if last_layer_frozen, '
            'grad = None for every param named *last_layer* (weight_v; weight_g is frozen and has no grad '
            'anyway); AdamW step: params with grad None are skipped entirely (no decay, no moment update, '
            'per-param step count not advanced: weight_v has step 2 after step 3); for the others: step += 1; '
            'p *= 1 - lr * wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= lr / (1 - b1^step) * m / '
            '(sqrt(v) / sqrt(1 - b2^step) + eps); then the teacher EMA t = m t + (1 - m) s over all params in '
            'named_parameters order (weight_g included; it stays 1). Params with requires_grad False '
            '(head.last_layer.weight_g) are in no optimizer group. torch 1.13 defaults: AdamW amsgrad False, '
            'maximize False, foreach off. Gradients (step1.grad.*) are the raw backward() result.'),
    }
    write_fixture(OUT_PATH, tensors, metadata)


if __name__ == '__main__':
    main()
