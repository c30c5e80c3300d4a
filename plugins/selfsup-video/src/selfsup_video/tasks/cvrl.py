"""CVRL: contrastive learning between two clips of one video.

Qian, Meng, Gong, Yang, Wang, Belongie and Cui, Spatiotemporal Contrastive Video Representation
Learning, CVPR 2021 (https://arxiv.org/abs/2008.03800).

The ``multi_clip`` augmentation cuts two clips from each video, each with its own temporal crop and
its own spatial augmentation applied identically to all of its frames (the paper's temporally
consistent augmentation): ``batch["clips"] [B, 2, T, C, H, W]``. Both clips go through the backbone
and a projection head (``projection_layers`` linear layers with BatchNorm and ReLU between them; 3
in the paper); the InfoNCE loss (:func:`selfsup.lib.info_nce`) treats each of the 2B L2-normalised
projections as an anchor whose positive is the other clip of its video and whose negatives are the
other 2B - 2 projections, at ``temperature`` (0.1 in the paper); under DDP the candidates are
gathered from every rank. The paper's sampling of the two clips' time gap (a decreasing
distribution, favouring nearby clips) is ``multi_clip``'s business. The head's BatchNorm is per
process (the paper syncs it across accelerators).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.components import BuildContext, TaskOutput
from selfsup.lib import info_nce


def projection_head(in_dim: int, hidden_dim: int, out_dim: int, layers: int) -> nn.Sequential:
    """``layers`` linear layers ``in_dim -> hidden_dim -> ... -> out_dim``, BatchNorm and ReLU between them."""
    modules: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        modules += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    modules.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*modules)


def clip_info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float,
                  gather: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``z1, z2 [B, P]`` projections of each video's two clips -> (loss, accuracy): every one of the 2B
    normalised projections is an anchor, its positive the other clip of its video, its candidates all
    2B projections but itself."""
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # [2B, P]
    positives = (torch.arange(2 * b, device=z.device) + b) % (2 * b)  # [2B]: z1[i] <-> z2[i]
    return info_nce(z, z, temperature=temperature, positives=positives, exclude_self=True, gather=gather)


class CVRL(nn.Module):
    def __init__(self, options: Any, context: BuildContext):
        super().__init__()
        self.options = options
        self.head = projection_head(int(context.backbone.output_dim), options.projection_hidden_dim,
                                    options.projection_dim, options.projection_layers)

    def forward(self, batch: dict[str, Any], backbone: nn.Module) -> TaskOutput:
        clips = batch.get("clips")
        if clips is None or clips.dim() != 6 or clips.shape[1] != 2:
            got = "none" if clips is None else tuple(clips.shape)
            raise ValueError(f"cvrl needs batch['clips'] of shape [B, 2, T, C, H, W] (multi_clip with clips = 2), "
                             f"got {got}")
        b = clips.shape[0]
        z = self.head(backbone(torch.cat([clips[:, 0], clips[:, 1]])))  # [2B, T, C, H, W] -> [2B, D] -> [2B, P]
        loss, accuracy = clip_info_nce(z[:b], z[b:], self.options.temperature, self.options.gather_distributed)
        return TaskOutput(loss=loss, metrics={"accuracy": accuracy.detach()})


def build(options: Any, context: BuildContext) -> CVRL:
    return CVRL(options, context)
