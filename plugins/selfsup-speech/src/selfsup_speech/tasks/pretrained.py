"""Loading an earlier model's backbone (HuBERT's later iterations cluster its features): from a
selfsup run directory (rebuilt from its saved recipe, newest checkpoint) or from a
``wav2vec2_encoder`` export directory."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from selfsup.components import BuildContext


def load_backbone(path: Path, backbone: str | None = None) -> nn.Module:
    """The backbone stored at ``path`` (a run directory or an export directory), on the CPU, in
    eval mode."""
    path = Path(path)
    if (path / "config.json").is_file() and (path / "model.pt").is_file():
        from selfsup_speech.backbones.wav2vec2 import load_export

        return load_export(path).eval()
    if (path / "recipe.json").is_file():
        return _from_run(path, backbone).eval()
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: train the earlier model first (e.g. the hubert-quickstart "
                                f"recipe)")
    raise FileNotFoundError(f"{path} is neither a selfsup run directory (recipe.json) nor a wav2vec2_encoder export "
                            f"(config.json + model.pt)")


def _from_run(run_dir: Path, name: str | None) -> nn.Module:
    from safetensors.torch import load_file

    from selfsup.lib import latest_checkpoint

    saved = json.loads((run_dir / "recipe.json").read_text())
    recipe, base_dir = saved["recipe"], Path(saved.get("base_dir", run_dir))
    backbones = recipe.get("backbones", {})
    if name is None:
        if len(backbones) != 1:
            raise ValueError(f"{run_dir} has backbones {sorted(backbones)}: name one with backbone = ...")
        name = next(iter(backbones))
    if name not in backbones:
        raise ValueError(f"{run_dir} has no backbone {name!r} (it has {sorted(backbones)})")
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint yet")
    spec = backbones[name]
    context = BuildContext(name=name, seed=int(recipe.get("seed", 0)), base_dir=base_dir)
    try:  # by its registered name, among the installed plugins
        module = context.build("backbones", spec["type"], spec.get("options", {}))
    except ValueError as exc:
        raise ValueError(f"{run_dir}: {exc}") from exc
    prefix = f"backbones.{name}."
    saved = load_file(str(checkpoint / "model.safetensors"))
    state = {k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix)}
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{checkpoint}: backbone {name!r} does not match its recipe: missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}")
    return module.to(torch.device("cpu"))
