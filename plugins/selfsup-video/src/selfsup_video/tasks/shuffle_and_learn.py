"""Shuffle and Learn: frame-order verification of 3-frame tuples.

Misra, Zitnick and Hebert, Shuffle and Learn: Unsupervised Learning using Temporal Order
Verification, ECCV 2016 (https://arxiv.org/abs/1603.08561).

From each clip five frames ``a < b < c < d < e`` (distinct positions, drawn per clip) are picked.
The positive tuple is ``(b, c, d)``: in order. A negative keeps the ends and takes its middle frame
from outside them: ``(b, a, d)`` or ``(b, e, d)`` (each half of the time), as in the paper, so the
three frames are alike in appearance and only their order tells them apart. With
``both_directions`` every tuple (positive or negative) is also read backwards half of the time
(``(d, c, b)`` is in order too): what is verified is whether the middle frame lies between the
other two, and the direction of time is no cue. Each batch holds as many positives as negatives
(one more positive when odd).

Each frame of a tuple goes through the backbone on its own (``frame_features``: the paper's
siamese network with shared weights); the three features are concatenated and classified
(ordered or not) by an MLP, after each frame feature is standardised over the batch
(``frame_norm``, :class:`~selfsup_video.tasks.common.FrameNorm`); the loss is the cross entropy.
All draws come from a generator seeded by (run seed, task name, step, the batch's sample indices).
The paper samples tuples from windows of high motion (optical flow); clips here are short and always
moving, so positions are uniform.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.components import BuildContext, TaskOutput
from selfsup_video.tasks.common import (
    FrameNorm,
    StepCounter,
    balanced_labels,
    frame_features,
    mlp,
    sorted_positions,
    video_of,
)


def make_tuples(video: torch.Tensor, generator: torch.Generator,
                both_directions: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``video [B, T, C, H, W]`` -> ``(tuples [B, 3, C, H, W], labels [B] (1 = ordered), frames [B, 3])``
    where ``frames`` are the positions in the clip of the tuple's frames, in tuple order."""
    b = video.shape[0]
    pos = sorted_positions(b, video.shape[1], 5, generator)  # [B, 5]: a < b < c < d < e
    labels = balanced_labels(b, generator)  # [B]
    outside = torch.where(torch.rand(b, generator=generator) < 0.5, pos[:, 0], pos[:, 4])  # [B]: a or e
    middle = torch.where(labels.bool(), pos[:, 2], outside)  # [B]
    frames = torch.stack([pos[:, 1], middle, pos[:, 3]], dim=1)  # [B, 3]
    if both_directions:
        backwards = torch.rand(b, generator=generator) < 0.5  # [B]
        frames = torch.where(backwards[:, None], frames.flip(1), frames)
    frames = frames.to(video.device)
    tuples = torch.gather(video, 1, frames[:, :, None, None, None].expand(-1, -1, *video.shape[2:]))  # [B, 3, C, H, W]
    return tuples, labels.to(video.device), frames


class ShuffleAndLearn(StepCounter):
    def __init__(self, options: Any, context: BuildContext):
        super().__init__(context.seed, context.name)
        self.options = options
        dim = int(getattr(context.backbone, "frame_dim", context.backbone.output_dim))
        self.norm = FrameNorm(dim, options.frame_norm)  # [B, 3, F] -> [B, 3, F]
        self.head = mlp(3 * dim, options.hidden_dim, 2)  # [B, 3F] -> [B, 2]

    def forward(self, batch: dict[str, Any], backbone: nn.Module) -> TaskOutput:
        video = video_of(batch, "shuffle_and_learn")  # [B, T, C, H, W]
        tuples, labels, _ = make_tuples(video, self.generator(batch), self.options.both_directions)
        feats = self.norm(frame_features(backbone, tuples, "shuffle_and_learn"))  # [B, 3, F]
        logits = self.head(feats.flatten(1))  # [B, 2]
        loss = F.cross_entropy(logits.float(), labels)
        accuracy = (logits.argmax(1) == labels).float().mean()
        return TaskOutput(loss=loss, metrics={"accuracy": accuracy.detach()})


def build(options: Any, context: BuildContext) -> ShuffleAndLearn:
    return ShuffleAndLearn(options, context)
