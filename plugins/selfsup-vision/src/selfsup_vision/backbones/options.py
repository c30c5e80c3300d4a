"""Options of the selfsup-vision backbones (pydantic only: importing this never imports torch)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from selfsup.options import PretrainedOptions

#: timm.create_model arguments that are sizes (must be positive): depth, embed_dim, num_heads, mlp_ratio...
_TIMM_SIZE = re.compile(r"depth|dim|heads|ratio|size|chans|width|layers|stride|kernel")


class SmallCNNOptions(PretrainedOptions):
    """A VGG-style CNN for tiny images (8-32 px): conv-norm-ReLU blocks, global average pool.
    ``pretrained``: a local state dict or ``selfsup export`` folder, or ``hf:org/name`` holding one."""

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

    @model_validator(mode="after")
    def _weights(self) -> SmallCNNOptions:
        from selfsup.lib.pretrained import parse_pretrained

        kind = parse_pretrained(self.pretrained).kind if self.pretrained is not None else "path"
        if kind not in ("path", "hf"):
            raise ValueError(f"pretrained = {self.pretrained!r}: small_cnn takes a local file or folder or "
                             f"hf:org/name (a state dict or selfsup export of a small_cnn), not {kind}: weights")
        return self


class TimmOptions(PretrainedOptions):
    """Any timm model by name, random init or started from pretrained weights (``pretrained``):
    ``timm:model.tag[@revision]``, ``torchvision:Weights.NAME`` (ResNets), ``hf:org/name`` (a timm hub
    repository: ``config.json`` + ``model.safetensors``, as ``selfsup export --format timm`` writes,
    or a bare state dict), or a local file or folder of the same kinds (or a ``selfsup export`` of a
    ``timm`` backbone). Downloads only with ``pretrained_download`` or ``SELFSUP_ALLOW_DOWNLOADS=1``."""

    name: str | None = Field(
        None, description="timm model name, e.g. 'resnet18' or 'vit_tiny_patch16_224'. May be omitted when "
                          "pretrained names the architecture (a timm: tag, torchvision: weights, or a hub repo or "
                          "folder with timm's config.json); if given it must agree with a timm: tag's.")
    in_chans: int = Field(3, gt=0)
    img_size: int | None = Field(None, gt=0, description="For ViTs: input image size.")
    patch_size: int | None = Field(None, gt=0, description="For ViTs: patch size.")
    small_image_stem: bool = Field(False, description="ResNets: 3x3 stride-1 first conv, no max-pool (CIFAR-style).")
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

    @model_validator(mode="after")
    def _architecture(self) -> TimmOptions:
        from selfsup.lib.pretrained import parse_pretrained
        from selfsup.lib.timm_weights import check_timm_spec

        check_timm_spec(self.pretrained, self.name, "the timm backbone")
        spec = parse_pretrained(self.pretrained) if self.pretrained is not None else None
        if self.name is None and (spec is None or (spec.kind == "path" and Path(spec.name).is_file())):
            raise ValueError("name: required (a timm model name, e.g. 'resnet18') unless pretrained names the "
                             "architecture (timm:model.tag, torchvision:Weights.NAME, or a timm hub repo or folder "
                             "with config.json)" + (f"; pretrained = {self.pretrained!r} is a weights file" if spec
                                                    else ""))
        return self
