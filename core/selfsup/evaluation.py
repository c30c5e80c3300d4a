"""``selfsup eval RUN_DIR``: rebuild a run from its saved recipe, load a checkpoint, evaluate."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from selfsup.plugins import PluginManager
from selfsup.recipe import apply_overrides, check_components, parse_recipe


def saved_recipe(run_dir: Path, pm: PluginManager, overrides: list[str] | None = None) -> tuple[Any, dict, Path, str]:
    """The recipe a run was trained with (``recipe.json``, with ``overrides``), validated against the
    installed plugins: ``(recipe, parsed options, base directory, source label)`` for ``build_run``."""
    saved_path = Path(run_dir) / "recipe.json"
    if not saved_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a selfsup run directory (no recipe.json)")
    saved = json.loads(saved_path.read_text())
    source = str(saved_path)
    recipe = parse_recipe(apply_overrides(saved["recipe"], list(overrides or [])), source)
    base_dir = Path(saved["base_dir"])
    return recipe, check_components(recipe, pm.registry, source, base_dir), base_dir, source


def evaluate_run(
    run_dir: Path, pm: PluginManager, *, checkpoint: Path | None = None, names: list[str] | None = None,
    overrides: list[str] | None = None, device: str | None = None, random_init: bool = False,
) -> tuple[dict[str, float], Path]:
    """Metrics of the run's evaluators on ``checkpoint`` (default: the best one ``train.best`` selected,
    else the newest intact one); also written to
    ``<checkpoint>/eval.json``. Returns ``(metrics, checkpoint path)``.

    With ``random_init`` the model is evaluated as the recipe's seed initialises it, before any
    training: the baseline every pretrained figure should be read against (``eval-random-init.json``
    in the run directory)."""
    import torch

    from selfsup.engine import checkpoint as ckpt
    from selfsup.engine.build import build_run
    from selfsup.engine.evaluation import run_evaluators
    from selfsup.engine.run import resolve_device

    recipe, options, base_dir, source = saved_recipe(run_dir, pm, overrides)
    names = list(names or recipe.evaluators)
    unknown = [n for n in names if n not in recipe.evaluators]
    if unknown:
        raise ValueError(f"no evaluator named {unknown[0]!r} in the run's recipe "
                         f"(it has {', '.join(recipe.evaluators) or 'none'})")
    if not names:
        raise ValueError(f"the recipe of {run_dir} has no [evaluators]; add some with --set or to the recipe")
    built = build_run(recipe, pm.registry, base_dir=base_dir, source=source, plugins=pm, options=options,
                      initialise=random_init)  # init weights only for the baseline: a checkpoint is loaded next
    dev = resolve_device(device or recipe.train.device, source=source)
    if random_init:
        path, step, out = Path(run_dir), 0, Path(run_dir) / "eval-random-init.json"
    else:
        if checkpoint:
            path = Path(checkpoint)
        else:  # the best (train.best) if recorded and intact, else the newest intact; damage is reported
            path = ckpt.best_checkpoint(Path(run_dir))
            if path is None or ckpt.verify_checkpoint(path):
                path, problems = ckpt.find_resumable(Path(run_dir))
                for problem in problems:
                    warnings.warn(f"damaged checkpoint skipped: {problem}", stacklevel=2)
        if path is None:
            raise FileNotFoundError(f"{run_dir} has no intact checkpoint yet")
        ckpt.load_weights(path, built.model)
        step, out = json.loads((path / "meta.json").read_text())["step"], path / "eval.json"
    built.model.to(dev)
    with torch.no_grad():
        metrics = run_evaluators(recipe, built, names=names, step=step, device=dev, run_dir=Path(run_dir))
    out.write_text(json.dumps(metrics, indent=2))
    return metrics, path


def baseline_label(run_dir: Path) -> str:
    """What ``eval --random-init`` measures, named truthfully: ``"random init"`` when every backbone
    starts from its seed; ``"starting weights"`` when one is loaded from trained weights (``init``,
    or a ``pretrained`` option such as a transformers checkpoint continued by SimCSE)."""
    try:
        recipe = json.loads((Path(run_dir) / "recipe.json").read_text())["recipe"]
        specs = dict(recipe.get("backbones") or {})
    except (OSError, ValueError, KeyError, TypeError):
        return "random init"
    loaded = [key for key, spec in specs.items()
              if spec.get("init") or (spec.get("options") or {}).get("pretrained")]
    return f"starting weights ({', '.join(loaded)} pretrained)" if loaded else "random init"


BASELINE_FILE = "baseline.json"


def baseline_key(run_dir: Path) -> str:
    """The JSON key of the baseline's metrics: ``"random_init"``, or ``"starting_weights"`` when a
    backbone starts from trained weights (see :func:`baseline_label`)."""
    return "random_init" if baseline_label(run_dir) == "random init" else "starting_weights"


def save_baseline(run_dir: Path, trained: dict[str, Any], untrained: dict[str, Any], checkpoint: Path, *,
                  evaluators: list[str] | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Write ``run_dir/baseline.json`` atomically (a temporary file renamed over it): the trained
    checkpoint's metrics beside the baseline's, as ``selfsup eval --baseline`` printed them, with the
    checkpoint, its step, the baseline's label and the evaluators and overrides used. Returns the record."""
    import time

    from selfsup.engine.checkpoint import write_text_atomic

    checkpoint = Path(checkpoint)
    try:
        step = json.loads((checkpoint / "meta.json").read_text())["step"]
    except (OSError, ValueError, KeyError, TypeError):
        step = None
    record = {"checkpoint": checkpoint.name, "step": step, "label": baseline_label(run_dir),
              "trained": trained, baseline_key(run_dir): untrained, "evaluators": list(evaluators or []),
              "overrides": list(overrides or []), "time": round(time.time(), 3)}
    write_text_atomic(Path(run_dir) / BASELINE_FILE, json.dumps(record, indent=2))
    return record


def read_baseline(run_dir: Path) -> dict[str, Any] | None:
    """``run_dir/baseline.json`` (see :func:`save_baseline`), or ``None`` when absent or unreadable."""
    try:
        record = json.loads((Path(run_dir) / BASELINE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("trained"), dict) else None


def evaluate_with_baseline(run_dir: Path, pm: PluginManager, **kwargs: Any) -> dict[str, Any]:
    """:func:`evaluate_run` on the checkpoint and on the baseline (``kwargs``: its options but
    ``random_init``), saved to ``baseline.json`` (:func:`save_baseline`); returns the record."""
    trained, used = evaluate_run(run_dir, pm, **kwargs)
    untrained, _ = evaluate_run(run_dir, pm, random_init=True, **kwargs)
    return save_baseline(run_dir, trained, untrained, used, evaluators=kwargs.get("names"),
                         overrides=kwargs.get("overrides"))
