"""Options of the selfsup-video backbones (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from selfsup.options import PretrainedOptions


def _own_architecture_weights(options: PretrainedOptions, type_name: str) -> None:
    """A backbone with its own architecture takes only weights saved from it: a path or hf: repository."""
    if options.pretrained is None:
        return
    from selfsup.lib.pretrained import parse_pretrained

    kind = parse_pretrained(options.pretrained).kind
    if kind not in ("path", "hf"):
        raise ValueError(f"pretrained = {options.pretrained!r}: {type_name} takes a local file or folder or "
                         f"hf:org/name (a state dict or selfsup export of a {type_name}), not {kind}: weights")


def _positive_list(v: list[int]) -> list[int]:
    if not v or any(w <= 0 for w in v):
        raise ValueError("must be a non-empty list of positive integers")
    return v


class R2Plus1DOptions(PretrainedOptions):
    """A small residual video CNN (Tran et al. 2018) for short low-resolution clips: a stem (spatial
    stride 2), then one stage per width (spatial stride 2 between stages, temporal stride 1 throughout, so per-time
    features keep every frame), global average pool over time and space. ``pretrained``: a state dict or
    ``selfsup export`` of the same architecture (a local file or folder, or ``hf:org/name``)."""

    in_channels: int = Field(1, gt=0, description="Channels of each frame (Moving MNIST: 1).")
    widths: list[int] = Field(default_factory=lambda: [16, 32, 64], description="Channels of each stage.")
    blocks_per_stage: int = Field(1, ge=1, description="Residual blocks per stage.")
    conv: Literal["2plus1d", "3d"] = Field(
        "2plus1d", description="2plus1d: a 1xkxk spatial conv then a tx1x1 temporal conv (mid channels chosen so the "
                               "pair has about the parameters of the full 3D conv); 3d: a full txkxk conv.")
    temporal_kernel: int = Field(3, ge=1, description="Temporal kernel size t (odd; 1 makes the net frame-wise).")
    norm: Literal["batch", "group", "none"] = "batch"

    @field_validator("widths")
    @classmethod
    def _widths(cls, v: list[int]) -> list[int]:
        return _positive_list(v)

    @field_validator("temporal_kernel")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("temporal_kernel must be odd (same padding keeps the number of frames)")
        return v

    @model_validator(mode="after")
    def _weights(self) -> R2Plus1DOptions:
        _own_architecture_weights(self, "r2plus1d")
        return self


class FramewiseOptions(PretrainedOptions):
    """A 2D image model applied to every frame, then a temporal fusion of the frame features.
    ``pretrained`` starts the own timm frame encoder (not a shared one): ``timm:model.tag``,
    ``torchvision:Weights.NAME``, ``hf:org/name`` (a timm hub repository) or a local file or folder."""

    name: str = Field("resnet10t", description="timm model name (num_classes = 0). With pretrained naming an "
                                               "architecture (a timm: tag, torchvision: weights, a config.json) "
                                               "it may be left out; if given, it must agree with a timm: tag's.")
    in_chans: int = Field(1, gt=0, description="Channels of each frame.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Other timm.create_model arguments.")
    share: str | None = Field(
        None, description="Key of an image backbone defined before this one in the recipe (e.g. vision's 'timm' or "
                          "'small_cnn'): its module encodes the frames, so both backbones train one set of weights. "
                          "name/kwargs/in_chans are then unused: leave them at their defaults.")
    fusion: Literal["mean", "attention", "concat", "difference"] = Field(
        "mean", description="mean: average of the frame features (order-blind: a shuffled clip embeds the same); "
                            "attention: a pre-norm transformer over the frame features with learned temporal "
                            "positions, then their mean; concat: the frame features side by side (fixed clip length); "
                            "difference: the changes between consecutive frame features side by side (fixed clip "
                            "length; where the clip moves, not where it is).")
    frames: int = Field(8, gt=0, description="attention: most frames a clip may have (temporal positions); concat "
                                             "and difference: the exact clip length. Unused by mean.")
    attention_layers: int = Field(1, gt=0, description="attention: transformer layers.")
    attention_heads: int = Field(2, gt=0, description="attention: heads (must divide the frame feature size).")

    @field_validator("kwargs")
    @classmethod
    def _kwargs(cls, value: dict[str, Any]) -> dict[str, Any]:
        own = {"pretrained", "num_classes", "in_chans", "checkpoint_path"} & set(value)
        if own:
            raise ValueError(f"{', '.join(sorted(own))}: set by the backbone or by its own option, not in kwargs")
        return value

    @model_validator(mode="after")
    def _shared(self) -> FramewiseOptions:
        from selfsup.lib.timm_weights import check_timm_spec

        check_timm_spec(self.pretrained, self.name if "name" in self.model_fields_set else None,
                        "framewise's timm model")
        if self.share is not None:
            changed = [f for f in ("name", "in_chans", "kwargs", "pretrained", "pretrained_strict",
                                   "pretrained_download") if f in self.model_fields_set]
            if changed:
                raise ValueError(f"{', '.join(changed)} size or start the backbone's own timm model; with share = "
                                 f"{self.share!r} the shared backbone encodes the frames (set pretrained on it): "
                                 f"remove them or share")
        return self


class VideoViTOptions(PretrainedOptions):
    """A ViT over tubes (``tube_frames`` x ``patch_size`` x ``patch_size`` pixels) of a clip, with
    fixed sine-cosine space-time positions, pre-norm blocks and mean pooling (Tong et al. 2022).
    ``pretrained``: a state dict or ``selfsup export`` of the same architecture (a local file or folder,
    or ``hf:org/name``)."""

    in_channels: int = Field(1, gt=0)
    tube_frames: int = Field(2, gt=0, description="Frames per tube (must divide the clip length).")
    patch_size: int = Field(4, gt=0, description="Side of a tube's square patch (must divide the frame size).")
    dim: int = Field(64, gt=0, description="Token width (a multiple of 8: the sine-cosine positions split it).")
    depth: int = Field(4, gt=0, description="Transformer blocks.")
    heads: int = Field(4, gt=0)
    mlp_ratio: float = Field(4.0, gt=0)

    @model_validator(mode="after")
    def _dims(self) -> VideoViTOptions:
        if self.dim % 8:
            raise ValueError(f"dim must be a multiple of 8 (space-time sine-cosine positions), got {self.dim}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        _own_architecture_weights(self, "video_vit")
        return self
