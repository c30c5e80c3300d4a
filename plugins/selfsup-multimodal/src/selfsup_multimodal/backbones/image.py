"""``trunk_image``: images into transformer layers, ViT-style.

Dosovitskiy et al., An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale,
ICLR 2021 (https://arxiv.org/abs/2010.11929): the image is cut into non-overlapping square
patches, each linearly embedded (a Conv2d with kernel = stride = patch size), a learned [class]
token is prepended, learned position embeddings are added, and the sequence goes through
transformer layers; the features are the mean over the patch tokens (``pooling = "mean"``, the
default: it learns much faster under SimCLR in short runs) or the [class] token's final state
(``"cls"``), after a LayerNorm.

With ``trunk`` the layers are those of a text BERT backbone (see :mod:`.trunk`); the patch
embedding, [class] token, positions and norms belong to the adapter.

``forward(x [N, C, H, W]) -> [N, D]`` (what SimCLR calls); ``embed(batch)`` reads ``batch["image"]``
(what the core's ``knn`` and ``linear_probe`` call).

``pretrained`` starts the adapter from saved weights (a state dict file, a ``selfsup export``
folder, an adapter export, or ``hf:org/name[@revision]`` holding one; :func:`.trunk.load_own_pretrained`):
without a trunk all of it, with a trunk its own patch embedding, [class] token, positions and norms only.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from selfsup.components import BuildContext
from selfsup_multimodal.backbones.options import TrunkImageOptions
from selfsup_multimodal.backbones.trunk import TrunkAdapter, load_own_pretrained


class TrunkImage(TrunkAdapter):
    kind, options_model = "trunk_image", TrunkImageOptions

    def __init__(self, options: Any, context: BuildContext | None, encoder: nn.Module | None = None):
        super().__init__(options, context, encoder)
        d = self.output_dim
        self.image_size, self.patch_size, self.in_channels = options.image_size, options.patch_size, options.in_channels
        self.pooling = options.pooling
        self.grid = options.image_size // options.patch_size
        self.patch_embed = nn.Conv2d(options.in_channels, d, kernel_size=options.patch_size, stride=options.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))  # [1, 1, D]
        self.positions = nn.Parameter(torch.zeros(1, 1 + self.grid * self.grid, d))  # [1, 1 + L, D]
        nn.init.trunc_normal_(self.cls_token, std=0.02)  # ViT's initialisation (timm)
        nn.init.trunc_normal_(self.positions, std=0.02)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, H, W]`` -> ``[N, 1 + L, D]``: the [CLS] token then the L patches, positions added."""
        expected = (self.in_channels, self.image_size, self.image_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"trunk_image expects images [N, {', '.join(map(str, expected))}] "
                             f"(in_channels, image_size, image_size), got {tuple(x.shape)}")
        patches = self.patch_embed(x).flatten(2).transpose(1, 2)  # [N, D, g, g] -> [N, L, D], row-major
        cls = self.cls_token.expand(x.shape[0], -1, -1)  # [N, 1, D]
        return torch.cat([cls, patches], dim=1) + self.positions  # [N, 1 + L, D]

    def layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's states ``[N, 1 + L, D]`` of images ``x [N, C, H, W]`` (no padding: all tokens real)."""
        return self.encode(self.tokens(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[N, C, H, W]`` -> features ``[N, D]``."""
        states = self.layers(x)[-1]  # [N, 1 + L, D]
        return states[:, 0] if self.pooling == "cls" else states[:, 1:].mean(dim=1)

    def embed(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """``batch["image"] [N, C, H, W]`` -> ``[N, D]``."""
        if "image" not in batch:
            raise ValueError(f"trunk_image reads batch['image'] [N, C, H, W]; the batch has {', '.join(sorted(batch))}")
        return self(batch["image"])


def build(options: Any, context: BuildContext) -> TrunkImage:
    adapter = TrunkImage(options, context)
    load_own_pretrained(adapter, context)  # its own weights, when pretrained is set
    return adapter
