"""``multi_clip``: several clips of one video, the positives of clip-level contrastive learning.

CVRL (Qian et al., "Spatiotemporal Contrastive Video Representation Learning", CVPR 2021) takes two
clips of the same video at different times as a positive pair, each with its own temporally
consistent spatial augmentation (one crop, flip and colour jitter for all of a clip's frames).
Here the clip starts are independent and uniform (CVRL draws the gap between them from a
decreasing distribution; on short generated sequences the overlap is large either way).
"""

from __future__ import annotations

from typing import Any

import torch

from selfsup.components import BuildContext
from selfsup_video.augment.temporal import clip_indices
from selfsup_video.augment.transforms import ClipColorJitter, ClipCrop, ClipFlip, Compose


class MultiClip:
    """``sample[key]`` ``[T, C, H, W]`` -> ``sample["clips"]`` ``[N, frames, C, size, size]`` (the video kept)."""

    def __init__(self, o: Any):
        self.o, self.key = o, o.key
        steps: list[Any] = [ClipCrop(o.size, o.crop_scale)]
        if o.flip:
            steps.append(ClipFlip(o.flip))
        s = o.color_jitter
        if s and o.color_jitter_p:
            steps.append(ClipColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s, p=o.color_jitter_p))
        self.spatial = Compose(steps)

    def __call__(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        video, o = sample[self.key], self.o  # [T, C, H, W]
        clips = []
        for _ in range(o.clips):
            idx = clip_indices(video.shape[0], o.frames, o.stride, "random", generator)  # [frames]
            clips.append(self.spatial(video[idx], generator))  # [frames, C, size, size]
        return {**sample, "clips": torch.stack(clips)}  # [N, frames, C, size, size]


def build_multi_clip(o: Any, context: BuildContext) -> MultiClip:
    return MultiClip(o)
