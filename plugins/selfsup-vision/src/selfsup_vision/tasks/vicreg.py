"""VICReg: variance, invariance and covariance regularisation of two views' embeddings.

Bardes, Ponce and LeCun, VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning, ICLR 2022 (https://arxiv.org/abs/2105.04906).

Both views go through the backbone and an expander (MLP with BatchNorm and ReLU). The loss is
``lambda s(z_1, z_2) + mu [v(z_1) + v(z_2)] / 2 + nu [c(z_1) + c(z_2)]``: the invariance ``s`` is the
mean squared error between the views; the variance ``v`` a hinge ``mean_j max(0, gamma - sqrt(Var(z_.j) +
eps))`` with gamma = 1 on each dimension's standard deviation over the batch; the covariance ``c`` the
sum of the squared off-diagonal entries of the embeddings' covariance matrix divided by the dimension
P. Without the variance term (``variance_weight = 0``) nothing stops every embedding from becoming
the same vector (``embedding_std`` and ``std`` show it). Under DDP the embeddings of every rank are
gathered (with gradients) first, so all three terms are those of the global batch.
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


def _variance(z: torch.Tensor, eps: float) -> torch.Tensor:  # z: [N, P] -> []
    std = torch.sqrt(z.var(dim=0) + eps)  # [P], unbiased variance
    return F.relu(1 - std).mean()


def _covariance(z: torch.Tensor) -> torch.Tensor:  # z: [N, P] -> []
    n, p = z.shape
    z = z - z.mean(dim=0)
    cov = z.T @ z / (n - 1)  # [P, P]
    return (cov.pow(2).sum() - torch.diagonal(cov).pow(2).sum()) / p


def vicreg_loss(
    z1: torch.Tensor,  # [B, P] embeddings of the first views
    z2: torch.Tensor,  # [B, P] embeddings of the second views (row i: the same image)
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    eps: float = 1e-4,
    *,
    gather: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(loss, {"invariance", "variance", "covariance"})``: the weighted VICReg loss and its three
    unweighted terms, over the global batch under DDP (``gather``), in float32."""
    with torch.autocast(z1.device.type, enabled=False):
        z1 = gather_with_grad(z1.float()) if gather else z1.float()  # [N, P], N = W*B
        z2 = gather_with_grad(z2.float()) if gather else z2.float()  # [N, P]
        terms = {
            "invariance": F.mse_loss(z1, z2),
            "variance": (_variance(z1, eps) + _variance(z2, eps)) / 2,
            "covariance": _covariance(z1) + _covariance(z2),
        }
        loss = (invariance_weight * terms["invariance"] + variance_weight * terms["variance"]
                + covariance_weight * terms["covariance"])
    return loss, terms


class VICReg(nn.Module):
    """The VICReg task: ``batch["views"]: [B, 2, C, H, W]`` (the ``multi_view`` augmentation)."""

    def __init__(self, options: Any, in_dim: int):
        super().__init__()
        o = options
        self.weights = (o.invariance_weight, o.variance_weight, o.covariance_weight)
        self.eps = o.variance_eps
        self.gather_distributed = o.gather_distributed
        self.expander = ProjectionHead(in_dim, o.projection_hidden_dim, o.projection_dim, o.projection_layers)

    def forward(self, batch: dict[str, Any], backbone: nn.Module) -> TaskOutput:
        x, b = two_views(batch, "vicreg")  # [2B, C, H, W]
        z = self.expander(backbone(x))  # [2B, P]
        loss, terms = vicreg_loss(z[:b], z[b:], *self.weights, self.eps, gather=self.gather_distributed)
        zd = z.detach()
        metrics = {**{k: v.detach() for k, v in terms.items()}, "embedding_std": embedding_std(zd),
                   "std": zd.float().std(dim=0).mean()}  # the raw per-dimension std the variance term acts on
        return TaskOutput(loss=loss, metrics=metrics)

    def health(self, batch: dict[str, Any], backbone: nn.Module) -> dict[str, float]:
        return view_alignment(batch, backbone)


def build(options: Any, context: BuildContext) -> VICReg:
    return VICReg(options, context.backbone.output_dim)
