"""A multilayer perceptron backbone for vector inputs."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from selfsup.builtins.options import MLPOptions


class MLP(nn.Module):
    """``input [B, in_dim] -> features [B, out_dim]`` through Linear(-LayerNorm)-GELU blocks."""

    def __init__(self, options: MLPOptions):
        super().__init__()
        layers: list[nn.Module] = []
        width = options.in_dim
        for hidden in options.hidden_dims:
            layers.append(nn.Linear(width, hidden))
            if options.norm:
                layers.append(nn.LayerNorm(hidden))
            layers.append(nn.GELU())
            if options.dropout:
                layers.append(nn.Dropout(options.dropout))
            width = hidden
        layers.append(nn.Linear(width, options.out_dim))
        self.net = nn.Sequential(*layers)
        self.output_dim = options.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))  # [B, ...] -> [B, out_dim]

    def embed(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self(batch["input"])

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """One group per Linear (with the LayerNorm after it), input side first."""
        groups: list[list[nn.Parameter]] = []
        for module in self.net:
            if isinstance(module, nn.Linear):
                groups.append([])
            groups[-1].extend(module.parameters())
        return groups
