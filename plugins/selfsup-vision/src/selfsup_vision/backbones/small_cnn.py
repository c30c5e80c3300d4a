"""A small VGG-style CNN for tiny images (8-32 px).

Its ``embed`` takes ``batch["image"]`` (``[B, C, H, W]``); it exposes ``output_dim``. ``pretrained``
starts it from a state dict of the same architecture: a local file or folder, a ``selfsup export``
folder of a ``small_cnn`` backbone, or ``hf:org/name`` holding either (strict by default)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from selfsup.components import BuildContext


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    return nn.Identity()


class SmallCNN(nn.Module):
    """Stages of ``blocks_per_stage`` x (conv3x3-norm-ReLU), 2x max-pool between stages, global
    average pool: ``[B, C, H, W] -> [B, widths[-1]]``."""

    def __init__(self, o: Any):
        super().__init__()
        layers: list[nn.Module] = []
        c = o.in_channels
        for i, width in enumerate(o.widths):
            for _ in range(o.blocks_per_stage):
                layers += [nn.Conv2d(c, width, 3, padding=1, bias=o.norm == "none"), _norm(o.norm, width),
                           nn.ReLU(inplace=True)]
                c = width
            if i < len(o.widths) - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.output_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))  # [B, C', h, w] -> [B, C']

    def embed(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self(batch["image"])

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """One group per conv block (the conv and its norm), input side first: fine-tuning's layers."""
        groups: list[list[nn.Parameter]] = []
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                groups.append([])
            if groups:
                groups[-1].extend(module.parameters())
        return groups


def build_small_cnn(o: Any, context: BuildContext) -> SmallCNN:
    from selfsup.lib.pretrained import load_pretrained_into

    net = SmallCNN(o)
    load_pretrained_into(net, o, type_name="small_cnn", base_dir=context.base_dir, context=context)
    return net
