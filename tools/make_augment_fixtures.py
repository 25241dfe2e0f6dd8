#!/usr/bin/python3
"""Makes test/runtime/data/fixtures/torchvision-augment.json: torchvision's DataAugmentationDINO operations on PIL
images, on fixed crop boxes and parameters, that test/runtime/data/augment-fidelity.test.ts compares the 8-bit
pipeline (runtime/data/image-ops.ts, runtime/data/multicrop.ts) against.

Run: /usr/bin/python3 tools/make_augment_fixtures.py   (Debian: apt-get install python3-torchvision python3-pil)
Every operation is the one DINO's main_dino.py applies to a PIL image: transforms.RandomResizedCrop ->
F.resized_crop(..., BICUBIC); ColorJitter -> F.adjust_brightness / contrast / saturation / hue; RandomGrayscale ->
F.rgb_to_grayscale(img, 3); utils.GaussianBlur -> ImageFilter.GaussianBlur(radius); utils.Solarization ->
ImageOps.solarize(img); then ToTensor and Normalize. Images are stored channel-first, base64 of uint8 (float32
little-endian for normalised tensors).
"""
import base64
import json
import os

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image, ImageFilter, ImageOps
from torchvision import transforms
from torchvision.transforms import functional as F

rng = np.random.default_rng(20261207)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def natural_image(height, width):
    """Smooth gradients, blobs, edges and noise: the mix of flat and detailed regions a photo has."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.zeros((height, width, 3))
    for c in range(3):
        img[:, :, c] = rng.uniform(40, 120) + rng.uniform(-1, 1) * x + rng.uniform(-1, 1) * y
        for _ in range(5):
            cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(2, 10)
            img[:, :, c] += rng.uniform(-120, 160) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))
        img[:, :, c] += np.where(x > width * rng.uniform(0.3, 0.7), rng.uniform(-60, 60), 0)
        img[:, :, c] += rng.normal(0, 12, size=(height, width))
    # a few saturated and gray pixels: clipping, and hue's gray / s = 0 paths
    img[0, 0] = [255, 255, 255]
    img[1, 0] = [0, 0, 0]
    img[2, 0] = [90, 90, 90]
    return Image.fromarray(np.clip(np.round(img), 0, 255).astype(np.uint8), 'RGB')


def chw_bytes(img):
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return base64.b64encode(np.ascontiguousarray(arr.transpose(2, 0, 1)).tobytes()).decode()


def tensor_f32(t):
    return base64.b64encode(t.numpy().astype('<f4').tobytes()).decode()


def source_entry(img):
    return {'channels': 3, 'height': img.height, 'width': img.width, 'data': chw_bytes(img)}


small = natural_image(48, 64)
large = natural_image(75, 100)
sources = {'small': small, 'large': large}

# RandomResizedCrop's resample on fixed boxes (top, left, height, width) -> size: shrink, enlarge, mixed, whole.
crops = []
for name, img in sources.items():
    w, h = img.size
    for top, left, ch, cw, size in [(0, 0, h, w, 24), (5, 7, 30, 40, 32), (10, 3, 12, 9, 32), (2, 20, 40, 17, 16),
                                    (0, 0, h, w, h), (1, 2, h - 3, w - 5, 45), (5, 5, 3, 2, 16), (7, 1, 1, 40, 9)]:
        out = F.resized_crop(img, top, left, ch, cw, [size, size], interpolation=transforms.InterpolationMode.BICUBIC)
        crops.append({'source': name, 'box': [top, left, ch, cw], 'size': size, 'output': chw_bytes(out)})

# ColorJitter's four adjustments, grayscale, blur and solarize, each on a 48 x 36 part of the large source.
base = large.crop((30, 20, 78, 56))
ops = []
for factor in [0.6, 0.93, 1.37]:
    ops.append({'op': 'brightness', 'factor': factor, 'output': chw_bytes(F.adjust_brightness(base, factor))})
for factor in [0.6, 1.0, 1.4]:
    ops.append({'op': 'contrast', 'factor': factor, 'output': chw_bytes(F.adjust_contrast(base, factor))})
for factor in [0.8, 1.17]:
    ops.append({'op': 'saturation', 'factor': factor, 'output': chw_bytes(F.adjust_saturation(base, factor))})
for factor in [-0.1, -0.031, -0.002, 0.0, 0.05, 0.1]:
    ops.append({'op': 'hue', 'factor': factor, 'output': chw_bytes(F.adjust_hue(base, factor))})
ops.append({'op': 'grayscale', 'factor': 0, 'output': chw_bytes(F.rgb_to_grayscale(base, num_output_channels=3))})
for radius in [0.1, 0.5, 1.0, 1.53, 2.0]:
    ops.append({'op': 'blur', 'factor': radius, 'output': chw_bytes(base.filter(ImageFilter.GaussianBlur(radius=radius)))})
ops.append({'op': 'solarize', 'factor': 128, 'output': chw_bytes(ImageOps.solarize(base, threshold=128))})

# Whole views with fixed parameters, as DataAugmentationDINO composes them, through ToTensor + Normalize.
normalize = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
views = []
for spec in [
    {'box': [4, 9, 60, 70], 'size': 32, 'flip': True, 'jitter': [[3, 1, 0, 2], 1.3, 0.7, 1.1, -0.06], 'gray': False, 'blur': 1.2, 'solarize': False},
    {'box': [10, 30, 40, 45], 'size': 24, 'flip': False, 'jitter': [[1, 2, 3, 0], 0.8, 1.25, 0.9, 0.08], 'gray': True, 'blur': None, 'solarize': True},
    {'box': [0, 0, 75, 100], 'size': 40, 'flip': False, 'jitter': None, 'gray': False, 'blur': 0.4, 'solarize': False},
]:
    top, left, ch, cw = spec['box']
    img = F.resized_crop(large, top, left, ch, cw, [spec['size']] * 2, interpolation=transforms.InterpolationMode.BICUBIC)
    if spec['flip']:
        img = F.hflip(img)
    if spec['jitter'] is not None:
        order, b, c, s, hue = spec['jitter']
        for fn in order:
            img = [lambda i: F.adjust_brightness(i, b), lambda i: F.adjust_contrast(i, c),
                   lambda i: F.adjust_saturation(i, s), lambda i: F.adjust_hue(i, hue)][fn](img)
    if spec['gray']:
        img = F.rgb_to_grayscale(img, num_output_channels=3)
    if spec['blur'] is not None:
        img = img.filter(ImageFilter.GaussianBlur(radius=spec['blur']))
    if spec['solarize']:
        img = ImageOps.solarize(img)
    views.append({**spec, 'output': tensor_f32(normalize(img))})

# DINO's eval transform: Resize(short side, BICUBIC), CenterCrop, ToTensor, Normalize (224 / 256 scaled down).
evals = []
for name, resize, crop in [('large', 40, 32), ('small', 36, 28), ('large', 52, 44)]:
    t = transforms.Compose([transforms.Resize(resize, interpolation=transforms.InterpolationMode.BICUBIC),
                            transforms.CenterCrop(crop), transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    evals.append({'source': name, 'resize': resize, 'crop': crop, 'output': tensor_f32(t(sources[name]))})

out_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'runtime', 'data', 'fixtures', 'torchvision-augment.json')
with open(out_path, 'w') as f:
    json.dump({'generator': 'tools/make_augment_fixtures.py', 'pil': PIL.__version__, 'torchvision': torchvision.__version__,
               'torch': torch.__version__, 'mean': MEAN, 'std': STD,
               'sources': {k: source_entry(v) for k, v in sources.items()},
               'crops': crops, 'opsBase': {'source': 'large', 'box': [20, 30, 36, 48], 'image': source_entry(base)}, 'ops': ops, 'views': views, 'evals': evals}, f)
print('wrote', os.path.normpath(out_path), os.path.getsize(out_path), 'bytes')
