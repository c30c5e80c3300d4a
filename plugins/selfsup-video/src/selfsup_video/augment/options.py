"""Options of the selfsup-video augmentations (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from selfsup.options import Options

Range = tuple[float, float]


def _increasing(r: Range, name: str, low: float = 0.0) -> None:
    if not low <= r[0] <= r[1]:
        raise ValueError(f"{name} must be ({low} <=) low <= high, got {r}")


class _ClipAug(Options):
    key: str = Field("video", description="Sample field holding the [T, C, H, W] float clip.")


class ClipCropOptions(_ClipAug):
    """One random resized crop (area fraction in ``scale``, log-uniform aspect ratio in ``ratio``), the
    same box for every frame, resized to ``size x size``."""

    size: int = Field(gt=0)
    scale: Range = Field((0.3, 1.0), description="Area fraction range (torchvision's default is (0.08, 1)).")
    ratio: Range = (3 / 4, 4 / 3)

    @model_validator(mode="after")
    def _check(self) -> "ClipCropOptions":
        _increasing(self.scale, "scale")
        _increasing(self.ratio, "ratio")
        if self.scale[1] > 1 or self.scale[1] <= 0:
            raise ValueError(f"scale must lie in (0, 1], got {self.scale}")
        if self.ratio[0] <= 0:
            raise ValueError(f"ratio must be positive, got {self.ratio}")
        return self


class ClipFlipOptions(_ClipAug):
    """Mirror every frame left-right, with probability p per clip."""

    p: float = Field(0.5, ge=0, le=1)


class ClipColorJitterOptions(_ClipAug):
    """With probability p per clip, one set of brightness/contrast/saturation/hue factors (drawn as
    torchvision's ColorJitter draws them) applied to every frame."""

    brightness: float = Field(0.4, ge=0)
    contrast: float = Field(0.4, ge=0)
    saturation: float = Field(0.2, ge=0)
    hue: float = Field(0.1, ge=0, le=0.5)
    p: float = Field(0.8, ge=0, le=1)


class TemporalCropOptions(_ClipAug):
    """Cut ``frames`` frames taken every ``stride`` frames, starting at a random (generator),
    centred or first offset. A video shorter than the span repeats its last frame."""

    frames: int = Field(gt=0)
    stride: int = Field(1, ge=1)
    offset: Literal["random", "center", "start"] = "random"


class FrameRateJitterOptions(_ClipAug):
    """Speed change: ``frames`` frames at a random playback rate (frames advanced per output frame,
    uniform in ``rate``: 2.0 = twice as fast, 0.5 = slow motion with repeated frames; frame ``i`` is
    ``floor(start + rate * i)``) from a random start. A video shorter than the span repeats its last frame."""

    frames: int = Field(gt=0)
    rate: Range = Field((1.0, 3.0), description="Playback-rate range (frames advanced per output frame).")

    @model_validator(mode="after")
    def _check(self) -> "FrameRateJitterOptions":
        _increasing(self.rate, "rate")
        if self.rate[0] <= 0:
            raise ValueError(f"rate must be positive, got {self.rate}")
        return self


class MultiClipOptions(_ClipAug):
    """``clips`` clips of one video stacked as ``clips: [N, frames, C, size, size]`` (CVRL positives): each its
    own random temporal crop and its own clip-consistent crop, flip and colour jitter."""

    clips: int = Field(2, ge=2)
    frames: int = Field(gt=0)
    stride: int = Field(1, ge=1)
    size: int = Field(gt=0)
    crop_scale: Range = Field((0.3, 1.0), description="Random resized crop area range ((1, 1): no crop).")
    flip: float = Field(0.5, ge=0, le=1)
    color_jitter: float = Field(
        0.0, ge=0, description="Strength s: brightness/contrast/saturation 0.8s, hue 0.2s (0: none; CVRL uses 1).")
    color_jitter_p: float = Field(0.8, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> "MultiClipOptions":
        _increasing(self.crop_scale, "crop_scale")
        if self.crop_scale[1] > 1 or self.crop_scale[1] <= 0:
            raise ValueError(f"crop_scale must lie in (0, 1], got {self.crop_scale}")
        return self
