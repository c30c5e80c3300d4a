"""A 2D image model applied to every frame of a clip, with a temporal fusion of the frame features.

The frame encoder is a timm model built by name (random init, or ``pretrained`` weights in the same
forms as selfsup-vision's ``timm`` backbone: ``timm:model.tag``, ``torchvision:Weights.NAME``, a timm
hub repository ``hf:org/name`` or a local file or folder; see :mod:`selfsup.lib.timm_weights`), or, with
``share = "<key>"``, an image backbone defined earlier in the recipe (``BuildContext.backbones``;
e.g. selfsup-vision's ``timm`` or ``small_cnn``, built by the core from its registry name): that
very module is registered here, so an image task training the image backbone and a video task
training this one update one set of weights (the model's ``parameters()`` yields them once).

Fusion of the frame features ``[B, T, F]`` into ``[B, D]``:

* ``mean``: their average. Order-blind: a clip and any shuffle of it embed the same
  (``order_blind = True``; tasks that need the clip embedding to see order refuse it).
* ``attention``: learned temporal positions, a small pre-norm transformer encoder over the T frame
  tokens (Vaswani et al. 2017), then the mean of its outputs (D = F).
* ``concat``: the frame features side by side (D = T * F; clips must have exactly ``frames`` frames).
* ``difference``: the T - 1 changes between consecutive frame features side by side (D = (T - 1) * F;
  exactly ``frames`` frames): motion without the absolute appearance every frame repeats, the frame
  differencing of Wang et al., Temporal Segment Networks, ECCV 2016 ("RGB difference"), applied to
  features.

``frame_features(video [B, T, C, H, W]) -> [B, T, F]`` gives the per-frame features before fusion,
each frame encoded on its own (what Shuffle and Learn and OPN fuse themselves).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from selfsup.components import BuildContext

#: Backbone types whose selfsup exports hold a timm model, and that model's key prefix in their weights.
TIMM_EXPORTS = {"timm": "model.", "framewise": "encoder.model."}


def shared_encoder(key: str, context: BuildContext) -> nn.Module:
    """The image backbone ``key`` among those the recipe defines before ``context.name``."""
    where = f"backbones.{context.name}.options.share"
    backbone = context.backbones.get(key)
    if backbone is None:
        before = ", ".join(repr(k) for k in context.backbones) or "none"
        raise ValueError(f"{where} = {key!r}: no backbone of that name is defined before backbones.{context.name} "
                         f"(defined before it: {before}); put the image backbone's [backbones.{key}] table first")
    if not isinstance(backbone, nn.Module) or not isinstance(getattr(backbone, "output_dim", None), int):
        raise ValueError(f"{where} = {key!r}: the shared backbone must be an nn.Module with an integer output_dim "
                         f"that maps images [N, C, H, W] to [N, output_dim], got {type(backbone).__name__}")
    return backbone


class TimmFrames(nn.Module):
    """A timm model without classifier: ``[N, C, H, W] -> [N, num_features]``, started from
    ``o.pretrained`` when set (``self.report``: the load report, else None)."""

    def __init__(self, o: Any, base_dir: Any = None, load_weights: bool = True):
        super().__init__()
        import timm

        from selfsup.lib.timm_weights import load_timm_start, plan_timm_start

        name = o.name if "name" in o.model_fields_set else None  # else the weights' architecture, or the default
        if name is not None and not timm.is_model(name):
            import difflib

            near = difflib.get_close_matches(name, timm.list_models(), n=3)
            raise ValueError(f"timm has no model {name!r}" + (f"; did you mean {', '.join(near)}?" if near else ""))
        self.start = start = plan_timm_start(o, base_dir, name=name, exports=TIMM_EXPORTS, default=o.name,
                                                   load=load_weights)
        args = start.model_args  # from the weights' config: for what the recipe leaves unset
        in_chans = int(o.in_chans if "in_chans" in o.model_fields_set or "in_chans" not in args else args["in_chans"])
        kwargs = {**{k: v for k, v in args.items() if k != "in_chans"}, **o.kwargs}
        self.model = timm.create_model(start.architecture, pretrained=False, num_classes=0, in_chans=in_chans,
                                       **kwargs)
        self.output_dim = int(self.model.num_features)
        self.report = load_timm_start(self.model, start, o, in_chans=in_chans) if start.resolved is not None \
            else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class TemporalAttention(nn.Module):
    """Learned positions + a pre-norm transformer encoder over frame tokens, mean over time."""

    def __init__(self, dim: int, frames: int, layers: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention_heads {heads} does not divide the frame feature size {dim}")
        self.positions = nn.Parameter(torch.randn(frames, dim) * 0.02)  # [T_max, F]
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, F]
        t = x.shape[1]
        if t > self.positions.shape[0]:
            raise ValueError(f"a clip of {t} frames; the attention fusion has positions for {self.positions.shape[0]} "
                             f"(raise 'frames')")
        x = self.encoder(x + self.positions[:t])  # [B, T, F]
        return self.norm(x).mean(dim=1)  # [B, F]


class Framewise(nn.Module):
    def __init__(self, o: Any, context: BuildContext):
        super().__init__()
        self.options = o
        self.encoder = shared_encoder(o.share, context) if o.share is not None else TimmFrames(
            o, context.base_dir, getattr(context, "load_weights", True))
        if getattr(self.encoder, "report", None) is not None:  # the run's pretrained.json reads the backbone's
            from selfsup.lib.pretrained import attach_record

            attach_record(self, self.encoder.start.resolved, self.encoder.report)
        self.frame_dim = int(self.encoder.output_dim)
        self.order_blind = o.fusion == "mean"
        self.fusion: nn.Module | None = None
        if o.fusion == "attention":
            self.fusion = TemporalAttention(self.frame_dim, o.frames, o.attention_layers, o.attention_heads)
        self.output_dim = self.frame_dim * {"concat": o.frames, "difference": o.frames - 1}.get(o.fusion, 1)

    def frame_features(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, T, C, H, W] -> [B, T, F]``: each frame through the 2D encoder on its own."""
        if video.dim() != 5:
            raise ValueError(f"framewise takes clips [B, T, C, H, W], got {tuple(video.shape)}")
        b, t = video.shape[:2]
        return self.encoder(video.flatten(0, 1)).reshape(b, t, -1)  # [B*T, F] -> [B, T, F]

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.frame_features(video)  # [B, T, F]
        if self.options.fusion == "mean":
            return x.mean(dim=1)  # [B, F]
        if self.options.fusion in ("concat", "difference"):
            if x.shape[1] != self.options.frames:
                raise ValueError(f"{self.options.fusion} fusion needs clips of exactly frames = {self.options.frames} "
                                 f"frames, got {x.shape[1]}")
            if self.options.fusion == "difference":
                x = x[:, 1:] - x[:, :-1]  # [B, T-1, F]
            return x.flatten(1)  # [B, T*F] or [B, (T-1)*F]
        return self.fusion(x)  # [B, F]

    def embed(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self(batch["video"])


def build_framewise(o: Any, context: BuildContext) -> Framewise:
    return Framewise(o, context)
