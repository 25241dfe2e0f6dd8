#!/usr/bin/python3
"""The anchor for bench/augment-vs-torchvision.ts (not part of the product): DINO's DataAugmentationDINO with
PIL decoding, as main_dino.py defines it, timed in CPU seconds on one thread.

Run by the bench as a long-lived process: it reads lines `run <listfile> <first> <count> <seed>` (decode and
augment) or `decode <listfile> <first> <count> <seed>` (decode only) on stdin and answers each with one JSON line
{"cpu_s": ..., "images": ...}; `quit` ends it. Needs Debian's python3-torchvision.
"""
import json
import random
import sys
import time

import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision import transforms
from torchvision.transforms import InterpolationMode

torch.set_num_threads(1)


class GaussianBlur:
    """DINO's utils.GaussianBlur: with probability p, PIL's GaussianBlur of radius uniform in [0.1, 2]."""

    def __init__(self, p=0.5, radius_min=0.1, radius_max=2.0):
        self.prob, self.radius_min, self.radius_max = p, radius_min, radius_max

    def __call__(self, img):
        if random.random() > self.prob:
            return img
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(self.radius_min, self.radius_max)))


class Solarization:
    """DINO's utils.Solarization: with probability p, ImageOps.solarize (threshold 128)."""

    def __init__(self, p):
        self.p = p

    def __call__(self, img):
        return ImageOps.solarize(img) if random.random() < self.p else img


class DataAugmentationDINO:
    def __init__(self, global_crops_scale=(0.4, 1.0), local_crops_scale=(0.05, 0.4), local_crops_number=8):
        flip_and_color_jitter = transforms.Compose([
            transforms.RandomHorizontalFlip(p=0.5),
            transforms.RandomApply([transforms.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8),
            transforms.RandomGrayscale(p=0.2),
        ])
        normalize = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
        bicubic = InterpolationMode.BICUBIC
        self.global_transfo1 = transforms.Compose([
            transforms.RandomResizedCrop(224, scale=global_crops_scale, interpolation=bicubic),
            flip_and_color_jitter, GaussianBlur(1.0), normalize])
        self.global_transfo2 = transforms.Compose([
            transforms.RandomResizedCrop(224, scale=global_crops_scale, interpolation=bicubic),
            flip_and_color_jitter, GaussianBlur(0.1), Solarization(0.2), normalize])
        self.local_crops_number = local_crops_number
        self.local_transfo = transforms.Compose([
            transforms.RandomResizedCrop(96, scale=local_crops_scale, interpolation=bicubic),
            flip_and_color_jitter, GaussianBlur(p=0.5), normalize])

    def __call__(self, image):
        crops = [self.global_transfo1(image), self.global_transfo2(image)]
        for _ in range(self.local_crops_number):
            crops.append(self.local_transfo(image))
        return crops


def pil_loader(path):
    """torchvision ImageFolder's loader."""
    with open(path, 'rb') as f:
        img = Image.open(f)
        return img.convert('RGB')


augment = DataAugmentationDINO()
lists = {}
for line in sys.stdin:
    words = line.split()
    if not words or words[0] == 'quit':
        break
    mode, list_file, first, count, seed = words
    if list_file not in lists:
        with open(list_file) as f:
            lists[list_file] = [p for p in f.read().splitlines() if p]
    paths = lists[list_file][int(first):int(first) + int(count)]
    random.seed(int(seed))
    torch.manual_seed(int(seed))
    start = time.process_time()
    for path in paths:
        image = pil_loader(path)
        if mode == 'run':
            augment(image)
    cpu = time.process_time() - start
    print(json.dumps({'cpu_s': cpu, 'images': len(paths)}), flush=True)
