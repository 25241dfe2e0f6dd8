"""Compact PyTorch reference of DINO's ViT, DINOHead, MultiCropWrapper, DINOLoss and training-step helpers.

Written after facebookresearch/dino (vision_transformer.py, main_dino.py, utils.py) to reproduce its maths exactly;
used only by the fixture scripts in tools/ (run with Debian's /usr/bin/python3 and python3-torch).

Deviations from the original, none of which changes a number:
- no dropout / stochastic depth modules (all rates are 0 in the fixtures) and no classifier head (Identity in DINO);
- each Block returns (x, attn) instead of a return_attention flag; `forward_all` gives tokens and last attention;
- the original names the image dims `w, h = x.shape[2:]` (really height, width); here they are `rows, cols`;
- DINOLoss takes the teacher temperature per call (the fixture stores one per step) instead of an epoch table;
- DINOLoss.update_center has no dist.all_reduce (one process: the world size is 1);
- clip_gradients returns {name: pre-clip norm} of the clipped params (the original returns every norm);
- cancel_gradients_last_layer takes a `frozen` flag (the original compares epoch with freeze_last_layer);
- parameter init is random non-trivial values (init_random_), not DINO's trunc-normal init.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

LAYER_NORM_EPS = 1e-6


class PatchEmbed(nn.Module):
    def __init__(self, patch_size, in_chans, embed_dim):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        # [B, C, H, W] -> [B, D, H/p, W/p] -> [B, (H/p)*(W/p), D], patches in row-major order
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        batch, tokens, dim = x.shape
        # qkv feature axis is laid out [3, heads, head_dim]
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj(out), attn


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact (erf) GELU
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        y, attn = self.attn(self.norm1(x))
        x = x + y
        x = x + self.mlp(self.norm2(x))
        return x, attn


class VisionTransformer(nn.Module):
    def __init__(self, img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio):
        super().__init__()
        self.embed_dim = embed_dim
        num_patches = (img_size // patch_size) ** 2
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)
        # test hook: 'dino' (the original's rule) or 'always' (interpolate even at the native grid, scale exactly 1)
        self.pos_interpolation = 'dino'

    def interpolate_pos_encoding(self, npatch, rows, cols):
        """DINO's rule: the stored table unless the crop's patch count or aspect differs; else bicubic resize of
        the sqrt(N) x sqrt(N) grid with scale_factor ((rows/p + 0.1)/sqrt(N), (cols/p + 0.1)/sqrt(N)).
        The given scale factors (not out/in) enter torch's source-index formula, so the +0.1 shifts the samples."""
        n_table = self.pos_embed.shape[1] - 1
        side = int(math.sqrt(n_table))
        if self.pos_interpolation == 'always':
            grid_rows, grid_cols = rows // self.patch_embed.patch_size, cols // self.patch_embed.patch_size
            assert (grid_rows, grid_cols) == (side, side), "'always' is only for the native grid"
            scale = (1.0, 1.0)
        else:
            if npatch == n_table and rows == cols:
                return self.pos_embed
            grid_rows = rows // self.patch_embed.patch_size + 0.1
            grid_cols = cols // self.patch_embed.patch_size + 0.1
            scale = (grid_rows / math.sqrt(n_table), grid_cols / math.sqrt(n_table))
        cls_pos = self.pos_embed[:, 0]
        dim = self.pos_embed.shape[-1]
        grid = self.pos_embed[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)  # [1, D, side, side]
        grid = F.interpolate(grid, scale_factor=scale, mode='bicubic')  # align_corners=False
        assert grid.shape[-2:] == (int(grid_rows), int(grid_cols)), grid.shape
        patch_pos = grid.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((cls_pos.unsqueeze(0), patch_pos), dim=1)

    def prepare_tokens(self, x):
        batch, _, rows, cols = x.shape
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(batch, -1, -1), x), dim=1)
        return x + self.interpolate_pos_encoding(x.shape[1] - 1, rows, cols)

    def forward_all(self, x):
        """Returns (final-norm tokens [B, 1+P, D], last block's attention probabilities [B, heads, T, T])."""
        x = self.prepare_tokens(x)
        attn = None
        for block in self.blocks:
            x, attn = block(x)
        return self.norm(x), attn

    def forward(self, x):
        return self.forward_all(x)[0][:, 0]


