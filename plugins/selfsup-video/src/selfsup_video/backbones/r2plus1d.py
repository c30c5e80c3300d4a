"""A small (2+1)D / 3D residual CNN for short, low-resolution clips.

Tran, Wang, Torresani, Ray, LeCun and Paluri, A Closer Look at Spatiotemporal Convolutions for
Action Recognition, CVPR 2018 (https://arxiv.org/abs/1711.11248). A (2+1)D convolution factorises
a ``t x k x k`` 3D convolution into a ``1 x k x k`` spatial convolution to ``M`` channels, a norm and
a ReLU, and a ``t x 1 x 1`` temporal convolution, with ``M = floor(t k^2 N_in N_out / (k^2 N_in + t
N_out))`` so that the pair has about the parameters of the 3D convolution (Sec. 3.5).

Sized for 16-64 px clips: a 3x3 stem with spatial stride 2, one residual stage per width with
spatial stride 2 between stages and temporal stride 1 everywhere, so :meth:`frame_features` has one vector per input
frame (each also sees its neighbours through the temporal kernels). ``forward(video [B, T, C, H, W])
-> [B, widths[-1]]``; ``embed`` reads ``batch["video"]``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch
from torch import nn

from selfsup.components import BuildContext


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm3d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)
    return nn.Identity()


def mid_channels(n_in: int, n_out: int, t: int, k: int) -> int:
    """Tran et al.'s ``M_i``: the (2+1)D pair's hidden channels matching the 3D conv's parameters."""
    return max(1, (t * k * k * n_in * n_out) // (k * k * n_in + t * n_out))


class SpatioTemporalConv(nn.Module):
    """``t x k x k`` convolution, factorised (2+1)D or full 3D; ``[B, C, T, H, W] -> [B, C', T, H', W']``
    (temporal stride 1, same temporal padding)."""

    def __init__(self, n_in: int, n_out: int, *, t: int, k: int = 3, stride: int = 1, conv: str, norm: str):
        super().__init__()
        if conv == "3d" or t == 1:
            self.conv = nn.Conv3d(n_in, n_out, (t, k, k), stride=(1, stride, stride), padding=(t // 2, k // 2, k // 2),
                                  bias=False)
        else:
            m = mid_channels(n_in, n_out, t, k)
            self.conv = nn.Sequential(
                nn.Conv3d(n_in, m, (1, k, k), stride=(1, stride, stride), padding=(0, k // 2, k // 2), bias=False),
                _norm(norm, m), nn.ReLU(inplace=True),
                nn.Conv3d(m, n_out, (t, 1, 1), padding=(t // 2, 0, 0), bias=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class ResidualBlock(nn.Module):
    """conv-norm-ReLU-conv-norm plus a (projected) shortcut, then ReLU (He et al. 2016's basic block)."""

    def __init__(self, n_in: int, n_out: int, stride: int, o: Any):
        super().__init__()
        t = o.temporal_kernel
        self.conv1 = SpatioTemporalConv(n_in, n_out, t=t, stride=stride, conv=o.conv, norm=o.norm)
        self.norm1 = _norm(o.norm, n_out)
        self.conv2 = SpatioTemporalConv(n_out, n_out, t=t, conv=o.conv, norm=o.norm)
        self.norm2 = _norm(o.norm, n_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or n_in != n_out:
            self.shortcut = nn.Sequential(nn.Conv3d(n_in, n_out, 1, stride=(1, stride, stride), bias=False),
                                          _norm(o.norm, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T, H, W]
        y = torch.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class R2Plus1D(nn.Module):
    """Stem and residual stages; pooled features ``[B, widths[-1]]``."""

    def __init__(self, o: Any):
        super().__init__()
        self.options = o
        w0 = o.widths[0]
        self.stem = nn.Sequential(SpatioTemporalConv(o.in_channels, w0, t=o.temporal_kernel, stride=2, conv=o.conv,
                                                     norm=o.norm), _norm(o.norm, w0), nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        c = w0
        for i, width in enumerate(o.widths):
            for j in range(o.blocks_per_stage):
                blocks.append(ResidualBlock(c, width, 2 if (i > 0 and j == 0) else 1, o))
                c = width
        self.stages = nn.Sequential(*blocks)
        self.output_dim = c

    def feature_map(self, video: torch.Tensor) -> torch.Tensor:
        """``video [B, T, C, H, W] -> [B, D, T, h, w]``."""
        if video.dim() != 5:
            raise ValueError(f"r2plus1d takes clips [B, T, C, H, W], got {tuple(video.shape)}")
        x = video.transpose(1, 2)  # [B, C, T, H, W]
        return self.stages(self.stem(x))  # [B, D, T, h, w]

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.feature_map(video).mean(dim=(2, 3, 4))  # [B, D]

    def frame_features(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, T, C, H, W] -> [B, T, D]``: the feature map pooled over space only (temporal stride 1)."""
        return self.feature_map(video).mean(dim=(3, 4)).transpose(1, 2)  # [B, T, D]

    def embed(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self(batch["video"])


def build_r2plus1d(o: Any, context: BuildContext) -> R2Plus1D:
    from selfsup.lib.pretrained import load_pretrained_into

    net = R2Plus1D(o)
    load_pretrained_into(net, o, type_name="r2plus1d", base_dir=context.base_dir, context=context)
    return net
