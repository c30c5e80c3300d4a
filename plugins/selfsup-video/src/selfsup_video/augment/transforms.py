"""Clip-consistent spatial augmentations on ``torchvision.transforms.v2.functional``.

A clip is ``[T, C, H, W]`` float in [0, 1]. Each transform draws its random parameters ONCE per clip
from the per-sample generator the core passes in (torchvision's own parameter rules, never torch's
global RNG) and applies the deterministic ``v2.functional`` op to the whole clip, whose leading
frame dimension the ops treat as a batch: every frame gets the same crop box, flip and colour
factors, so motion between frames is left intact (a different crop per frame would add jitter that
no real camera made).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torchvision.transforms.v2 import functional as F

from selfsup.components import BuildContext

Step = Callable[[torch.Tensor, torch.Generator], torch.Tensor]  # (clip [T, C, H, W], generator) -> clip


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def coin(generator: torch.Generator, p: float) -> bool:
    """True with probability p (no draw when p is 0 or 1)."""
    return p >= 1 or (p > 0 and float(torch.rand((), generator=generator)) < p)


class ClipCrop:
    """One random resized crop box per clip (torchvision's ``RandomResizedCrop.get_params``: area
    fraction in ``scale``, log-uniform aspect ratio, 10 tries then a centre crop), resized to ``size``."""

    def __init__(self, size: int, scale: Sequence[float] = (0.3, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3)):
        self.size, self.scale, self.ratio = [size, size], tuple(scale), tuple(ratio)
        self.log_ratio = (math.log(ratio[0]), math.log(ratio[1]))

    def params(self, height: int, width: int, generator: torch.Generator) -> tuple[int, int, int, int]:
        area = height * width
        for _ in range(10):
            target = area * uniform(generator, *self.scale)
            aspect = math.exp(uniform(generator, *self.log_ratio))
            w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (), generator=generator))
                left = int(torch.randint(0, width - w + 1, (), generator=generator))
                return top, left, h, w
        in_ratio = width / height  # fallback: the largest centre crop within the ratio range
        if in_ratio < self.ratio[0]:
            w, h = width, round(width / self.ratio[0])
        elif in_ratio > self.ratio[1]:
            w, h = round(height * self.ratio[1]), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, clip: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        top, left, h, w = self.params(clip.shape[-2], clip.shape[-1], generator)
        out = F.resized_crop(clip, top, left, h, w, self.size, antialias=True)
        return out.clamp_(0, 1)  # [T, C, size, size]; kept in [0, 1] whatever the interpolation


class ClipFlip:
    def __init__(self, p: float):
        self.p = p

    def __call__(self, clip: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return F.horizontal_flip(clip) if coin(generator, self.p) else clip


class ClipColorJitter:
    """With probability p: brightness, contrast, saturation and hue factors drawn once per clip as
    torchvision's ``ColorJitter`` draws them, in a random order. Grey clips get no saturation or hue
    (their draws are still made, so seeds line up across channel counts)."""

    def __init__(self, brightness: float, contrast: float, saturation: float, hue: float, p: float = 1.0):
        self.p = p
        self.ops = [
            (op, low, high)
            for op, low, high in [
                (F.adjust_brightness, max(0.0, 1 - brightness), 1 + brightness),
                (F.adjust_contrast, max(0.0, 1 - contrast), 1 + contrast),
                (F.adjust_saturation, max(0.0, 1 - saturation), 1 + saturation),
                (F.adjust_hue, -hue, hue),
            ]
            if high > low
        ]

    def __call__(self, clip: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self.ops or not coin(generator, self.p):
            return clip
        grey = clip.shape[-3] == 1
        for k in torch.randperm(len(self.ops), generator=generator).tolist():
            op, low, high = self.ops[k]
            factor = uniform(generator, low, high)
            if grey and op in (F.adjust_saturation, F.adjust_hue):
                continue
            clip = op(clip, factor)  # [T, C, H, W]: contrast uses each frame's own mean grey, as per image
        return clip


class Compose:
    def __init__(self, steps: list[Step]):
        self.steps = steps

    def __call__(self, clip: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for step in self.steps:
            clip = step(clip, generator)
        return clip


class ClipTransform:
    """An augmentation: applies ``step(clip, generator)`` to ``sample[key]`` (``[T, C, H, W]``)."""

    def __init__(self, step: Step, key: str = "video"):
        self.step, self.key = step, key

    def __call__(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        clip = sample[self.key]
        if clip.dim() != 4:
            raise ValueError(f"{self.key!r} must be a [T, C, H, W] clip, got shape {tuple(clip.shape)}")
        return {**sample, self.key: self.step(clip, generator)}


def build_clip_crop(o: Any, context: BuildContext) -> ClipTransform:
    return ClipTransform(ClipCrop(o.size, o.scale, o.ratio), o.key)


def build_clip_flip(o: Any, context: BuildContext) -> ClipTransform:
    return ClipTransform(ClipFlip(o.p), o.key)


def build_clip_color_jitter(o: Any, context: BuildContext) -> ClipTransform:
    return ClipTransform(ClipColorJitter(o.brightness, o.contrast, o.saturation, o.hue, o.p), o.key)
