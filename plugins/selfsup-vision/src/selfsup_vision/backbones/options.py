"""Options of the selfsup-vision backbones (pydantic only: importing this never imports torch)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from selfsup.options import Options

#: timm.create_model arguments that are sizes (must be positive): depth, embed_dim, num_heads, mlp_ratio...
_TIMM_SIZE = re.compile(r"depth|dim|heads|ratio|size|chans|width|layers|stride|kernel")


class SmallCNNOptions(Options):
    """A VGG-style CNN for tiny images (8-32 px): conv-norm-ReLU blocks, global average pool."""

    in_channels: int = Field(1, gt=0)
    widths: list[int] = Field(default_factory=lambda: [32, 64, 128])
    blocks_per_stage: int = Field(1, ge=1)
    norm: Literal["batch", "group", "none"] = "batch"

    @field_validator("widths")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(w <= 0 for w in v):
            raise ValueError("widths must be a non-empty list of positive integers")
        return v


class TimmOptions(Options):
    """Any timm model by name, built from scratch (weights never downloaded)."""

    name: str = Field(description="timm model name, e.g. 'resnet18' or 'vit_tiny_patch16_224'.")
    in_chans: int = Field(3, gt=0)
    img_size: int | None = Field(None, gt=0, description="For ViTs: input image size.")
    patch_size: int | None = Field(None, gt=0, description="For ViTs: patch size.")
    small_image_stem: bool = Field(False, description="ResNets: 3x3 stride-1 first conv, no max-pool (CIFAR-style).")
    checkpoint: str | None = Field(None,
                                   description="Local weights file (timm's checkpoint_path); never a hub download.")
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Other timm.create_model arguments (sizes such as depth, embed_dim, num_heads: positive; "
        "rates: not negative).",
    )

    @field_validator("kwargs")
    @classmethod
    def _kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        own = {"pretrained", "num_classes", "in_chans", "img_size", "patch_size", "checkpoint_path"} & set(value)
        if own:
            raise ValueError(f"{', '.join(sorted(own))}: set by the backbone or by its own option, not in kwargs")
        for key, item in value.items():
            for number in item if isinstance(item, (list, tuple)) else [item]:
                if isinstance(number, bool) or not isinstance(number, (int, float)):
                    continue
                if number < 0 or (number == 0 and _TIMM_SIZE.search(key)):
                    kind = "a size" if _TIMM_SIZE.search(key) else "a timm argument"
                    raise ValueError(f"{key}: {kind} must be {'positive' if kind == 'a size' else 'at least 0'} "
                                     f"(got {item!r})")
        return value
