"""Multi-view (SimCLR) and multi-crop (SwAV) generators with size-aware defaults."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from selfsup.components import BuildContext
from selfsup_vision.augment.transforms import (
    Compose,
    GaussianBlur,
    Grayscale,
    HorizontalFlip,
    ImageTransform,
    RandomResizedCrop,
    Solarize,
    Standardize,
    color_jitter,
    transform_many,
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
        steps.append(Standardize(mean, std))
    return ImageTransform(Compose(steps), o.key)


def views_of(step: Any, images: list[torch.Tensor], params: list[list[Any]]) -> list[torch.Tensor]:
    """Image ``i``'s views ``[len(params[i]), C, s, s]``: ``images[i]`` through ``step`` with each of
    ``params[i]``, every view of every image transformed at once."""
    flat = transform_many(step, [image for image, ps in zip(images, params) for _ in ps],
                          [p for ps in params for p in ps])
    out, at = [], 0
    for ps in params:
        out.append(torch.stack(flat[at : at + len(ps)]))
        at += len(ps)
    return out


class MultiView:
    """``views: [V, C, size, size]``, each view augmented independently."""

    def __init__(self, o: Any):
        self.views, self.key = o.views, o.key
        self.transform = view_transform(o, o.size, o.crop_scale)

    def __call__(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        image = sample[self.key]
        views = torch.stack([self.transform.apply(image, generator) for _ in range(self.views)])
        return {**sample, "views": views}

    def batch(self, samples: list[dict[str, Any]], generators: list[torch.Generator]) -> list[dict[str, Any]]:
        """The views' parameters drawn sample by sample as in ``__call__``, then all views made at once."""
        images, step = [sample[self.key] for sample in samples], self.transform.step
        params = [[step.draw(g, image.shape) for _ in range(self.views)] for image, g in zip(images, generators)]
        return [{**sample, "views": v} for sample, v in zip(samples, views_of(step, images, params))]


class MultiCrop:
    """``global_views: [G, C, gs, gs]`` and ``local_views: [L, C, ls, ls]``."""

    def __init__(self, o: Any):
        self.o, self.key = o, o.key
        self.global_t = view_transform(o, o.global_size, o.global_scale)
        self.local_t = view_transform(o, o.local_size, o.local_scale, local=True)

    def no_local(self, image: torch.Tensor) -> torch.Tensor:
        return image.new_zeros((0, image.shape[0], self.o.local_size, self.o.local_size))

    def __call__(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        image, o = sample[self.key], self.o
        g = torch.stack([self.global_t.apply(image, generator) for _ in range(o.global_crops)])
        if o.local_crops:
            local = torch.stack([self.local_t.apply(image, generator) for _ in range(o.local_crops)])
        else:
            local = self.no_local(image)
        return {**sample, "global_views": g, "local_views": local}

    def batch(self, samples: list[dict[str, Any]], generators: list[torch.Generator]) -> list[dict[str, Any]]:
        """Per sample the global crops are drawn before the local ones, as in ``__call__``."""
        o, images = self.o, [sample[self.key] for sample in samples]
        wide, small = [], []
        for image, generator in zip(images, generators):
            wide.append([self.global_t.step.draw(generator, image.shape) for _ in range(o.global_crops)])
            small.append([self.local_t.step.draw(generator, image.shape) for _ in range(o.local_crops)])
        g = views_of(self.global_t.step, images, wide)
        local = views_of(self.local_t.step, images, small) if o.local_crops else [self.no_local(i) for i in images]
        return [{**sample, "global_views": gv, "local_views": lv} for sample, gv, lv in zip(samples, g, local)]


def build_multi_view(o: Any, context: BuildContext) -> MultiView:
    return MultiView(o)


def build_multi_crop(o: Any, context: BuildContext) -> MultiCrop:
    return MultiCrop(o)
