"""Multi-view (SimCLR) and multi-crop (SwAV) generators with size-aware defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torchvision.transforms.v2 import functional as F

from selfsup.components import BuildContext
from selfsup_vision.augment.transforms import (
    Compose,
    GaussianBlur,
    Grayscale,
    HorizontalFlip,
    ImageTransform,
    RandomResizedCrop,
    Solarize,
    color_jitter,
)


@dataclass(frozen=True)
class Preset:
    crop_scale: tuple[float, float]
    local_scale: tuple[float, float]
    flip: float
    color_jitter: float
    color_jitter_p: float
    grayscale: float
    blur: float
    solarize: float


# "small": 8-32 px images (digits, CIFAR); "photo": SimCLR's ImageNet augmentation.
PRESETS = {
    "small": Preset((0.3, 1.0), (0.2, 0.5), 0.5, 0.5, 0.8, 0.2, 0.0, 0.0),
    "photo": Preset((0.08, 1.0), (0.05, 0.14), 0.5, 1.0, 0.8, 0.2, 0.5, 0.0),
}


def preset_for(o: Any, size: int) -> Preset:
    name = o.preset if o.preset != "auto" else ("small" if size <= 64 else "photo")
    return PRESETS[name]


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def view_transform(o: Any, size: int, scale: tuple[float, float] | None, *, local: bool = False) -> ImageTransform:
    """One view: random resized crop -> flip -> colour jitter -> grayscale -> blur -> solarize -> normalize."""
    p = preset_for(o, size)
    scale = _pick(scale, p.local_scale if local else p.crop_scale)
    flip, s = _pick(o.flip, p.flip), _pick(o.color_jitter, p.color_jitter)
    jitter_p, gray = _pick(o.color_jitter_p, p.color_jitter_p), _pick(o.grayscale, p.grayscale)
    blur, solarize = _pick(o.blur, p.blur), _pick(o.solarize, p.solarize)

    steps: list[Any] = [RandomResizedCrop(size, scale)]
    if flip:
        steps.append(HorizontalFlip(flip))
    if s and jitter_p:
        steps.append(color_jitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=jitter_p))
    if gray:
        steps.append(Grayscale(gray))
    if blur:
        steps.append(GaussianBlur(None, (0.1, 2.0), blur))
    if solarize:
        steps.append(Solarize(0.5, solarize))
    if o.mean is not None:
        mean, std = o.mean, o.std or [1.0] * len(o.mean)
        steps.append(lambda x, generator: F.normalize(x, mean, std))
    return ImageTransform(Compose(steps), o.key)


class MultiView:
    """``views: [V, C, size, size]``, each view augmented independently."""

    def __init__(self, o: Any):
        self.views, self.key = o.views, o.key
        self.transform = view_transform(o, o.size, o.crop_scale)

    def __call__(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        image = sample[self.key]
        views = torch.stack([self.transform.apply(image, generator) for _ in range(self.views)])
        return {**sample, "views": views}


class MultiCrop:
    """``global_views: [G, C, gs, gs]`` and ``local_views: [L, C, ls, ls]``."""

    def __init__(self, o: Any):
        self.o, self.key = o, o.key
        self.global_t = view_transform(o, o.global_size, o.global_scale)
        self.local_t = view_transform(o, o.local_size, o.local_scale, local=True)

    def __call__(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        image, o = sample[self.key], self.o
        g = torch.stack([self.global_t.apply(image, generator) for _ in range(o.global_crops)])
        if o.local_crops:
            local = torch.stack([self.local_t.apply(image, generator) for _ in range(o.local_crops)])
        else:
            local = image.new_zeros((0, image.shape[0], o.local_size, o.local_size))
        return {**sample, "global_views": g, "local_views": local}


def build_multi_view(o: Any, context: BuildContext) -> MultiView:
    return MultiView(o)


def build_multi_crop(o: Any, context: BuildContext) -> MultiCrop:
    return MultiCrop(o)
