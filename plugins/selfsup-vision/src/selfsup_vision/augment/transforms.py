"""Image augmentations on ``torchvision.transforms.v2.functional``, driven by an explicit generator.

torchvision's random transforms draw from torch's global RNG, and re-seeding that RNG for every
sample is slow (``torch.manual_seed`` also seeds every lazily initialised accelerator) and leaks
state. So each transform here draws its parameters from the per-sample generator the core passes
in (seeded from the run seed, epoch and sample index) with torchvision's own parameter rules, and
applies the deterministic ``v2.functional`` op. Results depend only on that generator; the global
RNG is never touched. Images are ``[C, H, W]`` float tensors in [0, 1].

Each step splits in two: ``draw(generator, shape)`` takes its parameters from the generator (the
same draws, in the same order, as one call after the other), ``apply(image, params)`` transforms
one image and ``batch(images [N, C, H, W], params)`` a stack of them, each with its own
parameters, in a few tensor operations (equal to ``apply`` up to float rounding; tests check it
against torchvision). The augmentations' ``batch`` (API 1.8) uses it: data-loader workers then pay
the per-op overhead of small images once per batch, not once per view.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Sequence

import torch
from torchvision.transforms.v2 import functional as F

from selfsup.components import BuildContext


def uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def coin(generator: torch.Generator, p: float) -> bool:
    """True with probability p (no draw when p is 0 or 1, so p = 1 steps stay cheap)."""
    return p >= 1 or (p > 0 and float(torch.rand((), generator=generator)) < p)


class Step(ABC):
    """One step of a view: ``draw(generator, shape)`` takes its parameters from the generator
    (torchvision's rules; none by default), ``apply(image, params)`` transforms one image,
    ``batch(images, params)`` a stack of them."""

    def draw(self, generator: torch.Generator, shape: Sequence[int]) -> Any:
        return None

    @abstractmethod
    def apply(self, x: torch.Tensor, params: Any) -> torch.Tensor: ...

    @abstractmethod
    def batch(self, x: torch.Tensor, params: list[Any]) -> torch.Tensor: ...

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.apply(x, self.draw(generator, x.shape))


def blend(a: torch.Tensor, b: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """``ratio * a + (1 - ratio) * b`` clamped to [0, 1], one ratio per image (``[N, 1, 1, 1]``):
    torchvision's ``_blend`` for float images, batched."""
    return a.mul(ratio).add_(b.mul(1.0 - ratio)).clamp_(0, 1.0)


def grey(x: torch.Tensor) -> torch.Tensor:
    """``[N, 1, H, W]``: the luma of RGB images, the image itself for grey ones."""
    return F.rgb_to_grayscale(x, num_output_channels=1) if x.shape[-3] == 3 else x


def resample_weights(start: torch.Tensor, length: torch.Tensor, size: int, extent: int) -> torch.Tensor:
    """``[N, size, extent]``: the rows that resample the window ``[start, start + length)`` of an axis
    of ``extent`` pixels to ``size`` pixels, as torch's antialiased bilinear interpolation does
    (Pillow's rule: the triangle filter, widened by the scale when shrinking, cut at the window's
    edges and normalised). ``start`` and ``length``: ``[N]`` pixel counts."""
    start, length = start.double()[:, None, None], length.double()[:, None, None]  # [N, 1, 1]
    scale = length / size
    centre = scale * (torch.arange(size, dtype=torch.float64)[None, :, None] + 0.5)  # [N, size, 1]
    j = torch.arange(extent, dtype=torch.float64)[None, None, :] - start  # [N, 1, extent], window coordinates
    w = (1 - ((j + 0.5 - centre) / scale.clamp(min=1.0)).abs()).clamp(min=0) * ((j >= 0) & (j < length))
    return (w / w.sum(-1, keepdim=True)).float()


class RandomResizedCrop(Step):
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

    def draw(self, generator: torch.Generator, shape: Sequence[int]) -> tuple[int, int, int, int]:
        return self.params(shape[-2], shape[-1], generator)

    def out_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        return (*shape[:-2], *self.size)

    def apply(self, x: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
        return F.resized_crop(x, *box, self.size, antialias=True)

    def batch(self, x: torch.Tensor, boxes: list[tuple[int, int, int, int]]) -> torch.Tensor:
        """``[N, C, H, W]`` -> ``[N, C, size, size]``, each image its own box: two batched matrix
        products with the interpolation weights (equal to ``apply`` up to float rounding)."""
        top, left, h, w = torch.tensor(boxes, dtype=torch.long).unbind(1)  # [N] each
        rows = resample_weights(top, h, self.size[0], x.shape[-2])  # [N, size, H]
        cols = resample_weights(left, w, self.size[1], x.shape[-1])  # [N, size, W]
        return torch.einsum("nsh,nchw,ntw->ncst", rows, x.float(), cols)  # [N, C, size, size]


class HorizontalFlip(Step):
    def __init__(self, p: float):
        self.p = p

    def draw(self, generator: torch.Generator, shape: Sequence[int]) -> bool:
        return coin(generator, self.p)

    def apply(self, x: torch.Tensor, flip: bool) -> torch.Tensor:
        return F.horizontal_flip(x) if flip else x

    def batch(self, x: torch.Tensor, flips: list[bool]) -> torch.Tensor:
        return torch.where(torch.tensor(flips)[:, None, None, None], x.flip(-1), x)


COLOR_OPS = {"brightness": F.adjust_brightness, "contrast": F.adjust_contrast,
             "saturation": F.adjust_saturation, "hue": F.adjust_hue}


class ColorJitter(Step):
    """With probability p: brightness, contrast, saturation and hue factors drawn as torchvision's
    ``ColorJitter`` draws them, applied in a random order. Grey images get no saturation or hue."""

    def __init__(self, brightness: float, contrast: float, saturation: float, hue: float, p: float = 1.0):
        self.p = p
        self.ops = [
            (name, low, high)
            for name, low, high in [
                ("brightness", max(0.0, 1 - brightness), 1 + brightness),
                ("contrast", max(0.0, 1 - contrast), 1 + contrast),
                ("saturation", max(0.0, 1 - saturation), 1 + saturation),
                ("hue", -hue, hue),
            ]
            if high > low
        ]

    def draw(self, generator: torch.Generator, shape: Sequence[int]) -> tuple[tuple[str, float], ...]:
        """The ``(op, factor)`` steps in their drawn order; none when the coin says no. Grey images
        get only brightness and contrast (the other draws are kept, so seeds line up across channel
        counts)."""
        if not self.ops or not coin(generator, self.p):
            return ()
        steps = []
        for k in torch.randperm(len(self.ops), generator=generator).tolist():
            name, low, high = self.ops[k]
            factor = uniform(generator, low, high)
            if shape[-3] != 1 or name in ("brightness", "contrast"):
                steps.append((name, factor))
        return tuple(steps)

    def apply(self, x: torch.Tensor, steps: tuple[tuple[str, float], ...]) -> torch.Tensor:
        for name, factor in steps:
            x = COLOR_OPS[name](x, factor)
        return x

    def batch(self, x: torch.Tensor, steps: list[tuple[tuple[str, float], ...]]) -> torch.Tensor:
        """The images that drew the same order of ops go together, each with its own factors."""
        out = x.clone()
        orders: dict[tuple[str, ...], list[int]] = {}
        for i, s in enumerate(steps):
            if s:
                orders.setdefault(tuple(name for name, _ in s), []).append(i)
        for order, rows in orders.items():
            y = x[rows]  # [n, C, H, W]
            for k, name in enumerate(order):
                factors = [steps[i][k][1] for i in rows]
                f = torch.tensor(factors, dtype=torch.float64).to(y.dtype)[:, None, None, None]  # [n, 1, 1, 1]
                if name == "brightness":
                    y = y.mul(f).clamp_(0, 1.0)
                elif name == "contrast":
                    y = blend(y, grey(y).mean(dim=(-3, -2, -1), keepdim=True), f)
                elif name == "saturation":
                    y = blend(y, grey(y), f)
                else:  # hue: through HSV, one image at a time
                    y = torch.stack([F.adjust_hue(image, factor) for image, factor in zip(y, factors)])
            out[rows] = y
        return out


class Grayscale(Step):
    """Convert RGB to grey with probability p, keeping 3 channels; grey images pass through."""

    def __init__(self, p: float):
        self.p = p

    def draw(self, generator: torch.Generator, shape: Sequence[int]) -> bool:
        return shape[-3] == 3 and coin(generator, self.p)

    def apply(self, x: torch.Tensor, convert: bool) -> torch.Tensor:
        return F.rgb_to_grayscale(x, num_output_channels=3) if convert else x

    def batch(self, x: torch.Tensor, converts: list[bool]) -> torch.Tensor:
        if not any(converts):
            return x
        return torch.where(torch.tensor(converts)[:, None, None, None], F.rgb_to_grayscale(x, num_output_channels=3), x)


def blur_kernel(size: int, kernel_size: int | None) -> int:
    k = kernel_size or max(3, int(0.1 * size))
    return k if k % 2 == 1 else k + 1


class GaussianBlur(Step):
    """Blur with probability p and a sigma uniform in ``sigma`` (kernel about 10% of the image side
    when not given, as in SimCLR)."""

    def __init__(self, kernel_size: int | None, sigma: Sequence[float], p: float):
        self.kernel_size, self.sigma, self.p = kernel_size, tuple(sigma), p

    def draw(self, generator: torch.Generator, shape: Sequence[int]) -> float | None:
        return uniform(generator, *self.sigma) if coin(generator, self.p) else None

    def apply(self, x: torch.Tensor, sigma: float | None) -> torch.Tensor:
        if sigma is None:
            return x
        k = blur_kernel(min(x.shape[-2:]), self.kernel_size)
        return F.gaussian_blur(x, [k, k], [sigma, sigma])

    def batch(self, x: torch.Tensor, sigmas: list[float | None]) -> torch.Tensor:
        return torch.stack([self.apply(image, sigma) for image, sigma in zip(x, sigmas)])  # a kernel per image


class Solarize(Step):
    def __init__(self, threshold: float, p: float):
        self.threshold, self.p = threshold, p

    def draw(self, generator: torch.Generator, shape: Sequence[int]) -> bool:
        return coin(generator, self.p)

    def apply(self, x: torch.Tensor, solarize: bool) -> torch.Tensor:
        return F.solarize(x, self.threshold) if solarize else x

    def batch(self, x: torch.Tensor, which: list[bool]) -> torch.Tensor:
        return torch.where(torch.tensor(which)[:, None, None, None], F.solarize(x, self.threshold), x)


class Standardize(Step):
    """``(x - mean) / std`` per channel, no randomness: the last step of a view."""

    def __init__(self, mean: list[float], std: list[float]):
        self.mean, self.std = mean, std

    def apply(self, x: torch.Tensor, _: None) -> torch.Tensor:
        return F.normalize(x, self.mean, self.std)

    def batch(self, x: torch.Tensor, _: list[None]) -> torch.Tensor:
        return F.normalize(x, self.mean, self.std)


class Compose(Step):
    """Steps in turn. Every step draws its parameters before any is applied (the draws in the order
    the steps would make them one after the other), so a batch of images can be drawn one by one
    and then transformed at once."""

    def __init__(self, steps: list[Step]):
        self.steps = steps

    def draw(self, generator: torch.Generator, shape: Sequence[int]) -> list[Any]:
        params = []
        for step in self.steps:
            params.append(step.draw(generator, shape))
            shape = step.out_shape(shape) if hasattr(step, "out_shape") else shape
        return params

    def apply(self, x: torch.Tensor, params: list[Any]) -> torch.Tensor:
        for step, p in zip(self.steps, params):
            x = step.apply(x, p)
        return x

    def batch(self, x: torch.Tensor, params: list[list[Any]]) -> torch.Tensor:
        for k, step in enumerate(self.steps):
            x = step.batch(x, [p[k] for p in params])
        return x


def transform_many(step: Step, images: list[torch.Tensor], params: list[Any]) -> list[torch.Tensor]:
    """``step.batch`` over images of any sizes: the images of one shape and dtype go together."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault((tuple(image.shape), image.dtype), []).append(i)
    out: list[Any] = [None] * len(images)
    for rows in groups.values():
        done = step.batch(torch.stack([images[i] for i in rows]), [params[i] for i in rows])
        for i, image in zip(rows, done):
            out[i] = image
    return out


class ImageTransform:
    """An augmentation: applies ``step(image, generator)`` to ``sample[key]``; ``batch`` (API 1.8)
    transforms a list of samples at once."""

    def __init__(self, step: Step, key: str = "image"):
        self.step, self.key = step, key

    def apply(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.step(image, generator)

    def __call__(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        return {**sample, self.key: self.step(sample[self.key], generator)}

    def batch(self, samples: list[dict[str, Any]], generators: list[torch.Generator]) -> list[dict[str, Any]]:
        images = [sample[self.key] for sample in samples]
        params = [self.step.draw(g, image.shape) for image, g in zip(images, generators)]
        out = transform_many(self.step, images, params)
        return [{**sample, self.key: image} for sample, image in zip(samples, out)]


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
