"""MoCo v3: contrast a query encoder's predictions with a momentum encoder's keys of the other view.

Chen, Xie and He, An Empirical Study of Training Self-Supervised Vision Transformers, ICCV 2021
(https://arxiv.org/abs/2104.02057).

The query encoder is the backbone, a projector (BatchNorm and ReLU between its layers and a
BatchNorm without affine parameters after the last, as in the paper's code) and a predictor; the
momentum encoder is an exponential moving average of backbone + projector
(:class:`selfsup.lib.teacher.EMATeacher`, cosine schedule from ``base_momentum`` to
``final_momentum``, updated in :meth:`MoCoV3.after_step`). There is no queue: the keys are the
momentum encoder's outputs for the batch, gathered from every DDP rank. The loss is the paper's
symmetrised InfoNCE, ``ctr(q_1, k_2) + ctr(q_2, k_1)`` with ``ctr(q, k) = 2 tau CE(q k^T / tau, i)``
on L2-normalised rows (:func:`selfsup.lib.info_nce`), so that its gradient scale does not depend
on the temperature. With a ViT backbone, ``freeze_patch_embed`` keeps the random patch projection
fixed, the paper's trick against the training instability of ViTs (section 4.2).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.components import BuildContext, TaskOutput
from selfsup.lib import embedding_std, info_nce
from selfsup.lib.teacher import EMATeacher
from selfsup_vision.tasks.siamese import two_views, view_alignment
from selfsup_vision.tasks.simclr import GlobalBatchNorm1d, ProjectionHead


def mocov3_loss(
    q1: torch.Tensor,  # [B, P] query-encoder predictions of the first views
    q2: torch.Tensor,  # [B, P] ... of the second views
    k1: torch.Tensor,  # [B, P] momentum-encoder keys of the first views (no gradient)
    k2: torch.Tensor,  # [B, P] ... of the second views
    temperature: float,
    *,
    gather: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ctr(q1, k2) + ctr(q2, k1), top-1 accuracy)`` with ``ctr(q, k) = 2 tau mean_i -log softmax_j(q_i.k_j / tau)_i``
    on L2-normalised rows, in float32. Under DDP (``gather``) the candidates are the keys of every rank."""
    with torch.autocast(q1.device.type, enabled=False):
        q1, q2 = F.normalize(q1.float(), dim=1), F.normalize(q2.float(), dim=1)  # [B, P]
        k1, k2 = F.normalize(k1.detach().float(), dim=1), F.normalize(k2.detach().float(), dim=1)  # [B, P]
        loss1, acc1 = info_nce(q1, k2, temperature=temperature, gather=gather)
        loss2, acc2 = info_nce(q2, k1, temperature=temperature, gather=gather)
    return 2 * temperature * (loss1 + loss2), (acc1 + acc2) / 2


def patch_embedding(backbone: nn.Module) -> nn.Module | None:
    """The patch embedding of a ViT backbone (a timm ViT's ``patch_embed``), or None."""
    model = getattr(backbone, "model", backbone)
    return getattr(model, "patch_embed", None)


class MoCoV3(nn.Module):
    """The MoCo v3 task: ``batch["views"]: [B, 2, C, H, W]`` (the ``multi_view`` augmentation)."""

    def __init__(self, options: Any, backbone: nn.Module):
        super().__init__()
        o = options
        self.temperature = o.temperature
        self.gather_distributed = o.gather_distributed
        if o.freeze_patch_embed:
            embedding = patch_embedding(backbone)
            if embedding is None:
                raise ValueError(f"mocov3: freeze_patch_embed needs a ViT backbone with a patch embedding; "
                                 f"{type(backbone).__name__} has none")
            embedding.requires_grad_(False)
        self.projector = nn.Sequential(
            ProjectionHead(backbone.output_dim, o.projection_hidden_dim, o.projection_dim, o.projection_layers),
            GlobalBatchNorm1d(o.projection_dim, affine=False),
        )
        self.predictor = ProjectionHead(o.projection_dim, o.predictor_hidden_dim, o.projection_dim, o.predictor_layers)
        # The momentum encoder: an EMA copy of backbone + projector (the student is referenced, not registered).
        self.teacher = EMATeacher(nn.Sequential(backbone, self.projector), base_momentum=o.base_momentum,
                                  final_momentum=o.final_momentum, schedule=o.momentum_schedule)

    def forward(self, batch: dict[str, Any], backbone: nn.Module) -> TaskOutput:
        x, b = two_views(batch, "mocov3")  # [2B, C, H, W]
        z = self.projector(backbone(x))  # [2B, P] query-encoder projections
        q = self.predictor(z)  # [2B, P] queries
        k = self.teacher(x)  # [2B, P] keys, no gradient
        loss, accuracy = mocov3_loss(q[:b], q[b:], k[:b], k[b:], self.temperature, gather=self.gather_distributed)
        metrics = {"accuracy": accuracy.detach(), "embedding_std": embedding_std(z.detach()),
                   "momentum": self.teacher.momentum.detach().clone()}
        return TaskOutput(loss=loss, metrics=metrics)

    def after_step(self, step: int, total_steps: int) -> None:
        """Called by the core after each optimizer step: move the momentum encoder toward the query encoder."""
        self.teacher.update(step, total_steps)

    def health(self, batch: dict[str, Any], backbone: nn.Module) -> dict[str, float]:
        return view_alignment(batch, backbone)


def build(options: Any, context: BuildContext) -> MoCoV3:
    return MoCoV3(options, context.backbone)
