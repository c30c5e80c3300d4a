"""Masked autoencoder (MAE).

He, Chen, Xie, Li, Dollar, Girshick, Masked Autoencoders Are Scalable Vision Learners, CVPR 2022.

A random ``mask_ratio`` of an image's patches is dropped; the encoder (the backbone's own timm
VisionTransformer: patch embedding, position embedding, blocks, final norm) sees the visible
patches only; a light transformer decoder gets the encoded visible tokens plus a shared learned
mask token at every masked position (with its own position embedding) and predicts each patch's
pixels. The loss is the mean squared error on the masked patches only, against per-patch
normalised pixels when ``norm_pix_loss`` is set.

The backbone must be ``type = "timm"`` with a ViT (e.g. ``name = "vit_tiny_patch16_224"``, and
``img_size`` / ``patch_size`` / ``kwargs`` to size it for small images). Its ``embed`` (used by
evaluators) is unchanged: the full, unmasked image through the same ViT, pooled as timm pools it.
Under DDP, a ViT built with ``global_pool = "map"`` has an attention-pool head MAE never uses:
set ``train.find_unused_parameters = true`` then.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from selfsup.components import BuildContext, TaskOutput

NORM_PIX_EPS = 1e-6  # as in the paper's code: (x - mean) / sqrt(var + 1e-6)


# ------------------------------------------------------------------------------ patches and masks


def patchify(imgs: torch.Tensor, patch: int) -> torch.Tensor:
    """``[B, C, H, W] -> [B, L, patch*patch*C]`` with ``L = (H/patch) * (W/patch)`` patches in
    row-major order (the order of a ViT's patch embedding); pixels within a patch are ordered
    (row, column, channel) as in the paper's code."""
    b, c, h, w = imgs.shape
    if h % patch or w % patch:
        raise ValueError(f"image size {h}x{w} is not divisible by the patch size {patch}")
    gh, gw = h // patch, w // patch
    x = imgs.reshape(b, c, gh, patch, gw, patch)  # [B, C, gh, p, gw, p]
    x = x.permute(0, 2, 4, 3, 5, 1)  # [B, gh, gw, p, p, C]
    return x.reshape(b, gh * gw, patch * patch * c)  # [B, L, p*p*C]


def unpatchify(x: torch.Tensor, patch: int, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B, L, patch*patch*C] -> [B, C, H, W]``. ``grid`` is
    ``(H/patch, W/patch)``; by default the grid is square."""
    b, n, d = x.shape
    if grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"{n} patches do not form a square grid; pass grid=(rows, cols)")
        grid = (side, side)
    gh, gw = grid
    c = d // (patch * patch)
    if gh * gw != n or c * patch * patch != d:
        raise ValueError(f"cannot unpatchify [{b}, {n}, {d}] with patch {patch} and grid {grid}")
    x = x.reshape(b, gh, gw, patch, patch, c)  # [B, gh, gw, p, p, C]
    x = x.permute(0, 5, 1, 3, 2, 4)  # [B, C, gh, p, gw, p]
    return x.reshape(b, c, gh * patch, gw * patch)  # [B, C, H, W]


def random_masking(x: torch.Tensor, mask_ratio: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample random masking by shuffling (noise from ``torch.rand``, so the global RNG).

    ``x: [B, L, D]`` -> ``(x_visible [B, K, D], mask [B, L] with 1 = masked and 0 = visible,
    ids_restore [B, L])`` where ``K = round(L * (1 - mask_ratio))``, the same for every image.
    ``ids_restore`` undoes the shuffle: ``torch.gather(shuffled, 1, ids_restore)`` puts tokens
    back in patch order."""
    b, n, d = x.shape
    keep = round(n * (1 - mask_ratio))
    if not 0 < keep < n:
        raise ValueError(
            f"mask_ratio {mask_ratio} keeps {keep} of {n} patches; at least one patch must stay visible "
            f"and at least one be masked"
        )
    noise = torch.rand(b, n, device=x.device)  # [B, L] in [0, 1)
    ids_shuffle = torch.argsort(noise, dim=1)  # [B, L], ascending: the first `keep` are kept
    ids_restore = torch.argsort(ids_shuffle, dim=1)  # [B, L], the inverse permutation
    ids_keep = ids_shuffle[:, :keep]  # [B, K]
    x_visible = torch.gather(x, 1, ids_keep[:, :, None].expand(-1, -1, d))  # [B, K, D]
    mask = torch.ones(b, n, device=x.device)  # [B, L] in shuffled order: first K visible
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # [B, L] in patch order
    return x_visible, mask, ids_restore


def patch_targets(imgs: torch.Tensor, patch: int, norm_pix: bool) -> torch.Tensor:
    """Reconstruction targets ``[B, L, p*p*C]``: the patches' pixels, each patch normalised by its
    own mean and (unbiased) variance when ``norm_pix``."""
    target = patchify(imgs, patch)  # [B, L, p*p*C]
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)  # [B, L, 1]
        var = target.var(dim=-1, keepdim=True)  # [B, L, 1]
        target = (target - mean) / (var + NORM_PIX_EPS) ** 0.5
    return target


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the masked patches only: ``pred, target [B, L, P]``,
    ``mask [B, L]`` (1 = masked) -> scalar. Predictions of visible patches do not matter."""
    per_patch = (pred - target).pow(2).mean(dim=-1)  # [B, L]
    return (per_patch * mask).sum() / mask.sum()


def sincos_pos_embed_2d(dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding ``[gh*gw, dim]`` (half the channels encode the
    row, half the column), as in MAE's decoder."""
    if dim % 4:
        raise ValueError(f"a 2-D sine-cosine position embedding needs a dimension divisible by 4, got {dim}")
    gh, gw = grid
    rows, cols = torch.meshgrid(torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64),
                                indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))  # [dim/4]

    def encode(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega[None]  # [L, dim/4]
        return torch.cat([angles.sin(), angles.cos()], dim=1)  # [L, dim/2]

    return torch.cat([encode(rows), encode(cols)], dim=1).float()  # [L, dim]


# ------------------------------------------------------------------------------ the task


def _vision_transformer(backbone: Any) -> Any:
    """The timm VisionTransformer inside a ``timm`` backbone, or a ValueError naming what is needed."""
    from timm.models.vision_transformer import VisionTransformer

    vit = getattr(backbone, "model", None)
    if not isinstance(vit, VisionTransformer):
        got = type(vit).__name__ if vit is not None else type(backbone).__name__
        raise ValueError(
            f"MAE needs a 'timm' backbone whose model is a timm VisionTransformer "
            f"(e.g. name = 'vit_tiny_patch16_224'); got {got}"
        )
    if type(vit)._pos_embed is not VisionTransformer._pos_embed:
        raise ValueError(
            f"MAE supports timm VisionTransformers with the standard position embedding; {type(vit).__name__} "
            f"overrides it"
        )
    ph, pw = vit.patch_embed.patch_size
    if ph != pw:
        raise ValueError(f"MAE needs square patches, the ViT has {ph}x{pw}")
    return vit


class MAETask(nn.Module):
    """Encoder = the backbone ViT on visible patches; decoder and mask token live here."""

    def __init__(self, options: Any, backbone: nn.Module):
        super().__init__()
        vit = _vision_transformer(backbone)
        self.mask_ratio = options.mask_ratio
        self.norm_pix_loss = options.norm_pix_loss
        self.patch = int(vit.patch_embed.patch_size[0])
        self.grid = tuple(int(g) for g in vit.patch_embed.grid_size)  # (gh, gw)
        self.channels = int(vit.patch_embed.proj.in_channels)
        num_patches = self.grid[0] * self.grid[1]
        embed_dim = int(vit.embed_dim)
        # timm builds ViTs with global_pool="avg" without the final norm (it normalises the pooled
        # features instead, in fc_norm); MAE's decoder expects normalised tokens, so then fc_norm,
        # applied per token, takes that role (and still gets trained).
        self.uses_fc_norm = isinstance(vit.norm, nn.Identity) and not isinstance(vit.fc_norm, nn.Identity)

        d = options.decoder_dim
        self.decoder_embed = nn.Linear(embed_dim, d)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        if options.decoder_pos_embed == "sincos":
            # [1, L, d]
            self.register_buffer("decoder_pos_embed", sincos_pos_embed_2d(d, self.grid)[None], persistent=False)
        else:
            self.decoder_pos_embed = nn.Parameter(torch.zeros(1, num_patches, d))  # [1, L, d]
        from timm.models.vision_transformer import Block

        self.decoder_blocks = nn.ModuleList(
            Block(d, options.decoder_heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=nn.LayerNorm)
            for _ in range(options.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(d)
        self.decoder_pred = nn.Linear(d, self.patch * self.patch * self.channels)
        self._init_weights()

    def _init_weights(self) -> None:
        # as the paper's code: mask token and learned embeddings N(0, 0.02), xavier linears
        nn.init.normal_(self.mask_token, std=0.02)
        if isinstance(self.decoder_pos_embed, nn.Parameter):
            nn.init.normal_(self.decoder_pos_embed, std=0.02)
        for m in [self.decoder_embed, self.decoder_pred, *self.decoder_blocks.modules()]:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    # -------------------------------------------------------------------------- encoder

    def encode(self, vit: nn.Module, imgs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``imgs [B, C, H, W]`` -> ``(latent [B, T+K, E], mask [B, L], ids_restore [B, L])`` with
        ``T`` prefix tokens (class, registers) and ``K`` visible patches.

        Position embeddings are added to the patches *before* masking, following timm's
        conventions: with ``no_embed_class`` the table covers patches only and prefix tokens get
        none; otherwise its first ``T`` rows belong to the prefix tokens."""
        x = vit.patch_embed(imgs)  # [B, L, E], or [B, gh, gw, E] for dynamic-size ViTs
        x = x.reshape(x.shape[0], -1, x.shape[-1])  # [B, L, E]
        if x.shape[1] != self.grid[0] * self.grid[1]:
            raise ValueError(f"images give {x.shape[1]} patches, the ViT was built for {self.grid[0]}x{self.grid[1]}")
        tokens = [t for t in (vit.cls_token, vit.reg_token) if t is not None]  # each [1, t, E]
        prefix = torch.cat(tokens, dim=1).expand(x.shape[0], -1, -1) if tokens else x[:, :0]  # [B, T, E]
        if vit.pos_embed is not None:
            pos = vit.pos_embed  # [1, L, E] (no_embed_class) or [1, T+L, E]
            if vit.no_embed_class:  # the table covers the patches only
                x = x + pos  # [B, L, E]
            else:  # its first T rows belong to the prefix tokens
                t = vit.num_prefix_tokens
                x = x + pos[:, t:]  # [B, L, E]
                prefix = prefix + pos[:, :t]  # [B, T, E]
        x, mask, ids_restore = random_masking(x, self.mask_ratio)  # [B, K, E], [B, L], [B, L]
        x = torch.cat([prefix, x], dim=1)  # [B, T+K, E]
        x = vit.pos_drop(x)
        x = vit.norm_pre(x)
        x = vit.blocks(x)  # [B, T+K, E]
        x = vit.fc_norm(x) if self.uses_fc_norm else vit.norm(x)
        return x, mask, ids_restore

    # -------------------------------------------------------------------------- decoder

    def decode(self, latent: torch.Tensor, ids_restore: torch.Tensor, num_prefix: int) -> torch.Tensor:
        """``latent [B, T+K, E]`` -> pixel predictions for every patch ``[B, L, p*p*C]``."""
        x = self.decoder_embed(latent)  # [B, T+K, d]
        b, n = ids_restore.shape
        visible = x[:, num_prefix:]  # [B, K, d]
        masks = self.mask_token.expand(b, n - visible.shape[1], -1)  # [B, L-K, d]
        x_ = torch.cat([visible, masks], dim=1)  # [B, L, d], shuffled order
        x_ = torch.gather(x_, 1, ids_restore[:, :, None].expand(-1, -1, x.shape[-1]))  # [B, L, d], patch order
        x_ = x_ + self.decoder_pos_embed.to(x_.dtype)
        x = torch.cat([x[:, :num_prefix], x_], dim=1)  # [B, T+L, d]; prefix tokens get no position
        for block in self.decoder_blocks:
            x = block(x)
        x = self.decoder_norm(x)
        return self.decoder_pred(x)[:, num_prefix:]  # [B, L, p*p*C]

    def forward(self, batch: dict[str, Any], backbone: nn.Module) -> TaskOutput:
        vit = backbone.model
        imgs = batch["image"]  # [B, C, H, W]
        latent, mask, ids_restore = self.encode(vit, imgs)
        pred = self.decode(latent, ids_restore, vit.num_prefix_tokens).float()  # [B, L, p*p*C]
        target = patch_targets(imgs.float(), self.patch, self.norm_pix_loss)  # [B, L, p*p*C]
        loss = masked_mse(pred, target, mask)
        with torch.no_grad():  # the same error in pixel space (predictions un-normalised per patch)
            pixels = patchify(imgs.float(), self.patch)  # [B, L, p*p*C]
            if self.norm_pix_loss:
                mean, var = pixels.mean(-1, keepdim=True), pixels.var(-1, keepdim=True)
                pred = pred * (var + NORM_PIX_EPS) ** 0.5 + mean
            mse_pixels = masked_mse(pred, pixels, mask)
        return TaskOutput(loss=loss, metrics={"mse_pixels": mse_pixels})


def build(options: Any, context: BuildContext) -> MAETask:
    return MAETask(options, context.backbone)
