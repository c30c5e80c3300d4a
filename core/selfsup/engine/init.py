"""``[backbones.<name>.init]``: start a backbone from the weights of a trained run or an export.

The weights come from, in this order of what ``path`` is:

* a ``selfsup export --format selfsup`` folder (``selfsup.json`` + ``backbone.safetensors``: one backbone);
* a checkpoint folder (``meta.json`` + ``model.safetensors``: the whole model of a run);
* a run directory: its best checkpoint if ``train.best`` recorded one, else its newest intact one.

From a whole model, the tensors under ``backbones.<key>.`` are loaded into the backbone, strictly
(every name and shape must match). Files are checked against the hashes recorded when they were
written, so a damaged file is reported, never loaded.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from selfsup.engine import checkpoint as ckpt

MANIFEST = "selfsup.json"  # written by `selfsup export --format selfsup`


@dataclass
class InitSource:
    """Where a backbone's starting weights were found: the file, the step and the backbone's spec."""

    weights: Path
    step: int | None
    key: str
    type: str | None
    options: dict[str, Any] | None
    description: str
    recorded: dict[str, Any] | None = None  # an export's {sha256, bytes} of its weights (checkpoints: meta.json)


def locate(path: Path, key: str, wanted: str | None = None) -> InitSource:
    """Where the backbone ``wanted`` (default ``key``, or the only one) is in the run, checkpoint or
    export at ``path``, with the type and options it was trained with; reads no tensors. Raises
    ValueError saying what ``path`` holds when it is none of them or lacks the backbone."""
    path = Path(path)
    if (path / MANIFEST).is_file():
        manifest = read_manifest(path)
        if wanted and wanted != manifest.get("key"):
            raise ValueError(f"{path} holds backbone {manifest.get('key')!r}, not {wanted!r}")
        weights = path / manifest.get("weights", ckpt.WEIGHTS)
        return InitSource(weights=weights, step=manifest.get("step"), key=manifest["key"], type=manifest.get("type"),
                          options=manifest.get("options"), description=f"{path} (export of {manifest['key']!r})",
                          recorded=manifest.get("files", {}).get(weights.name))
    if (path / ckpt.META).is_file():
        checkpoint, run_dir = path, path.parent.parent
    elif (path / "recipe.json").is_file() or ckpt.checkpoint_dir(path).is_dir():
        run_dir = path
        checkpoint = ckpt.best_checkpoint(path)
        if checkpoint is None or ckpt.verify_checkpoint(checkpoint):
            checkpoint, problems = ckpt.find_resumable(path)
            for problem in problems:
                warnings.warn(f"damaged checkpoint skipped: {problem}", stacklevel=3)
        if checkpoint is None:
            raise ValueError(f"{path} has no intact checkpoint")
    elif path.exists():
        raise ValueError(f"{path} is not a selfsup run directory, checkpoint or export (no recipe.json, "
                         f"{ckpt.META} or {MANIFEST})")
    else:
        raise ValueError(f"{path} does not exist")
    header, problem = ckpt._safetensors_header(checkpoint / ckpt.WEIGHTS)
    if problem:
        raise ckpt.CheckpointReadError(f"{checkpoint / ckpt.WEIGHTS}: {problem}")
    keys = sorted({name.split(".")[1] for name in header if name.startswith("backbones.")})
    chosen = wanted or (key if key in keys else (keys[0] if len(keys) == 1 else None))
    if chosen is None or chosen not in keys:
        what = f"no backbone {chosen!r}" if chosen else "several backbones"
        raise ValueError(f"{checkpoint} has {what} (it has {', '.join(keys) or 'none'}); name one with init.backbone")
    spec = _saved_spec(checkpoint, run_dir, chosen)
    step = json.loads((checkpoint / ckpt.META).read_text()).get("step")
    return InitSource(weights=checkpoint / ckpt.WEIGHTS, step=step, key=chosen, type=spec.get("type"),
                      options=spec.get("options"), description=f"{checkpoint} (backbone {chosen!r}, step {step})")


def read_manifest(folder: Path) -> dict[str, Any]:
    """``selfsup.json`` of a ``selfsup export --format selfsup`` folder; ValueError for another
    library's export that happens to use the name (a speech backbone's torchaudio export does)."""
    manifest = json.loads((Path(folder) / MANIFEST).read_text())
    if not isinstance(manifest, dict) or manifest.get("format") != "selfsup-export":
        raise ValueError(f"{folder} holds a {MANIFEST} that is not a `selfsup export --format selfsup` manifest "
                         f"(a library-format export); export the run with --format selfsup, or use the run directory")
    return manifest


def find_source(path: Path, key: str, wanted: str | None = None) -> tuple[InitSource, dict[str, torch.Tensor]]:
    """:func:`locate`, and the backbone's tensors (names without the ``backbones.<key>.`` prefix), checked
    against the hashes recorded when they were written."""
    from safetensors.torch import load_file

    source = locate(path, key, wanted)
    if (Path(path) / MANIFEST).is_file():  # an export: one backbone's tensors
        problem = ckpt._file_problem(source.weights, source.recorded)
        if problem:
            raise ckpt.CheckpointReadError(f"{source.weights}: {problem}")
        return source, load_file(str(source.weights))
    tensors = ckpt.read_weights(source.weights.parent)
    prefix = f"backbones.{source.key}."
    return source, {name[len(prefix):]: t for name, t in tensors.items() if name.startswith(prefix)}


def _saved_spec(checkpoint: Path, run_dir: Path, key: str) -> dict[str, Any]:
    """The ``[backbones.<key>]`` table the checkpoint was trained with (empty if unknown)."""
    try:
        meta = json.loads((checkpoint / ckpt.META).read_text())
        config = meta.get("config") or json.loads((run_dir / "recipe.json").read_text())["recipe"]
        return dict(config["backbones"][key])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def load_init(backbone: torch.nn.Module, key: str, path: Path, wanted: str | None, spec_type: str) -> InitSource:
    """Load the starting weights of ``backbone`` (recipe key ``key``, registered type ``spec_type``)."""
    source, tensors = find_source(path, key, wanted)
    if source.type is not None and source.type != spec_type:
        raise ValueError(f"{source.description} is a {source.type!r} backbone, not {spec_type!r}")
    missing, unexpected = _load(backbone, tensors)
    if missing or unexpected:
        raise ValueError(f"{source.description} does not match this backbone: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]} (were its options changed?)")
    return source


def _load(backbone: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    own = backbone.state_dict()
    try:  # through load_state_dict first: a module may size a buffer from what it loads
        result = backbone.load_state_dict(tensors, strict=False)
    except RuntimeError as err:
        wrong = [f"{n} is {tuple(t.shape)} there but {tuple(own[n].shape)} here"
                 for n, t in tensors.items() if n in own and tuple(t.shape) != tuple(own[n].shape)]
        if "size mismatch" in str(err) and wrong:
            raise ValueError(f"shapes differ: {'; '.join(wrong[:3])} (were the backbone's options changed?)") from None
        raise
    # a tied tensor (an LM decoder sharing the embedding matrix) is saved once: its alias counts as loaded
    loaded = {own[n].data_ptr() for n in tensors if n in own}
    missing = [n for n in result.missing_keys if own[n].data_ptr() not in loaded]
    return sorted(missing), sorted(result.unexpected_keys)
