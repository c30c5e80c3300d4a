"""Image augmentations on ``torchvision.transforms.v2.functional``, driven by an explicit generator.

torchvision's random transforms draw from torch's global RNG, and re-seeding that RNG for every
sample is slow (``torch.manual_seed`` also seeds every lazily initialised accelerator) and leaks
state. So each transform here draws its parameters from the per-sample generator the core passes
in (seeded from the run seed, epoch and sample index) with torchvision's own parameter rules, and
applies the deterministic ``v2.functional`` op. Results depend only on that generator; the global
RNG is never touched. Images are ``[C, H, W]`` float tensors in [0, 1].
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
from torchvision.transforms.v2 import functional as F

from selfsup.components import BuildContext

Step = Callable[[torch.Tensor, torch.Generator], torch.Tensor]  # (image, generator) -> image


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def coin(generator: torch.Generator, p: float) -> bool:
    """True with probability p (no draw when p is 0 or 1, so p = 1 steps stay cheap)."""
    return p >= 1 or (p > 0 and float(torch.rand((), generator=generator)) < p)


class RandomResizedCrop:
    """Crop a random area fraction in ``scale`` and aspect ratio in ``ratio`` (log-uniform), resize
    to ``size`` (torchvision's ``RandomResizedCrop.get_params``: 10 tries, then a centre crop)."""

    def __init__(self, size: int, scale: Sequence[float] = (0.08, 1.0), ratio: Sequence[float] = (3 / 4, 4 / 3)):
        self.size, self.scale = [size, size], tuple(scale)
        self.log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        self.ratio = tuple(ratio)

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

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        top, left, h, w = self.params(x.shape[-2], x.shape[-1], generator)
        return F.resized_crop(x, top, left, h, w, self.size, antialias=True)


class HorizontalFlip:
    def __init__(self, p: float):
        self.p = p

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return F.horizontal_flip(x) if coin(generator, self.p) else x


class ColorJitter:
    """With probability p: brightness, contrast, saturation and hue factors drawn as torchvision's
    ``ColorJitter`` draws them, applied in a random order. Grey images get no saturation or hue."""

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

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self.ops or not coin(generator, self.p):
            return x
        grey = x.shape[-3] == 1
        for k in torch.randperm(len(self.ops), generator=generator).tolist():
            op, low, high = self.ops[k]
            factor = uniform(generator, low, high)
            if grey and op in (F.adjust_saturation, F.adjust_hue):
                continue  # undefined for one channel (the draw is kept so seeds line up across channel counts)
            x = op(x, factor)
        return x


class Grayscale:
    """Convert RGB to grey with probability p, keeping 3 channels; grey images pass through."""

    def __init__(self, p: float):
        self.p = p

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.shape[-3] == 3 and coin(generator, self.p):
            return F.rgb_to_grayscale(x, num_output_channels=3)
        return x


def blur_kernel(size: int, kernel_size: int | None) -> int:
    k = kernel_size or max(3, int(0.1 * size))
    return k if k % 2 == 1 else k + 1


class GaussianBlur:
    """Blur with probability p and a sigma uniform in ``sigma`` (kernel about 10% of the image side
    when not given, as in SimCLR)."""

    def __init__(self, kernel_size: int | None, sigma: Sequence[float], p: float):
        self.kernel_size, self.sigma, self.p = kernel_size, tuple(sigma), p

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not coin(generator, self.p):
            return x
        k = blur_kernel(min(x.shape[-2:]), self.kernel_size)
        s = uniform(generator, *self.sigma)
        return F.gaussian_blur(x, [k, k], [s, s])


class Solarize:
    def __init__(self, threshold: float, p: float):
        self.threshold, self.p = threshold, p

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return F.solarize(x, self.threshold) if coin(generator, self.p) else x


class Compose:
    def __init__(self, steps: list[Step]):
        self.steps = steps

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for step in self.steps:
            x = step(x, generator)
        return x


class ImageTransform:
    """An augmentation: applies ``step(image, generator)`` to ``sample[key]``."""

    def __init__(self, step: Step, key: str = "image"):
        self.step, self.key = step, key

    def apply(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.step(image, generator)

    def __call__(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        return {**sample, self.key: self.step(sample[self.key], generator)}


def color_jitter(brightness: float, contrast: float, saturation: float, hue: float, p: float = 1.0) -> ColorJitter:
    return ColorJitter(brightness, contrast, saturation, hue, p)


def build_random_resized_crop(o: Any, context: BuildContext) -> ImageTransform:
    return ImageTransform(RandomResizedCrop(o.size, o.scale, o.ratio), o.key)


def build_horizontal_flip(o: Any, context: BuildContext) -> ImageTransform:
    return ImageTransform(HorizontalFlip(o.p), o.key)


def build_color_jitter(o: Any, context: BuildContext) -> ImageTransform:
    return ImageTransform(ColorJitter(o.brightness, o.contrast, o.saturation, o.hue, o.p), o.key)


def build_grayscale(o: Any, context: BuildContext) -> ImageTransform:
    return ImageTransform(Grayscale(o.p), o.key)


def build_gaussian_blur(o: Any, context: BuildContext) -> ImageTransform:
    return ImageTransform(GaussianBlur(o.kernel_size, o.sigma, o.p), o.key)


def build_solarize(o: Any, context: BuildContext) -> ImageTransform:
    return ImageTransform(Solarize(o.threshold, o.p), o.key)


class Normalize:
    def __init__(self, mean: list[float], std: list[float], key: str):
        self.mean = torch.tensor(mean)[:, None, None]  # [C, 1, 1]
        self.std = torch.tensor(std)[:, None, None]
        self.key = key

    def __call__(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        x = sample[self.key]
        if self.mean.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"normalize has {self.mean.shape[0]} channel(s), the image {x.shape[0]}")
        return {**sample, self.key: (x - self.mean) / self.std}


def build_normalize(o: Any, context: BuildContext) -> Normalize:
    return Normalize(o.mean, o.std, o.key)
