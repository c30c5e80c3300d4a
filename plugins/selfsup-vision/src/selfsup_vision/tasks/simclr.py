"""SimCLR: contrastive learning between two augmented views of each image.

Chen, Kornblith, Norouzi and Hinton, A Simple Framework for Contrastive Learning of Visual
Representations, ICML 2020 (https://arxiv.org/abs/2002.05709).

Both views of a batch go through the backbone and a projection head (an MLP with BatchNorm and
ReLU between its linear layers); the NT-Xent loss then treats each of the 2N projections as an
anchor whose positive is the other view of the same image and whose negatives are the other 2N-2
projections. Under DDP the candidates are gathered from every rank (with gradients), so the
negatives come from the global batch, and the head's BatchNorm normalises over the global batch
too ("global BN" in the paper), so that 2 processes compute what 1 process computes on the same
global batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.components import BuildContext, TaskOutput
from selfsup.lib import alignment, gather_with_grad, info_nce, local_offset, world_size


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over the global batch under DDP (SimCLR's "global BN"); plain BatchNorm otherwise.

    In training with several processes, the rows of every rank are gathered (with gradients), the
    whole batch is normalised (the same statistics on every rank, so running statistics stay
    identical) and this rank's rows are returned."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, D]
        if not self.training or world_size() == 1:
            return super().forward(x)
        full = gather_with_grad(x)  # [W*B, D]
        start = local_offset(x.shape[0])
        return super().forward(full)[start : start + x.shape[0]]  # [B, D]


class ProjectionHead(nn.Sequential):
    """``layers`` linear layers ``in_dim -> hidden_dim -> ... -> out_dim`` with BatchNorm and ReLU
    between them (SimCLR's projection head g; ``layers = 1`` is a single linear map)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, layers: int):
        modules: list[nn.Module] = []
        dim = in_dim
        for _ in range(layers - 1):
            modules += [nn.Linear(dim, hidden_dim, bias=False), GlobalBatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
            dim = hidden_dim
        modules.append(nn.Linear(dim, out_dim))
        super().__init__(*modules)


def nt_xent(
    z1: torch.Tensor,  # [B, P] projections of the first views
    z2: torch.Tensor,  # [B, P] projections of the second views (row i is the same image as z1[i])
    temperature: float,
    *,
    gather: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The NT-Xent loss (normalised temperature-scaled cross entropy) and positive-pair accuracy.

    Every one of the 2B local projections is an anchor; its candidates are all 2B projections
    (2*W*B with ``gather`` under DDP, gathered with gradients) except itself, its positive is the
    other view of its image (:func:`selfsup.lib.info_nce` with ``exclude_self``). Returns ``(loss,
    accuracy)``: the mean cross entropy over the local anchors, and the fraction of anchors whose most
    similar candidate is their positive.
    With W ranks each computing this on its share of the global batch, the mean of the W losses
    is the loss of one process on the whole batch."""
    b = z1.shape[0]
    with torch.autocast(z1.device.type, enabled=False):  # the loss in float32, also under bf16/fp16
        z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # [2B, P]: the local anchors, also the candidates
        positives = (torch.arange(2 * b, device=z.device) + b) % (2 * b)  # [2B]: z1[i] <-> z2[i]
        loss, accuracy = info_nce(z, z, temperature=temperature, positives=positives, exclude_self=True, gather=gather)
    return loss, accuracy


class SimCLR(nn.Module):
    """The SimCLR task: ``batch["views"]: [B, 2, C, H, W]`` (the ``multi_view`` augmentation)."""

    def __init__(self, options: Any, in_dim: int):
        super().__init__()
        self.temperature = options.temperature
        self.gather_distributed = options.gather_distributed
        self.head = ProjectionHead(in_dim, options.projection_hidden_dim, options.projection_dim,
                                   options.projection_layers)

    def forward(self, batch: dict[str, Any], backbone: nn.Module) -> TaskOutput:
        views = batch["views"]  # [B, V, C, H, W]
        if views.dim() != 5 or views.shape[1] != 2:
            raise ValueError(f"simclr needs batch['views'] of shape [B, 2, C, H, W] (multi_view with views = 2), got "
                             f"{tuple(views.shape)}")
        b = views.shape[0]
        x = torch.cat([views[:, 0], views[:, 1]])  # [2B, C, H, W]: both views in one forward
        z = self.head(backbone(x))  # [2B, P]
        loss, accuracy = nt_xent(z[:b], z[b:], self.temperature, gather=self.gather_distributed)
        return TaskOutput(loss=loss, metrics={"accuracy": accuracy.detach()})

    def health(self, batch: dict[str, Any], backbone: nn.Module) -> dict[str, float]:
        """Training-health extra (called by the core in eval mode without gradients): the alignment
        (Wang and Isola 2020) of the backbone features of the two views, which the core cannot measure
        because ``embed`` reads the unaugmented ``image``."""
        views = batch["views"]  # [B, 2, C, H, W]
        b = views.shape[0]
        h = backbone(torch.cat([views[:, 0], views[:, 1]]))  # [2B, D]
        return {"alignment": float(alignment(h[:b], h[b:]))}


def build(options: Any, context: BuildContext) -> SimCLR:
    return SimCLR(options, context.backbone.output_dim)
