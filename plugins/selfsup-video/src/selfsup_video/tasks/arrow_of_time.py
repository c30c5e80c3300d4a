"""Arrow of time: tell a clip played forward from the same clip played backward.

Wei, Lim, Zisserman and Freeman, Learning and Using the Arrow of Time, CVPR 2018.

Half of each batch's clips (drawn per batch) are reversed in time; the clip goes through the
backbone whole (``forward``: the clip embedding must see frame order, so an order-blind backbone,
``framewise`` with ``fusion = "mean"``, is refused) and a small MLP says forward or backward; the
loss is the cross entropy. Draws come from a generator seeded by (run seed, task name, step, the
batch's sample indices).

The task can only be learnt where the world is not time-symmetric (things fall, spread, decelerate;
people walk forwards). The paper's warning is about shortcuts: cues that give the direction away
without any understanding of motion (camera zoom, black borders, compression artifacts). On
Moving MNIST it is the other way round: a digit moving at constant speed with elastic bounces
played backwards is another valid Moving MNIST clip, so the direction is unknowable (chance level,
50%) unless the generator leaks it, e.g. by starting every sequence from a different distribution of
positions than the one it ends in, or by a frame that differs at the sequence's start; a model can
then only learn such a leak. See docs/video.md for what it reaches there, and
tests/test_arrow_of_time.py for the check that it learns the direction of a time-asymmetric process.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.components import BuildContext, TaskOutput
from selfsup_video.tasks.common import StepCounter, balanced_labels, mlp, video_of


def make_clips(video: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``video [B, T, C, H, W]`` -> ``(clips [B, T, C, H, W], labels [B])``: label 1 = forward (as given),
    0 = reversed in time."""
    labels = balanced_labels(video.shape[0], generator).to(video.device)  # [B]
    forward = labels.bool()[:, None, None, None, None]
    return torch.where(forward, video, video.flip(1)), labels


class ArrowOfTime(StepCounter):
    def __init__(self, options: Any, context: BuildContext):
        super().__init__(context.seed, context.name)
        if getattr(context.backbone, "order_blind", False):
            raise ValueError("arrow_of_time classifies the clip embedding, which must see frame order: this backbone "
                             "is order-blind (framewise with fusion = 'mean' embeds a reversed clip the same); use "
                             "fusion = 'attention' or 'concat', r2plus1d or video_vit")
        self.head = mlp(int(context.backbone.output_dim), options.hidden_dim, 2)  # [B, D] -> [B, 2]

    def forward(self, batch: dict[str, Any], backbone: nn.Module) -> TaskOutput:
        video = video_of(batch, "arrow_of_time")  # [B, T, C, H, W]
        clips, labels = make_clips(video, self.generator(batch))
        logits = self.head(backbone(clips))  # [B, 2]
        loss = F.cross_entropy(logits.float(), labels)
        accuracy = (logits.argmax(1) == labels).float().mean()
        return TaskOutput(loss=loss, metrics={"accuracy": accuracy.detach()})


def build(options: Any, context: BuildContext) -> ArrowOfTime:
    return ArrowOfTime(options, context)
