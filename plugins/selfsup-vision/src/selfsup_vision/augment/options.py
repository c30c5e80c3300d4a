"""Options of the selfsup-vision augmentations and view generators.

Pydantic only: importing this never imports torch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from selfsup.options import Options

Range = tuple[float, float]


class _ImageAug(Options):
    key: str = Field("image", description="Sample field holding the [C, H, W] float image.")


class RandomResizedCropOptions(_ImageAug):
    size: int = Field(gt=0)
    scale: Range = (0.08, 1.0)
    ratio: Range = (3 / 4, 4 / 3)


class FlipOptions(_ImageAug):
    p: float = Field(0.5, ge=0, le=1)


class ColorJitterOptions(_ImageAug):
    brightness: float = Field(0.4, ge=0)
    contrast: float = Field(0.4, ge=0)
    saturation: float = Field(0.2, ge=0)
    hue: float = Field(0.1, ge=0, le=0.5)
    p: float = Field(0.8, ge=0, le=1)


class GrayscaleOptions(_ImageAug):
    p: float = Field(0.2, ge=0, le=1)


class BlurOptions(_ImageAug):
    kernel_size: int | None = Field(None, gt=0, description="Odd; default about 10% of the image side.")
    sigma: Range = (0.1, 2.0)
    p: float = Field(0.5, ge=0, le=1)


class SolarizeOptions(_ImageAug):
    threshold: float = Field(0.5, ge=0, le=1)
    p: float = Field(0.2, ge=0, le=1)


class NormalizeOptions(_ImageAug):
    mean: list[float] = Field(default_factory=lambda: [0.5])
    std: list[float] = Field(default_factory=lambda: [0.5])

    @model_validator(mode="after")
    def _same_length(self) -> "NormalizeOptions":
        if len(self.mean) != len(self.std):
            raise ValueError("mean and std need the same number of channels")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")
        return self


class ViewTransformOptions(Options):
    """The per-view recipe shared by multi-view and multi-crop generators.

    ``preset = "auto"`` picks defaults from the image size: small images (<= 32 px) get milder
    crops, no blur and no solarization; photos (>= 96 px) get SimCLR's ImageNet settings."""

    preset: Literal["auto", "small", "photo"] = "auto"
    flip: float | None = Field(None, ge=0, le=1)
    color_jitter: float | None = Field(None, ge=0,
                                       description="Strength s: brightness/contrast/saturation 0.8s, hue 0.2s.")
    color_jitter_p: float | None = Field(None, ge=0, le=1)
    grayscale: float | None = Field(None, ge=0, le=1)
    blur: float | None = Field(None, ge=0, le=1)
    solarize: float | None = Field(None, ge=0, le=1)
    mean: list[float] | None = None
    std: list[float] | None = None
    key: str = "image"


class MultiViewOptions(ViewTransformOptions):
    """``views`` augmented copies of the image, stacked as ``views: [V, C, size, size]``."""

    views: int = Field(2, ge=2)
    size: int = Field(gt=0)
    crop_scale: Range | None = None


class MultiCropOptions(ViewTransformOptions):
    """SwAV multi-crop: ``global_crops`` large and ``local_crops`` small views, as
    ``global_views: [G, C, gs, gs]`` and ``local_views: [L, C, ls, ls]``."""

    global_crops: int = Field(2, ge=2)
    global_size: int = Field(gt=0)
    global_scale: Range | None = None
    local_crops: int = Field(4, ge=0)
    local_size: int = Field(gt=0)
    local_scale: Range | None = None
