"""Temporal augmentations: cutting a clip out of a longer video, and changing its playback speed.

Both pick frame indices and gather them from the ``[T, C, H, W]`` video; randomness comes only from
the per-sample generator. A video shorter than the requested span repeats its last frame (index
clamped to ``T - 1``), so every output has exactly ``frames`` frames and batches stack.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from selfsup.components import BuildContext


def clip_indices(length: int, frames: int, stride: int, offset: str, generator: torch.Generator | None) -> torch.Tensor:
    """Indices ``[frames]`` of a clip of ``frames`` frames every ``stride`` frames out of ``length``:
    starting at a random (``generator``), centred or first position; clamped to ``length - 1``."""
    span = (frames - 1) * stride + 1
    room = max(0, length - span)  # last possible start
    if offset == "random":
        start = int(torch.randint(0, room + 1, (), generator=generator)) if room else 0
    elif offset == "center":
        start = room // 2
    elif offset == "start":
        start = 0
    else:
        raise ValueError(f"offset must be 'random', 'center' or 'start', got {offset!r}")
    return (start + stride * torch.arange(frames)).clamp_(max=length - 1)


def rate_indices(length: int, frames: int, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Indices ``[frames]`` at playback ``rate`` (``floor(start + rate * i)``) from a random start."""
    span = rate * (frames - 1)
    room = max(0, math.floor(length - 1 - span))
    start = int(torch.randint(0, room + 1, (), generator=generator)) if room else 0
    idx = torch.floor(start + rate * torch.arange(frames, dtype=torch.float64)).long()
    return idx.clamp_(max=length - 1)


class TemporalCrop:
    """``sample[key]``: ``[T, C, H, W]`` -> ``[frames, C, H, W]``."""

    def __init__(self, frames: int, stride: int = 1, offset: str = "random", key: str = "video"):
        self.frames, self.stride, self.offset, self.key = frames, stride, offset, key

    def indices(self, length: int, generator: torch.Generator) -> torch.Tensor:
        return clip_indices(length, self.frames, self.stride, self.offset, generator)

    def __call__(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        video = sample[self.key]  # [T, C, H, W]
        return {**sample, self.key: video[self.indices(video.shape[0], generator)]}


class FrameRateJitter:
    """``sample[key]``: ``[T, C, H, W]`` -> ``[frames, C, H, W]`` at a random playback rate."""

    def __init__(self, frames: int, rate: tuple[float, float], key: str = "video"):
        self.frames, self.rate, self.key = frames, tuple(rate), key

    def __call__(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        video = sample[self.key]  # [T, C, H, W]
        low, high = self.rate
        rate = low + (high - low) * float(torch.rand((), generator=generator))
        return {**sample, self.key: video[rate_indices(video.shape[0], self.frames, rate, generator)]}


def build_temporal_crop(o: Any, context: BuildContext) -> TemporalCrop:
    return TemporalCrop(o.frames, o.stride, o.offset, o.key)


def build_frame_rate_jitter(o: Any, context: BuildContext) -> FrameRateJitter:
    return FrameRateJitter(o.frames, o.rate, o.key)
