"""Starting weights for a timm model: timm tags, torchvision weights, timm hub repositories and local files.

Shared by every backbone whose encoder is a timm model (selfsup-vision's ``timm``, selfsup-video's
``framewise``), on top of :mod:`selfsup.lib.pretrained`.

Resolution and loading go through :mod:`selfsup.lib.pretrained`: the files come from the libraries'
caches (downloads only when allowed), and timm-format weights load through timm's own
``load_pretrained`` (Wightman, PyTorch Image Models, https://github.com/huggingface/pytorch-image-models):
the architecture's checkpoint filter (a ViT's position embeddings resampled for another ``img_size``),
input-conv adaptation for another ``in_chans`` (summed for one channel) and classifier removal.
torchvision's ResNet weights (He et al. 2016) load into timm's ResNets, which use the same parameter
names. A ``selfsup export`` folder of a backbone that holds a timm model (``exports``: its type and the
timm module's key prefix, e.g. ``{"timm": "model."}``) loads as saved: no filters, the same
architecture is expected.

Which timm model is built: ``name``, else the architecture the weights name (a ``timm:`` tag's, a
``torchvision:`` model's, the ``architecture`` of a timm ``config.json`` or the ``name`` of an
export's options). A ``config.json``'s ``model_args`` (or an export's options) fill the model
arguments the recipe leaves unset (``in_chans``, ``img_size``, ``patch_size``, other kwargs), as
``timm.create_model("hf-hub:...")`` does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

#: Model arguments the backbone sets itself (never taken from a config's model_args).
_OWN = ("num_classes", "pretrained", "checkpoint_path", "pretrained_cfg", "pretrained_cfg_overlay")


@dataclass
class TimmStart:
    """What to build and load: ``architecture`` (the ``timm.create_model`` name; a tag's full name for
    ``timm:`` weights, so the model carries the tag's pretrained config), ``model_args`` from the
    weights' config (for unset options), the ``resolved`` files (None: random init) and, for a selfsup
    export, the key prefix of its timm module (``export``)."""

    architecture: str
    model_args: dict[str, Any] = field(default_factory=dict)
    resolved: Any = None
    export: str | None = None


def _manifest(folder: Path) -> dict[str, Any] | None:
    path = folder / "selfsup.json"
    if not path.is_file():
        return None
    info = json.loads(path.read_text())
    return info if isinstance(info, dict) and info.get("format") == "selfsup-export" else None


def torchvision_model_name(weights: str, pretrained: str = "") -> str:
    """The timm model for a ``torchvision:`` weights name: torchvision's model name (``ResNet50_Weights.
    IMAGENET1K_V2`` -> ``resnet50``, ``resnet18.IMAGENET1K_V1`` -> ``resnet18``), which must be a timm model."""
    import timm

    head = weights.rpartition(".")[0] or weights
    model = head.removesuffix("_Weights").lower() if head.endswith("_Weights") else head
    if not timm.is_model(model):
        raise ValueError(f"pretrained = {pretrained or weights!r}: timm has no model {model!r}; set name to the timm "
                         f"model with torchvision's parameter names (the ResNet family: resnet18 ... resnet152, "
                         f"resnext50_32x4d, wide_resnet50_2)")
    return model


def plan_timm_start(o: Any, base_dir: Any, *, name: str | None, exports: Mapping[str, str],
                    default: str | None = None, load: bool = True) -> TimmStart:
    """Resolve ``o.pretrained`` (when set; ``o`` has ``pretrained`` and ``pretrained_download``) and
    decide the architecture: ``name`` (the recipe's), else the one the weights name, else ``default``.
    ``exports`` maps the backbone types whose selfsup exports hold a timm model to that model's key
    prefix in their weights (``{"timm": "model."}``).
    ``load`` False (trained weights replace them right after the build: ``BuildContext.load_weights``):
    only what names the architecture is read (a timm tag or torchvision name: nothing; a hub repo or
    folder: its config), and ``resolved`` is None. Raises :class:`selfsup.lib.pretrained.WeightsNotCached`
    (with how to fetch) or ValueError naming the option."""
    from selfsup.lib.pretrained import downloads_allowed, parse_pretrained, resolve_pretrained

    if o.pretrained is None:
        return TimmStart(name or default)
    spec = parse_pretrained(o.pretrained)
    if not load and spec.kind == "timm":
        return TimmStart(spec.name)
    if not load and spec.kind == "torchvision":
        return TimmStart(name or torchvision_model_name(spec.name, o.pretrained))
    resolved = resolve_pretrained(spec, download=downloads_allowed(o.pretrained_download), base_dir=base_dir)
    where, args, export = None, {}, None
    if spec.kind == "timm":
        architecture = resolved.details["architecture"]
        tag = resolved.details.get("tag")
        return TimmStart(f"{architecture}.{tag}" if tag else architecture, {}, resolved)
    if spec.kind == "torchvision":
        model = name or torchvision_model_name(resolved.details.get("weights", spec.name), o.pretrained)
        return TimmStart(model, {}, resolved)
    folder = resolved.path if resolved.path.is_dir() else None
    manifest = _manifest(folder) if folder is not None else None
    if manifest is not None:
        if manifest.get("type") not in exports:
            raise ValueError(f"pretrained = {o.pretrained!r}: an export of a {manifest.get('type')!r} backbone; a "
                             f"timm model loads exports of {', '.join(repr(k) for k in exports)} backbones")
        saved = dict(manifest.get("options") or {})
        where, export = saved.get("name"), exports[manifest["type"]]
        args = {**dict(saved.get("kwargs") or {}), **{k: saved[k] for k in ("in_chans", "img_size", "patch_size")
                                                        if saved.get(k) is not None}}
    elif folder is not None and (folder / "config.json").is_file():
        config = json.loads((folder / "config.json").read_text())
        where = config.get("architecture")
        args = {k: v for k, v in dict(config.get("model_args") or {}).items() if k not in _OWN}
        if isinstance(config.get("pretrained_cfg"), dict):  # first_conv, classifier, input size: timm's filters
            resolved.details.setdefault("pretrained_cfg", config["pretrained_cfg"])
    if name is not None and where is not None and name != where:
        raise ValueError(f"name = {name!r} disagrees with pretrained = {o.pretrained!r}, which holds a {where!r}: "
                         f"omit name, or set it to {where!r}")
    architecture = name or where or default
    if architecture is None:
        raise ValueError(f"name: not set, and pretrained = {o.pretrained!r} does not say which timm model it holds "
                         f"(no config.json with an architecture): set name")
    return TimmStart(architecture, args, resolved if load else None, export)


def load_timm_start(model: Any, start: TimmStart, o: Any, *, in_chans: int) -> Any:
    """Load ``start``'s weights into the timm ``model`` (``num_classes = 0``) with ``o.pretrained_strict``;
    returns the :class:`selfsup.lib.pretrained.LoadReport`."""
    from selfsup.lib.pretrained import load_state, load_timm_pretrained, read_export_or_state_dict

    resolved = start.resolved
    if start.export is not None:
        state = read_export_or_state_dict(resolved.path)  # the backbone's: its timm module under start.export
        state = {k.removeprefix(start.export): v for k, v in state.items() if k.startswith(start.export)}
        return load_state(model, state, strict=o.pretrained_strict, source=str(resolved.spec))
    return load_timm_pretrained(model, resolved, strict=o.pretrained_strict, in_chans=in_chans, num_classes=0)


def check_timm_spec(pretrained: str | None, name: str | None, who: str) -> None:
    """Options-time checks of a timm model's ``pretrained``: no ``torchaudio:`` weights, and a recipe
    ``name`` that agrees with a ``timm:`` tag's architecture. ``who`` names the model in the message."""
    from selfsup.lib.pretrained import parse_pretrained

    if pretrained is None:
        return
    spec = parse_pretrained(pretrained)
    if spec.kind == "torchaudio":
        raise ValueError(f"pretrained = {pretrained!r}: {who} takes timm:model.tag, torchvision:Weights.NAME, "
                         f"hf:org/name or a local file or folder, not torchaudio: weights")
    architecture = spec.name.partition(".")[0]
    if spec.kind == "timm" and name is not None and name != architecture:
        raise ValueError(f"name = {name!r} disagrees with pretrained = {pretrained!r} (weights of a "
                         f"{architecture!r}): omit name, or set it to {architecture!r}")
