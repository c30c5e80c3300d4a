"""InfoNCE between two views (van den Oord et al., Representation Learning with Contrastive
Predictive Coding, 2018), with negatives gathered across DDP ranks (:func:`selfsup.lib.info_nce`)."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import nn

from selfsup.components import TaskOutput
from selfsup.lib import info_nce


class InfoNCETask(nn.Module):
    def __init__(self, options: Any, in_dim: int):
        super().__init__()
        self.temperature = options.temperature
        self.head = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, options.projection_dim))

    def forward(self, batch: dict[str, Any], backbone: nn.Module) -> TaskOutput:
        views = batch["views"]  # [B, V, D]
        z1 = F.normalize(self.head(backbone(views[:, 0])), dim=1)  # [B, P]
        z2 = F.normalize(self.head(backbone(views[:, 1])), dim=1)  # [B, P]
        loss, accuracy = info_nce(z1, z2, temperature=self.temperature)  # negatives: z2 of every rank
        return TaskOutput(loss=loss, metrics={"accuracy": accuracy.detach()})
