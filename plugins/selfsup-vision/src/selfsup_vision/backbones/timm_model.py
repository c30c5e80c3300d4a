"""Any timm model as an image backbone: random init, or started from pretrained weights (``pretrained``:
a timm tag, torchvision weights, a timm hub repository or a local file; see :mod:`selfsup.lib.timm_weights`).

Its ``embed`` takes ``batch["image"]`` (``[B, C, H, W]``); it exposes ``output_dim``. With a ViT it
implements :class:`selfsup.components.LayerwiseMaskedEncoder` (the core's ``data2vec``): BEiT block
masking of the patches, a learned mask token (created by ``prepare_masking``) in place of masked
patch embeddings, and every block's output at the patch positions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from selfsup.components import BuildContext

#: Backbone types whose selfsup exports hold a timm model, and that model's key prefix in their weights.
TIMM_EXPORTS = {"timm": "model.", "framewise": "encoder.model."}


class TimmBackbone(nn.Module):
    """A timm model without its classifier (``num_classes=0``): pooled features ``[B, num_features]``.
    The timm module is ``self.model`` (MAE reads a ViT's patch embedding and blocks from it)."""

    def __init__(self, o: Any, base_dir: Any = None, load_weights: bool = True):
        super().__init__()
        import timm

        from selfsup.lib.timm_weights import load_timm_start, plan_timm_start

        self.options = o
        start = plan_timm_start(o, base_dir, name=o.name, exports=TIMM_EXPORTS,
                                load=load_weights)  # load_weights: BuildContext's
        args, own = start.model_args, ("in_chans", "img_size", "patch_size")  # args: the weights' config's

        def pick(key: str) -> Any:  # the recipe's value when it sets one, else the config's, else the default
            return getattr(o, key) if key in o.model_fields_set or key not in args else args[key]

        kwargs = {**{k: v for k, v in args.items() if k not in own}, **o.kwargs}
        kwargs.update({k: pick(k) for k in own[1:] if pick(k) is not None})
        in_chans = int(pick("in_chans"))
        self.architecture = start.architecture.partition(".")[0]  # the timm model name (a tag's architecture)
        self.model_args = {**kwargs, "in_chans": in_chans}  # what timm.create_model got (export_timm's)
        self.model = timm.create_model(start.architecture, pretrained=False, num_classes=0, in_chans=in_chans,
                                       **kwargs)
        report = None
        if start.resolved is not None and not (start.export is not None and o.small_image_stem):
            report = load_timm_start(self.model, start, o, in_chans=in_chans)  # then the stem, if replaced
        if o.small_image_stem:
            if not (hasattr(self.model, "conv1") and hasattr(self.model, "maxpool")):
                raise ValueError(f"small_image_stem applies to ResNet-style models; {self.architecture!r} has no "
                                 f"conv1/maxpool")
            out = self.model.conv1.out_channels
            self.model.conv1 = nn.Conv2d(in_chans, out, kernel_size=3, stride=1, padding=1, bias=False)
            self.model.maxpool = nn.Identity()
            if report is not None:
                report.notes.append("small_image_stem: the loaded conv1 was replaced by a new 3x3 stride-1 conv "
                                    "(random init) and the max-pool removed, after loading")
            elif start.resolved is not None:  # an export of a small-stem backbone: saved after the replacement
                report = load_timm_start(self.model, start, o, in_chans=in_chans)
        if report is not None:
            from selfsup.lib.pretrained import attach_record

            attach_record(self, start.resolved, report)
        self.output_dim = int(self.model.num_features)
        self.register_parameter("mask_token", None)  # [E] once prepare_masking() made it (ViTs, data2vec)

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
        args = {**self.model_args, "num_classes": 0}
        config = {"architecture": self.architecture, "num_features": self.output_dim, "model_args": args,
                  "pretrained_cfg": {**dict(getattr(self.model, "pretrained_cfg", {}) or {}), "num_classes": 0}}
        (directory / "config.json").write_text(json.dumps(config, indent=2, default=str))

    # ------------------------------------------------------------------ masked prediction (data2vec)

    def _vit(self) -> Any:
        from timm.models.vision_transformer import VisionTransformer

        vit = self.model
        if not isinstance(vit, VisionTransformer) or type(vit)._pos_embed is not VisionTransformer._pos_embed:
            raise ValueError(f"masked prediction needs a timm VisionTransformer with the standard position "
                             f"embedding (e.g. name = 'vit_tiny_patch16_224'); {self.architecture!r} is a "
                             f"{type(vit).__name__}")
        return vit

    def prepare_masking(self) -> None:
        """Create the learned mask token ``[E]`` (N(0, 0.02) from a fixed seed: the global generator
        is not touched), once; other tasks never see it, so their runs carry no unused parameter."""
        vit = self._vit()
        if self.mask_token is None:
            generator = torch.Generator().manual_seed(0)
            token = torch.randn(int(vit.embed_dim), generator=generator) * 0.02
            self.mask_token = nn.Parameter(token.to(vit.patch_embed.proj.weight.device))

    def masked_positions(self, batch: Mapping[str, Any], generator: torch.Generator, *, ratio: float | None = None,
                         span: int | None = None) -> torch.Tensor:
        """``[B, L]`` bool over the ``L`` patches (row-major): BEiT block masking of ``ratio`` (default
        0.6, data2vec's) of them, in blocks of at least ``span`` patches (default ``L / 12``: BEiT's 16
        of 196)."""
        from selfsup_vision.backbones.masking import block_mask

        grid = tuple(int(g) for g in self._vit().patch_embed.grid_size)
        patches = grid[0] * grid[1]
        min_block = span if span is not None else max(1, patches // 12)
        return block_mask(batch["image"].shape[0], grid, 0.6 if ratio is None else ratio, min_block, generator)

    def encode_layers(self, batch: Mapping[str, Any],
                      mask: torch.Tensor | None = None) -> tuple[list[torch.Tensor], None]:
        """Each block's output at the patch positions, ``[B, L, E]`` (prefix tokens dropped), with the
        patch embeddings where ``mask [B, L]`` is True replaced by the mask token before the position
        embedding is added (as BEiT and data2vec). With ``mask=None``, the blocks of timm's
        ``forward_features``."""
        vit = self._vit()
        imgs = batch["image"]  # [B, C, H, W]
        x = vit.patch_embed(imgs)  # [B, L, E] (or [B, gh, gw, E] for dynamic-size ViTs)
        x = x.reshape(x.shape[0], -1, x.shape[-1])  # [B, L, E]
        if mask is not None:
            if self.mask_token is None:
                raise ValueError("this ViT has no mask token: a masking task calls prepare_masking() when built")
            x = torch.where(mask.to(x.device)[..., None], self.mask_token.to(x.dtype), x)
        x = vit._pos_embed(x)  # [B, T+L, E]: prefix tokens and position embeddings
        x = vit.norm_pre(vit.patch_drop(x))
        prefix = vit.num_prefix_tokens
        layers = []
        for block in vit.blocks:
            x = block(x)
            layers.append(x[:, prefix:])  # [B, L, E]
        return layers, None

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:  # noqa: ANN001
        # the mask token is a pre-training device: weights saved with one load into a ViT without it (a
        # fine-tuning run) and weights saved without one into a ViT that made it (it keeps its own)
        key = prefix + "mask_token"
        if self.mask_token is None:
            state_dict.pop(key, None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if key in missing_keys:
            missing_keys.remove(key)

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

    if o.name is not None and not timm.is_model(o.name):
        import difflib

        near = difflib.get_close_matches(o.name, timm.list_models(), n=3)
        raise ValueError(f"timm has no model {o.name!r}" + (f"; did you mean {', '.join(near)}?" if near else ""))
    return TimmBackbone(o, context.base_dir, getattr(context, "load_weights", True))
