"""BYOL: an online network predicts a slowly moving (EMA) target network's projection of another view.

Grill, Strub, Altche, Tallec, Richemond, Buchatskaya, Doersch, Pires, Guo, Azar, Piot, Kavukcuoglu,
Munos and Valko, Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning, NeurIPS 2020
(https://arxiv.org/abs/2006.07733).

The online network is the backbone, a projector g (MLP with BatchNorm and ReLU) and a predictor q
(same shape); the target network is an exponential moving average of backbone + projector
(:class:`selfsup.lib.teacher.EMATeacher`, momentum from ``base_momentum`` to ``final_momentum`` on a
cosine schedule over the optimizer steps, updated in :meth:`BYOL.after_step`). The loss is the
paper's symmetrised ``2 - 2 cos(q(z_1), z'_2) + 2 - 2 cos(q(z_2), z'_1)``, each term averaged over
the batch; the target gets no gradient. There are no negatives: the predictor and the slow target
are what keep the projections from collapsing to one point (``predictor_layers = 0`` removes the
predictor, the paper's ablation in which it collapses; ``embedding_std`` shows it). Every term is
per sample, so under DDP the mean of the ranks' losses is the loss of the global batch.

``predictor_lr_scale`` multiplies the predictor's learning rate (through the task's ``lr_scales``,
which the core's optimizer reads). The paper trains all parts at one rate; Tian, Chen and Ganguli
(Understanding Self-Supervised Learning Dynamics without Contrastive Pairs, ICML 2021,
https://arxiv.org/abs/2102.06810) analyse how the predictor's dynamics keep the online network from
collapsing. On mnist5k with a short schedule a 10 times faster predictor kept the features from
concentrating on a few directions (docs/vision.md).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.components import BuildContext, TaskOutput
from selfsup.lib import embedding_std
from selfsup.lib.teacher import EMATeacher
from selfsup_vision.tasks.siamese import two_views, view_alignment
from selfsup_vision.tasks.simclr import ProjectionHead


def byol_loss(
    p: torch.Tensor,  # [B, P] online predictions of one view
    z: torch.Tensor,  # [B, P] target projections of the other view (row i: the same image)
) -> torch.Tensor:
    """``mean_i (2 - 2 cos(p_i, z_i))`` (= the mean squared distance of the L2-normalised rows), in
    float32; ``z`` is detached (the target gets no gradient)."""
    with torch.autocast(p.device.type, enabled=False):
        cos = F.cosine_similarity(p.float(), z.detach().float(), dim=1)  # [B]
        return (2 - 2 * cos).mean()


class BYOL(nn.Module):
    """The BYOL task: ``batch["views"]: [B, 2, C, H, W]`` (the ``multi_view`` augmentation)."""

    def __init__(self, options: Any, backbone: nn.Module):
        super().__init__()
        o = options
        self.predictor_lr_scale = o.predictor_lr_scale
        self.projector = ProjectionHead(backbone.output_dim, o.projection_hidden_dim, o.projection_dim,
                                        o.projection_layers)
        self.predictor = (ProjectionHead(o.projection_dim, o.predictor_hidden_dim, o.projection_dim, o.predictor_layers)
                          if o.predictor_layers else nn.Identity())
        # The target: an EMA copy of backbone + projector (the student is referenced, not registered).
        self.teacher = EMATeacher(nn.Sequential(backbone, self.projector), base_momentum=o.base_momentum,
                                  final_momentum=o.final_momentum, schedule=o.momentum_schedule)

    def forward(self, batch: dict[str, Any], backbone: nn.Module) -> TaskOutput:
        x, b = two_views(batch, "byol")  # [2B, C, H, W]
        z = self.projector(backbone(x))  # [2B, P] online projections
        p = self.predictor(z)  # [2B, P] online predictions
        target = self.teacher(x)  # [2B, P] target projections, no gradient
        loss = byol_loss(p[:b], target[b:]) + byol_loss(p[b:], target[:b])
        metrics = {"embedding_std": embedding_std(z.detach()), "momentum": self.teacher.momentum.detach().clone()}
        return TaskOutput(loss=loss, metrics=metrics)

    def lr_scales(self) -> dict[nn.Parameter, float]:
        """The predictor's learning-rate multiplier (``predictor_lr_scale``; the rest: the run's rate)."""
        if self.predictor_lr_scale == 1.0:
            return {}
        return {p: self.predictor_lr_scale for p in self.predictor.parameters()}

    def after_step(self, step: int, total_steps: int) -> None:
        """Called by the core after each optimizer step: move the target toward the online network."""
        self.teacher.update(step, total_steps)

    def health(self, batch: dict[str, Any], backbone: nn.Module) -> dict[str, float]:
        return view_alignment(batch, backbone)


def build(options: Any, context: BuildContext) -> BYOL:
    return BYOL(options, context.backbone)
