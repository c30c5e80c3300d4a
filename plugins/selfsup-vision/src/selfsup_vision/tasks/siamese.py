"""What the two-view joint-embedding tasks (BYOL, MoCo v3, Barlow Twins, VICReg) share: reading the
two views of the ``multi_view`` augmentation and the view-alignment health extra."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from selfsup.lib import alignment


def two_views(batch: dict[str, Any], task: str) -> tuple[torch.Tensor, int]:
    """``batch["views"]: [B, 2, C, H, W]`` -> ``(x [2B, C, H, W], B)``: the first views, then the
    second views, for one forward pass of both."""
    views = batch["views"]  # [B, V, C, H, W]
    if views.dim() != 5 or views.shape[1] != 2:
        raise ValueError(f"{task} needs batch['views'] of shape [B, 2, C, H, W] (multi_view with views = 2), got "
                         f"{tuple(views.shape)}")
    return torch.cat([views[:, 0], views[:, 1]]), views.shape[0]  # [2B, C, H, W]


def view_alignment(batch: dict[str, Any], backbone: nn.Module) -> dict[str, float]:
    """Training-health extra (called by the core in eval mode without gradients): the alignment
    (Wang and Isola 2020) of the backbone features of the two views, which the core cannot measure
    because ``embed`` reads the unaugmented ``image``."""
    x, b = two_views(batch, "health")
    h = backbone(x)  # [2B, D]
    return {"alignment": float(alignment(h[:b], h[b:]))}