class DINOHead(nn.Module):
    """Linear GELU Linear GELU Linear, L2-normalise, weight-normed Linear(bottleneck, K, bias=False).
    last_layer uses torch.nn.utils.weight_norm (dim=0) as DINO does: weight = g * v / ||v|| per output row,
    with parameters weight_g [K, 1] (filled with 1, frozen when norm_last_layer) and weight_v [K, bottleneck]."""

    def __init__(self, in_dim, out_dim, hidden_dim, bottleneck_dim, nlayers=3, norm_last_layer=True):
        super().__init__()
        assert nlayers >= 2
        layers = [nn.Linear(in_dim, hidden_dim), nn.GELU()]
        for _ in range(nlayers - 2):
            layers += [nn.Linear(hidden_dim, hidden_dim), nn.GELU()]
        layers.append(nn.Linear(hidden_dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        if norm_last_layer:
            self.last_layer.weight_g.requires_grad = False

    def forward(self, x):
        x = F.normalize(self.mlp(x), dim=-1, p=2)  # x / max(||x||, 1e-12)
        return self.last_layer(x)


class MultiCropWrapper(nn.Module):
    """Backbone once per run of consecutive same-resolution crops, outputs concatenated in crop order, then head."""

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, crops):
        features, start = [], 0
        while start < len(crops):
            end = start
            while end < len(crops) and crops[end].shape[-1] == crops[start].shape[-1]:
                end += 1
            features.append(self.backbone(torch.cat(crops[start:end])))
            start = end
        return self.head(torch.cat(features))


class DINOLoss(nn.Module):
    def __init__(self, out_dim, ncrops, student_temp=0.1, center_momentum=0.9):
        super().__init__()
        self.ncrops = ncrops
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer('center', torch.zeros(1, out_dim))

    def forward(self, student_output, teacher_output, teacher_temp):
        student_chunks = (student_output / self.student_temp).chunk(self.ncrops)
        teacher_probs = F.softmax((teacher_output - self.center) / teacher_temp, dim=-1).detach().chunk(2)
        total, terms = 0, 0
        for iq, q in enumerate(teacher_probs):
            for v, s in enumerate(student_chunks):
                if v == iq:
                    continue
                total = total + torch.sum(-q * F.log_softmax(s, dim=-1), dim=-1).mean()
                terms += 1
        total = total / terms
        self.update_center(teacher_output)  # after the loss, from this step's teacher logits
        return total

    @torch.no_grad()
    def update_center(self, teacher_output):
        batch_center = torch.sum(teacher_output, dim=0, keepdim=True) / len(teacher_output)
        self.center = self.center * self.center_momentum + batch_center * (1 - self.center_momentum)


def clip_gradients(model, clip):
    """Per-parameter: coef = clip / (||g||_2 + 1e-6); g *= coef when coef < 1. Returns {name: norm} of clipped."""
    clipped = {}
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        norm = p.grad.data.norm(2)
        coef = clip / (norm + 1e-6)
        if coef < 1:
            p.grad.data.mul_(coef)
            clipped[name] = float(norm)
    return clipped


def cancel_gradients_last_layer(model, frozen):
    if not frozen:
        return
    for name, p in model.named_parameters():
        if 'last_layer' in name:
            p.grad = None


def get_params_groups(model):
    """DINO's two groups: [regularized (ndim > 1 and not *.bias), not regularized (weight_decay 0)], trainable only."""
    regularized, not_regularized = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.endswith('.bias') or p.ndim == 1:
            not_regularized.append(p)
        else:
            regularized.append(p)
    return [{'params': regularized}, {'params': not_regularized, 'weight_decay': 0.0}]


@torch.no_grad()
def init_random_(model, generator=None):
    """Random non-trivial values for every parameter (fixtures load them; DINO's init is irrelevant here):
    Linear/Conv weights N(0, 0.2^2), biases N(0, 0.1^2), LayerNorm weight 1 + N(0, 0.1^2), LayerNorm bias
    N(0, 0.1^2), cls_token and pos_embed N(0, 0.5^2), weight_v N(0, 0.2^2), weight_g = 1."""
    layer_norm_weights = {f'{prefix}.weight' for prefix, module in model.named_modules()
                          if isinstance(module, nn.LayerNorm)}
    for name, p in model.named_parameters():
        if name.endswith('weight_g'):
            p.fill_(1.0)
        elif name in layer_norm_weights:
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=generator))
        elif name.endswith('.bias'):
            p.copy_(0.1 * torch.randn(p.shape, generator=generator))
        elif name.split('.')[-1] in ('pos_embed', 'cls_token'):
            p.copy_(0.5 * torch.randn(p.shape, generator=generator))
        else:
            p.copy_(0.2 * torch.randn(p.shape, generator=generator))


