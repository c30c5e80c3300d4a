"""Image augmentations built from torchvision.transforms.v2, made reproducible.

torchvision draws from torch's global RNG; each call here forks that RNG and seeds it from the
per-sample generator the core provides, so results depend only on (run seed, epoch, sample) and
the global RNG stream of the training process is left untouched."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torchvision.transforms import v2

from selfsup.components import BuildContext


def seed_from(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator))


class ImageTransform:
    """Applies a v2 transform to ``sample[key]`` (``[C, H, W]`` float in [0, 1])."""

    def __init__(self, make: Callable[[int], Callable[[torch.Tensor], torch.Tensor]], key: str = "image"):
        self.make, self.key = make, key  # make(channels) -> transform, cached per channel count
        self._cache: dict[int, Callable[[torch.Tensor], torch.Tensor]] = {}

    def transform_for(self, channels: int) -> Callable[[torch.Tensor], torch.Tensor]:
        if channels not in self._cache:
            self._cache[channels] = self.make(channels)
        return self._cache[channels]

    def apply(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        transform = self.transform_for(image.shape[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_from(generator))
            return transform(image)

    def __call__(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        return {**sample, self.key: self.apply(sample[self.key], generator)}


def color_jitter(channels: int, brightness: float, contrast: float, saturation: float, hue: float) -> v2.ColorJitter:
    if channels == 1:  # saturation and hue are undefined for grey images
        saturation, hue = 0.0, 0.0
    return v2.ColorJitter(brightness=brightness, contrast=contrast, saturation=saturation, hue=hue)


def blur_kernel(size: int, kernel_size: int | None) -> int:
    k = kernel_size or max(3, int(0.1 * size))
    return k if k % 2 == 1 else k + 1


class GaussianBlur:
    """Blur with probability p and a random sigma (kernel sized from the image when not given)."""

    def __init__(self, kernel_size: int | None, sigma: tuple[float, float], p: float):
        self.kernel_size, self.sigma, self.p = kernel_size, sigma, p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) >= self.p:
            return x
        k = blur_kernel(min(x.shape[-2:]), self.kernel_size)
        return v2.GaussianBlur(k, sigma=self.sigma)(x)


def build_random_resized_crop(o: Any, context: BuildContext) -> ImageTransform:
    return ImageTransform(lambda c: v2.RandomResizedCrop(o.size, scale=o.scale, ratio=o.ratio, antialias=True), o.key)


def build_horizontal_flip(o: Any, context: BuildContext) -> ImageTransform:
    return ImageTransform(lambda c: v2.RandomHorizontalFlip(o.p), o.key)


def build_color_jitter(o: Any, context: BuildContext) -> ImageTransform:
    return ImageTransform(
        lambda c: v2.RandomApply([color_jitter(c, o.brightness, o.contrast, o.saturation, o.hue)], p=o.p), o.key
    )


def build_grayscale(o: Any, context: BuildContext) -> ImageTransform:
    return ImageTransform(lambda c: v2.RandomGrayscale(o.p), o.key)


def build_gaussian_blur(o: Any, context: BuildContext) -> ImageTransform:
    return ImageTransform(lambda c: GaussianBlur(o.kernel_size, o.sigma, o.p), o.key)


def build_solarize(o: Any, context: BuildContext) -> ImageTransform:
    return ImageTransform(lambda c: v2.RandomSolarize(o.threshold, p=o.p), o.key)


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
