"""InfoNCE between two views (van den Oord et al., Representation Learning with Contrastive
Predictive Coding, 2018), with negatives gathered across DDP ranks."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.components import TaskOutput
from selfsup.train.distributed import gather_with_grad, local_offset


class InfoNCETask(nn.Module):
    def __init__(self, options: Any, in_dim: int):
        super().__init__()
        self.temperature = options.temperature
        self.head = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, options.projection_dim))

    def forward(self, batch: dict[str, Any], backbone: nn.Module) -> TaskOutput:
        views = batch["views"]  # [B, V, D]
        b = views.shape[0]
        z1 = F.normalize(self.head(backbone(views[:, 0])), dim=1)  # [B, P]
        z2 = F.normalize(self.head(backbone(views[:, 1])), dim=1)  # [B, P]
        all_z2 = gather_with_grad(z2)  # [W*B, P]
        logits = z1 @ all_z2.T / self.temperature  # [B, W*B]
        target = torch.arange(b, device=logits.device) + local_offset(b)
        loss = F.cross_entropy(logits, target)
        accuracy = (logits.argmax(1) == target).float().mean()
        return TaskOutput(loss=loss, metrics={"accuracy": accuracy.detach()})