def vit_config(img_size=16, patch_size=4, in_chans=3, embed_dim=16, depth=2, num_heads=2, mlp_ratio=4,
               head_hidden_dim=32, head_bottleneck_dim=8, out_dim=24, head_nlayers=3, norm_last_layer=True):
    return dict(img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim, depth=depth,
                num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=True, layer_norm_eps=LAYER_NORM_EPS,
                head_hidden_dim=head_hidden_dim, head_bottleneck_dim=head_bottleneck_dim, out_dim=out_dim,
                head_nlayers=head_nlayers, norm_last_layer=norm_last_layer, drop_path_rate=0.0)


def build(config):
    backbone = VisionTransformer(config['img_size'], config['patch_size'], config['in_chans'], config['embed_dim'],
                                 config['depth'], config['num_heads'], config['mlp_ratio'])
    head = DINOHead(config['embed_dim'], config['out_dim'], config['head_hidden_dim'],
                    config['head_bottleneck_dim'], config['head_nlayers'], config['norm_last_layer'])
    return backbone, head


def bicubic_reference(grid, out_rows, out_cols, scale_rows, scale_cols, a=-0.75):
    """Plain float64 re-statement of torch's bicubic (align_corners=False) for one [C, H, W] numpy grid:
    src = (dst + 0.5) / scale - 0.5 (not clamped), i = floor(src), t = src - i, taps i-1..i+2 with the
    cubic-convolution kernel (A = -0.75), tap indices clamped to [0, size-1]."""
    import numpy as np

    def weights(t):
        def near(x):  # |x| <= 1
            return ((a + 2) * x - (a + 3)) * x * x + 1

        def far(x):  # 1 < |x| < 2
            return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
        return [far(t + 1), near(t), near(1 - t), far(2 - t)]

    channels, rows, cols = grid.shape
    out = np.zeros((channels, out_rows, out_cols))
    for r in range(out_rows):
        src_r = (r + 0.5) / scale_rows - 0.5
        ir = math.floor(src_r)
        wr = weights(src_r - ir)
        for c in range(out_cols):
            src_c = (c + 0.5) / scale_cols - 0.5
            ic = math.floor(src_c)
            wc = weights(src_c - ic)
            acc = np.zeros(channels)
            for i in range(4):
                rr = min(max(ir - 1 + i, 0), rows - 1)
                for j in range(4):
                    cc = min(max(ic - 1 + j, 0), cols - 1)
                    acc += wr[i] * wc[j] * grid[:, rr, cc]
            out[:, r, c] = acc
    return out
