"""A video ViT over tubes: the encoder of VideoMAE, small enough for 32x32 clips on a CPU.

Tong, Song, Wang and Wang, VideoMAE: Masked Autoencoders are Data-Efficient Learners for
Self-Supervised Video Pre-Training, NeurIPS 2022 (https://arxiv.org/abs/2203.12602); the tube
embedding is ViViT's (Arnab et al., ICCV 2021). A clip ``[B, T, C, H, W]`` is cut into tubes of
``tube_frames x patch_size x patch_size`` pixels, each linearly embedded (a Conv3d with kernel =
stride = the tube), giving ``L = (T/t) (H/p) (W/p)`` tokens in (time, row, column) order. Fixed
sine-cosine positions (computed for the clip's own grid, so any clip size that the tubes divide
works) are added; pre-norm transformer blocks (timm's ``Block``), a final LayerNorm; ``forward``
averages the tokens (``[B, dim]``). No class token (VideoMAE has none).

For VideoMAE it offers :meth:`patchify` (the pixels of each tube, targets), :meth:`grid`,
:meth:`embed_tokens` (tube embeddings plus positions) and :meth:`encode_visible` (the blocks on a
subset of the tokens): the encoder runs on the visible tubes only.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from selfsup.components import BuildContext


def _sincos(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """``positions [L]`` -> ``[L, dim]``: sin and cos of ``dim / 2`` geometric frequencies (Vaswani et al.)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))  # [dim/2]
    angles = positions.double()[:, None] * omega[None]  # [L, dim/2]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_positions_3d(dim: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """Fixed space-time sine-cosine positions ``[gt*gh*gw, dim]`` in (time, row, column) order: half of
    the channels encode time, a quarter the row and a quarter the column (``dim`` a multiple of 8)."""
    if dim % 8:
        raise ValueError(f"space-time sine-cosine positions need a dimension divisible by 8, got {dim}")
    gt, gh, gw = grid
    t, r, c = torch.meshgrid(torch.arange(gt), torch.arange(gh), torch.arange(gw), indexing="ij")
    return torch.cat([_sincos(t.flatten(), dim // 2), _sincos(r.flatten(), dim // 4),
                      _sincos(c.flatten(), dim // 4)], dim=1).float()  # [L, dim]


class VideoViT(nn.Module):
    def __init__(self, o: Any):
        super().__init__()
        from timm.models.vision_transformer import Block

        self.options = o
        self.tube = (o.tube_frames, o.patch_size, o.patch_size)
        self.in_channels = o.in_channels
        self.patch_embed = nn.Conv3d(o.in_channels, o.dim, kernel_size=self.tube, stride=self.tube)
        self.blocks = nn.ModuleList(Block(o.dim, o.heads, mlp_ratio=o.mlp_ratio, qkv_bias=True,
                                          norm_layer=nn.LayerNorm) for _ in range(o.depth))
        self.norm = nn.LayerNorm(o.dim)
        self.output_dim = o.dim
        self._positions: dict[tuple[int, int, int], torch.Tensor] = {}
        self.apply(_init)

    # ------------------------------------------------------------------ tubes

    def grid(self, video: torch.Tensor) -> tuple[int, int, int]:
        """``(T/t, H/p, W/p)`` for ``video [B, T, C, H, W]``; a ValueError if the tubes do not divide it."""
        if video.dim() != 5:
            raise ValueError(f"video_vit takes clips [B, T, C, H, W], got {tuple(video.shape)}")
        _, t, c, h, w = video.shape
        if c != self.in_channels:
            raise ValueError(f"video_vit has in_channels = {self.in_channels}, the clip has {c} channels")
        if t % self.tube[0] or h % self.tube[1] or w % self.tube[2]:
            raise ValueError(f"a clip of {t} frames of {h}x{w} is not divisible into tubes of {self.tube[0]} frames "
                             f"x {self.tube[1]}x{self.tube[2]} pixels")
        return t // self.tube[0], h // self.tube[1], w // self.tube[2]

    def patchify(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, T, C, H, W] -> [B, L, t*p*p*C]``: each tube's pixels, tubes in token order, pixels in
        (frame, row, column, channel) order."""
        gt, gh, gw = self.grid(video)
        b, _, c = video.shape[:3]
        t, p, _ = self.tube
        x = video.reshape(b, gt, t, c, gh, p, gw, p)  # [B, gt, t, C, gh, p, gw, p]
        x = x.permute(0, 1, 4, 6, 2, 5, 7, 3)  # [B, gt, gh, gw, t, p, p, C]
        return x.reshape(b, gt * gh * gw, t * p * p * c)

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """Inverse of :meth:`patchify`: ``[B, L, t*p*p*C] -> [B, T, C, H, W]``."""
        gt, gh, gw = grid
        t, p, _ = self.tube
        b, c = x.shape[0], self.in_channels
        x = x.reshape(b, gt, gh, gw, t, p, p, c).permute(0, 1, 4, 7, 2, 5, 3, 6)  # [B, gt, t, C, gh, p, gw, p]
        return x.reshape(b, gt * t, c, gh * p, gw * p)

    def positions(self, grid: tuple[int, int, int], device: torch.device) -> torch.Tensor:
        """The fixed positions ``[L, dim]`` of ``grid`` (cached per grid, not a parameter or buffer)."""
        pos = self._positions.get(grid)
        if pos is None or pos.device != device:
            pos = self._positions[grid] = sincos_positions_3d(self.output_dim, grid).to(device)
        return pos

    def embed_tokens(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, T, C, H, W] -> [B, L, dim]``: tube embeddings plus their positions."""
        grid = self.grid(video)
        x = self.patch_embed(video.transpose(1, 2))  # [B, dim, gt, gh, gw]
        x = x.flatten(2).transpose(1, 2)  # [B, L, dim] in (time, row, column) order
        return x + self.positions(grid, x.device).to(x.dtype)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """The blocks and the final norm on ``tokens [B, K, dim]`` (any subset, positions already added)."""
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def encode_visible(self, video: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """``video [B, T, C, H, W]``, ``visible [B, K]`` token indices -> encoded visible tokens ``[B, K, dim]``."""
        x = self.embed_tokens(video)  # [B, L, dim]
        x = torch.gather(x, 1, visible[:, :, None].expand(-1, -1, x.shape[-1]))  # [B, K, dim]
        return self.encode(x)

    # ------------------------------------------------------------------ backbone

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.encode(self.embed_tokens(video)).mean(dim=1)  # [B, dim]

    def embed(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self(batch["video"])


def _init(module: nn.Module) -> None:
    """As MAE/VideoMAE: xavier-uniform linear weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv3d):  # the tube embedding, as a linear layer on flattened tubes
        nn.init.xavier_uniform_(module.weight.view(module.weight.shape[0], -1))


def build_video_vit(o: Any, context: BuildContext) -> VideoViT:
    from selfsup.lib.pretrained import load_pretrained_into

    net = VideoViT(o)
    load_pretrained_into(net, o, type_name="video_vit", base_dir=context.base_dir, context=context)
    return net
