"""Any timm model as an image backbone (random init or local weights, never a hub download).

Its ``embed`` takes ``batch["image"]`` (``[B, C, H, W]``); it exposes ``output_dim``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from selfsup.components import BuildContext


class TimmBackbone(nn.Module):
    """A timm model without its classifier (``num_classes=0``): pooled features ``[B, num_features]``.
    The timm module is ``self.model`` (MAE reads a ViT's patch embedding and blocks from it)."""

    def __init__(self, o: Any):
        super().__init__()
        import timm

        self.options = o
        kwargs = dict(o.kwargs)
        if o.img_size is not None:
            kwargs["img_size"] = o.img_size
        if o.patch_size is not None:
            kwargs["patch_size"] = o.patch_size
        if o.checkpoint is not None:
            kwargs["checkpoint_path"] = o.checkpoint
        self.model = timm.create_model(o.name, pretrained=False, num_classes=0, in_chans=o.in_chans, **kwargs)
        if o.small_image_stem:
            if not (hasattr(self.model, "conv1") and hasattr(self.model, "maxpool")):
                raise ValueError(f"small_image_stem applies to ResNet-style models; {o.name!r} has no conv1/maxpool")
            out = self.model.conv1.out_channels
            self.model.conv1 = nn.Conv2d(o.in_chans, out, kernel_size=3, stride=1, padding=1, bias=False)
            self.model.maxpool = nn.Identity()
        self.output_dim = int(self.model.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def embed(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self(batch["image"])

    def export_formats(self) -> dict[str, Any]:
        """``selfsup export --format timm``: weights and config that timm loads on its own."""
        return {"timm": self.export_timm}

    def export_timm(self, directory: str | Path) -> None:
        """``model.safetensors`` (the timm module's state dict) and ``config.json`` (timm's hub layout:
        ``architecture``, ``model_args``, ``pretrained_cfg``), loaded with ``timm.create_model(architecture,
        pretrained=True, pretrained_cfg_overlay=dict(file=".../model.safetensors"), **model_args)``."""
        from safetensors.torch import save_file

        if self.options.small_image_stem:
            raise ValueError("a small_image_stem ResNet is not a timm architecture (its stem was replaced); "
                             "export it as onnx, torchscript or selfsup")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(directory / "model.safetensors"))
        args = {**self.options.kwargs, "num_classes": 0, "in_chans": self.options.in_chans}
        args.update({k: getattr(self.options, k) for k in ("img_size", "patch_size") if getattr(self.options, k)})
        config = {"architecture": self.options.name, "num_features": self.output_dim, "model_args": args,
                  "pretrained_cfg": {**dict(getattr(self.model, "pretrained_cfg", {}) or {}), "num_classes": 0}}
        (directory / "config.json").write_text(json.dumps(config, indent=2, default=str))

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Layers in the order timm's own layer decay uses (``group_matcher(coarse=False)``: stem, each
        block, head), for fine-tuning's layer-wise lr decay and partial unfreezing."""
        from timm.models import group_parameters

        params = dict(self.model.named_parameters())
        matcher = getattr(self.model, "group_matcher", None)
        if matcher is None:
            return [list(params.values())]
        groups = group_parameters(self.model, matcher(coarse=False))  # {layer id: [names]}, input side first
        return [[params[name] for name in names] for _, names in sorted(groups.items())]


def build_timm(o: Any, context: BuildContext) -> TimmBackbone:
    import timm

    if not timm.is_model(o.name):
        import difflib

        near = difflib.get_close_matches(o.name, timm.list_models(), n=3)
        raise ValueError(f"timm has no model {o.name!r}" + (f"; did you mean {', '.join(near)}?" if near else ""))
    return TimmBackbone(o)
