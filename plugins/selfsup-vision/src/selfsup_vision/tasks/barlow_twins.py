"""Barlow Twins: make the cross-correlation matrix of two views' embeddings the identity.

Zbontar, Jing, Misra, LeCun and Deny, Barlow Twins: Self-Supervised Learning via Redundancy
Reduction, ICML 2021 (https://arxiv.org/abs/2103.03230).

Both views go through the backbone and a projector (MLP with BatchNorm and ReLU). Each embedding
dimension is standardised over the batch (zero mean, unit variance: a BatchNorm without affine
parameters, as the paper's code), the P x P cross-correlation ``C = z_1^T z_2 / N`` is formed and the
loss is ``sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2``: invariance on the diagonal, redundancy
reduction off it (lambda = ``off_diagonal_weight``, 0.0051 in the paper). Under DDP the embeddings of
every rank are gathered (with gradients) first, so C and the loss are those of the global batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.components import BuildContext, TaskOutput
from selfsup.lib import embedding_std, gather_with_grad
from selfsup_vision.tasks.siamese import two_views, view_alignment
from selfsup_vision.tasks.simclr import ProjectionHead


def barlow_twins_loss(
    z1: torch.Tensor,  # [B, P] embeddings of the first views
    z2: torch.Tensor,  # [B, P] embeddings of the second views (row i: the same image)
    off_diagonal_weight: float,
    *,
    gather: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, C [P, P])``: the Barlow Twins loss of the cross-correlation C of the batch-standardised
    embeddings (over the global batch under DDP with ``gather``), in float32."""
    with torch.autocast(z1.device.type, enabled=False):
        z1 = gather_with_grad(z1.float()) if gather else z1.float()  # [N, P], N = W*B
        z2 = gather_with_grad(z2.float()) if gather else z2.float()  # [N, P]
        n = z1.shape[0]
        a = F.batch_norm(z1, None, None, training=True)  # [N, P]: per dimension mean 0, (biased) variance 1
        b = F.batch_norm(z2, None, None, training=True)  # [N, P]
        c = a.T @ b / n  # [P, P]
        diagonal = torch.diagonal(c)  # [P]
        on = (1 - diagonal).pow(2).sum()
        off = c.pow(2).sum() - diagonal.pow(2).sum()
        return on + off_diagonal_weight * off, c


class BarlowTwins(nn.Module):
    """The Barlow Twins task: ``batch["views"]: [B, 2, C, H, W]`` (the ``multi_view`` augmentation)."""

    def __init__(self, options: Any, in_dim: int):
        super().__init__()
        self.off_diagonal_weight = options.off_diagonal_weight
        self.gather_distributed = options.gather_distributed
        self.projector = ProjectionHead(in_dim, options.projection_hidden_dim, options.projection_dim,
                                        options.projection_layers)

    def forward(self, batch: dict[str, Any], backbone: nn.Module) -> TaskOutput:
        x, b = two_views(batch, "barlow_twins")  # [2B, C, H, W]
        z = self.projector(backbone(x))  # [2B, P]
        loss, c = barlow_twins_loss(z[:b], z[b:], self.off_diagonal_weight, gather=self.gather_distributed)
        diagonal = torch.diagonal(c).detach()  # [P]
        metrics = {"on_diagonal": diagonal.mean(), "embedding_std": embedding_std(z.detach())}
        return TaskOutput(loss=loss, metrics=metrics)

    def health(self, batch: dict[str, Any], backbone: nn.Module) -> dict[str, float]:
        return view_alignment(batch, backbone)


def build(options: Any, context: BuildContext) -> BarlowTwins:
    return BarlowTwins(options, context.backbone.output_dim)
