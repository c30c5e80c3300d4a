"""VideoMAE: masked autoencoding of video with tube masking at a very high ratio.

Tong, Song, Wang and Wang, VideoMAE: Masked Autoencoders are Data-Efficient Learners for
Self-Supervised Video Pre-Training, NeurIPS 2022 (https://arxiv.org/abs/2203.12602).

The backbone (``video_vit``) cuts a clip into tubes of ``t x p x p`` pixels. *Tube masking* hides
``mask_ratio`` (0.9 in the paper) of the spatial patch positions, the same positions in every
temporal slice, so a masked patch cannot be copied from the next frames (video is temporally
redundant: random per-token masking would leak it). The encoder sees the visible tubes only; a light
decoder (its own width, pre-norm blocks, fixed space-time sine-cosine positions) gets the encoded
visible tokens plus a shared learned mask token at every masked position and predicts each tube's
pixels. The loss is the mean squared error on the masked tubes only, against pixels normalised per
tube and channel (``(x - mean) / (std + 1e-6)`` over the tube's pixels, unbiased std: the paper's
code) when ``norm_pix_loss``. Masks come from a generator seeded by (run seed, task name, step, the
batch's sample indices), never from global random state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from selfsup.components import BuildContext, TaskOutput
from selfsup_video.backbones.video_vit import sincos_positions_3d
from selfsup_video.tasks.common import StepCounter, video_of

NORM_PIX_EPS = 1e-6  # added to the std, as in VideoMAE's code


def tube_mask(b: int, grid: tuple[int, int, int], ratio: float, generator: torch.Generator) -> torch.Tensor:
    """``[b, gt*gh*gw]`` bool (True = masked), tokens in (time, row, column) order:
    ``round(ratio * gh * gw)`` spatial positions per clip, masked in every temporal slice."""
    gt, gh, gw = grid
    spatial = gh * gw
    masked = round(ratio * spatial)
    if not 0 < masked < spatial:
        raise ValueError(f"mask_ratio {ratio} masks {masked} of {spatial} patch positions; at least one must be masked "
                         f"and one visible")
    order = torch.rand(b, spatial, generator=generator).argsort(dim=1)  # [b, S]
    mask = torch.zeros(b, spatial, dtype=torch.bool)
    mask.scatter_(1, order[:, :masked], True)  # [b, S]
    return mask[:, None, :].expand(b, gt, spatial).reshape(b, gt * spatial)  # [b, L]


def normalised_targets(patches: torch.Tensor, channels: int) -> torch.Tensor:
    """``[B, L, t*p*p*C]`` tube pixels (channel last) normalised per tube and channel by the mean and
    unbiased std of the tube's ``t*p*p`` pixels (+1e-6 on the std)."""
    b, n, d = patches.shape
    x = patches.reshape(b, n, d // channels, channels)  # [B, L, t*p*p, C]
    x = (x - x.mean(dim=-2, keepdim=True)) / (x.var(dim=-2, unbiased=True, keepdim=True).sqrt() + NORM_PIX_EPS)
    return x.reshape(b, n, d)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the masked tokens only: ``pred, target [B, L, P]``, ``mask [B, L]`` bool."""
    return (pred - target)[mask].pow(2).mean()


def _require_tubes(backbone: Any) -> None:
    needed = ("patchify", "grid", "embed_tokens", "encode")
    missing = [m for m in needed if not callable(getattr(backbone, m, None))]
    if missing:
        raise ValueError(f"videomae needs a tube ViT backbone ('video_vit': {', '.join(needed)}); "
                         f"{type(backbone).__name__} lacks {', '.join(missing)}")


class VideoMAE(StepCounter):
    """The decoder and mask token; the encoder is the backbone."""

    def __init__(self, options: Any, context: BuildContext):
        super().__init__(context.seed, context.name)
        from timm.models.vision_transformer import Block

        backbone = context.backbone
        _require_tubes(backbone)
        self.options = options
        t, p, _ = backbone.tube
        self.channels = int(backbone.in_channels)
        d = options.decoder_dim
        self.decoder_embed = nn.Linear(int(backbone.output_dim), d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        self.decoder_blocks = nn.ModuleList(Block(d, options.decoder_heads, mlp_ratio=4.0, qkv_bias=True,
                                                  norm_layer=nn.LayerNorm) for _ in range(options.decoder_depth))
        self.decoder_norm = nn.LayerNorm(d)
        self.decoder_pred = nn.Linear(d, t * p * p * self.channels)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def decode(self, latent: torch.Tensor, mask: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """Encoded visible tokens ``[B, K, E]`` and ``mask [B, L]`` -> predicted tube pixels ``[B, L, t*p*p*C]``."""
        b, n = mask.shape
        x = self.decoder_embed(latent)  # [B, K, d]
        full = self.mask_token.to(x.dtype).expand(b, n, -1).clone()  # [B, L, d]
        full[~mask] = x.reshape(-1, x.shape[-1])  # visible tokens back at their positions (row-major order kept)
        full = full + sincos_positions_3d(full.shape[-1], grid).to(full)  # [B, L, d]
        for block in self.decoder_blocks:
            full = block(full)
        return self.decoder_pred(self.decoder_norm(full))  # [B, L, t*p*p*C]

    def forward(self, batch: dict[str, Any], backbone: nn.Module) -> TaskOutput:
        video = video_of(batch, "videomae")  # [B, T, C, H, W]
        grid = backbone.grid(video)
        b = video.shape[0]
        mask = tube_mask(b, grid, self.options.mask_ratio, self.generator(batch)).to(video.device)  # [B, L]
        visible = (~mask).nonzero()[:, 1].reshape(b, -1)  # [B, K] token ids, increasing
        tokens = backbone.embed_tokens(video)  # [B, L, E]
        latent = backbone.encode(torch.gather(tokens, 1, visible[:, :, None].expand(-1, -1, tokens.shape[-1])))
        pred = self.decode(latent, mask, grid).float()  # [B, L, P]
        pixels = backbone.patchify(video).float()  # [B, L, P]
        target = normalised_targets(pixels, self.channels) if self.options.norm_pix_loss else pixels
        return TaskOutput(loss=masked_mse(pred, target, mask))


def build(options: Any, context: BuildContext) -> VideoMAE:
    return VideoMAE(options, context)
