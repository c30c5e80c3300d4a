"""Order Prediction Network (OPN): sort four shuffled frames.

Lee, Huang, Singh and Yang, Unsupervised Representation Learning by Sorting Sequences, ICCV 2017
(https://arxiv.org/abs/1708.01246).

Four frames of a clip (distinct positions, drawn per clip, in temporal order) are shown in one of
the 24 orders. An order and its reverse count as one class (a forward and a backward sequence are
equally plausible), so there are 12 classes; the class is drawn uniformly and then one of its two
orders with equal odds. Each frame goes through the backbone on its own (``frame_features``; the
paper's shared-weight CNN), standardised over the batch (``frame_norm``,
:class:`~selfsup_video.tasks.common.FrameNorm`), then *pairwise feature extraction*: every one of the 6 pairs ``(i, j),
i < j`` of presented frames has its two features concatenated and mapped by a shared linear layer
with ReLU (fc7) to a pair feature; the 6 pair features, concatenated, are classified into the 12
orders (fc8); the loss is the cross entropy. Draws come from a generator seeded by (run seed, task
name, step, the batch's sample indices). The paper's motion-aware frame selection, spatial
jittering and channel splitting target real video (and its colour shortcuts) and are left out.
"""

from __future__ import annotations

from itertools import combinations, permutations
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.components import BuildContext, TaskOutput
from selfsup_video.tasks.common import FrameNorm, StepCounter, frame_features, mlp, sorted_positions, video_of

FRAMES = 4
#: The 12 classes: each order of 4 frames whose first element is smaller than its last, i.e. one of
#: each pair {order, reversed order}; class ``k`` also covers ``ORDERS[k][::-1]``.
ORDERS: tuple[tuple[int, ...], ...] = tuple(p for p in permutations(range(FRAMES)) if p[0] < p[-1])
PAIRS: tuple[tuple[int, int], ...] = tuple(combinations(range(FRAMES), 2))  # the 6 pairs (i, j), i < j


def order_class(order: tuple[int, ...] | list[int]) -> int:
    """The class (0-11) of an order of ``range(4)``: the index of it or of its reverse in ``ORDERS``."""
    order = tuple(int(i) for i in order)
    return ORDERS.index(order if order[0] < order[-1] else order[::-1])


def make_sequences(video: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``video [B, T, C, H, W]`` -> ``(shuffled [B, 4, C, H, W], classes [B] in 0..11, frames [B, 4])``
    where ``frames`` are the clip positions of the presented frames, in presentation order."""
    b = video.shape[0]
    pos = sorted_positions(b, video.shape[1], FRAMES, generator)  # [B, 4], increasing
    classes = torch.randint(0, len(ORDERS), (b,), generator=generator)  # [B]
    orders = torch.tensor(ORDERS)[classes]  # [B, 4]
    backwards = torch.rand(b, generator=generator) < 0.5  # [B]
    orders = torch.where(backwards[:, None], orders.flip(1), orders)  # [B, 4]
    frames = torch.gather(pos, 1, orders).to(video.device)  # [B, 4]
    shuffled = torch.gather(video, 1, frames[:, :, None, None, None].expand(-1, -1, *video.shape[2:]))
    return shuffled, classes.to(video.device), frames


class OrderPrediction(StepCounter):
    def __init__(self, options: Any, context: BuildContext):
        super().__init__(context.seed, context.name)
        dim = int(getattr(context.backbone, "frame_dim", context.backbone.output_dim))
        self.norm = FrameNorm(dim, options.frame_norm)  # [B, 4, F] -> [B, 4, F]
        self.pair = nn.Sequential(nn.Linear(2 * dim, options.pair_dim), nn.ReLU(inplace=True))  # fc7, shared by pairs
        self.classifier = mlp(len(PAIRS) * options.pair_dim, options.hidden_dim, len(ORDERS))  # fc8

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """Frame features ``[B, 4, F]`` in presentation order -> order logits ``[B, 12]``."""
        i, j = zip(*PAIRS)
        pairs = torch.cat([feats[:, list(i)], feats[:, list(j)]], dim=2)  # [B, 6, 2F]
        return self.classifier(self.pair(pairs).flatten(1))  # [B, 6, P] -> [B, 6P] -> [B, 12]

    def forward(self, batch: dict[str, Any], backbone: nn.Module) -> TaskOutput:
        video = video_of(batch, "order_prediction")  # [B, T, C, H, W]
        shuffled, classes, _ = make_sequences(video, self.generator(batch))
        logits = self.logits(self.norm(frame_features(backbone, shuffled, "order_prediction")))  # [B, 12]
        loss = F.cross_entropy(logits.float(), classes)
        accuracy = (logits.argmax(1) == classes).float().mean()
        return TaskOutput(loss=loss, metrics={"accuracy": accuracy.detach()})


def build(options: Any, context: BuildContext) -> OrderPrediction:
    return OrderPrediction(options, context)
