"""The Python API: what the command line does, for notebooks and scripts.

    import selfsup

    run = selfsup.train("simclr-digits", overrides={"train.epochs": 2})   # a Run
    run.metrics["knn/accuracy"]
    tuned = selfsup.finetune(run, "finetune-digits")                       # a Run
    model = selfsup.load(tuned)                                            # a Model
    model.predict([{"image": image}])                                      # class ids
    selfsup.evaluate(tuned, baseline=True)

The CLI's ``train``, ``finetune``, ``eval`` and ``export`` call these functions. Errors are the
library's: :class:`selfsup.recipe.RecipeError` for a bad recipe or path, ``TrainingDiverged``,
``Preempted`` and ``CheckpointWriteError`` from a run (see docs/python-api.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

Overrides = Mapping[str, Any] | Sequence[str] | None


def _split(overrides: Overrides) -> tuple[list[str], dict[str, Any]]:
    """``--set`` strings, or ``{"train.lr": 3e-4}`` values (``None`` removes the field)."""
    if overrides is None:
        return [], {}
    if isinstance(overrides, Mapping):
        return [], dict(overrides)
    if isinstance(overrides, str):
        raise TypeError("overrides: pass a dict {'train.lr': 3e-4} or a list of 'KEY=VALUE' strings")
    return list(overrides), {}


def _plugins(plugins_dir: str | Path | None = None) -> Any:
    from selfsup.plugins import get_plugin_manager

    return get_plugin_manager([plugins_dir] if plugins_dir else ())


@dataclass
class Run:
    """A run directory: its recipe, metrics and checkpoints. ``status`` and ``step`` are set when the
    run was made by this process (``selfsup.train``); :func:`open_run` reads any run directory."""

    path: Path
    status: str | None = None
    step: int | None = None
    _result: Any = field(default=None, repr=False)

    @property
    def recipe(self) -> dict[str, Any]:
        """The resolved recipe the run was trained with (``recipe.json``)."""
        return json.loads((self.path / "recipe.json").read_text())["recipe"]

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every record of ``metrics.jsonl`` (``kind`` ``train``, ``eval``; ``round`` with ``[rounds]``) in order."""
        from selfsup.engine.metrics import read_metrics

        return read_metrics(self.path)

    @property
    def metrics(self) -> dict[str, float]:
        """The last train record's metrics and the last value of every evaluation metric."""
        out: dict[str, float] = {}
        last_train: dict[str, Any] = {}
        for record in self.history:
            values = {k: v for k, v in record.items() if k not in ("kind", "step", "time")}
            if record.get("kind") == "train":
                last_train = values
            elif record.get("kind") == "eval":
                out.update(values)
        return {**last_train, **out}

    @property
    def pretrained(self) -> dict[str, Any]:
        """``{backbone key: record}`` of the backbones that started from pretrained weights
        (``pretrained.json``: spec, Hub revision, files with sha256, load report); empty if none."""
        path = self.path / "pretrained.json"
        return json.loads(path.read_text())["backbones"] if path.is_file() else {}

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint a user means: the best one (``train.best``) if recorded and intact, else the
        newest intact one, else ``None``."""
        from selfsup.engine import checkpoint as ckpt

        best = ckpt.best_checkpoint(self.path)
        if best is not None and not ckpt.verify_checkpoint(best):
            return best
        return ckpt.find_resumable(self.path)[0]

    def evaluate(self, **kwargs: Any) -> dict[str, Any]:
        """:func:`evaluate` on this run."""
        return evaluate(self, **kwargs)

    def load(self, device: str = "cpu") -> Model:
        """:func:`load` of this run."""
        return load(self, device=device)

    def export(self, format: str = "selfsup", out: str | Path | None = None, **kwargs: Any) -> Path:
        """:func:`export` of this run (default folder: ``<run>/export/<format>``)."""
        return export(self, format=format, out=out, **kwargs)

    def __fspath__(self) -> str:
        return str(self.path)


def open_run(path: str | Path | Run) -> Run:
    """A :class:`Run` for an existing run directory."""
    if isinstance(path, Run):
        return path
    path = Path(path)
    if not (path / "recipe.json").is_file():
        raise FileNotFoundError(f"{path} is not a selfsup run directory (no recipe.json)")
    return Run(path=path)


def train(recipe: str | Path, overrides: Overrides = None, *, resume: bool = False, resume_weights_only: bool = False,
          progress: bool = False, plugins_dir: str | Path | None = None) -> Run:
    """Train ``recipe`` (a .toml file or a shipped recipe name) in this process, as ``selfsup train``
    does; returns the :class:`Run`. ``overrides``: ``{"train.lr": 3e-4}`` or ``["train.lr=3e-4"]``."""
    from selfsup.recipe import load_recipe

    pm = _plugins(plugins_dir)
    strings, values = _split(overrides)
    loaded = load_recipe(str(recipe), pm.registry, strings, values=values)
    return _train(loaded, pm, resume, resume_weights_only, progress)


def finetune(pretrained: str | Path | Run, recipe: str | Path, overrides: Overrides = None, *,
             backbone: str | None = None, resume: bool = False, progress: bool = False,
             plugins_dir: str | Path | None = None) -> Run:
    """Fine-tune the backbone of ``pretrained`` (a run, a checkpoint or a ``selfsup`` export) with
    ``recipe``, as ``selfsup finetune`` does (docs/finetuning.md); returns the :class:`Run`."""
    from selfsup.recipe import load_recipe

    pm = _plugins(plugins_dir)
    strings, values = _split(overrides)
    loaded = load_recipe(str(recipe), pm.registry, strings, values=values, pretrained=Path(pretrained),
                         pretrained_backbone=backbone)
    return _train(loaded, pm, resume, False, progress)


def _train(loaded: Any, pm: Any, resume: bool, weights_only: bool, progress: bool) -> Run:
    from selfsup.engine.loop import train as run_training

    result = run_training(loaded, pm, resume=resume, resume_weights_only=weights_only, progress=progress)
    return Run(path=Path(result.run_dir), status=result.status, step=result.step, _result=result)


def evaluate(run: str | Path | Run, *, checkpoint: str | Path | None = None, evaluators: Iterable[str] | None = None,
             overrides: Sequence[str] | None = None, baseline: bool = False, device: str | None = None,
             plugins_dir: str | Path | None = None) -> dict[str, Any]:
    """The run's evaluators on its best (else newest intact) checkpoint, as ``selfsup eval`` does:
    ``{metric: value}``. With ``baseline`` also the model before training: ``{"trained": ...,
    "random_init" | "starting_weights": ...}`` (named as :func:`selfsup.evaluation.baseline_label` says),
    also saved to ``<run>/baseline.json``."""
    from selfsup.evaluation import baseline_key, evaluate_run, save_baseline

    run = open_run(run)
    pm = _plugins(plugins_dir)
    kwargs = dict(checkpoint=Path(checkpoint) if checkpoint else None, names=list(evaluators or []),
                  overrides=list(overrides or []), device=device)
    trained, used = evaluate_run(run.path, pm, **kwargs)
    if not baseline:
        return trained
    untrained, _ = evaluate_run(run.path, pm, random_init=True, **kwargs)
    save_baseline(run.path, trained, untrained, used, evaluators=kwargs["names"], overrides=kwargs["overrides"])
    return {"trained": trained, baseline_key(run.path): untrained}


def load(path: str | Path | Run, *, device: str = "cpu", checkpoint: str | Path | None = None,
         backbone: str | None = None, project: str | None = None, plugins_dir: str | Path | None = None) -> Model:
    """A trained model ready to use: a run directory (its best, else newest intact checkpoint, or
    ``checkpoint``) or a ``selfsup export --format selfsup`` folder. See :class:`Model`.
    ``backbone`` picks a backbone of a run with several (default: the fine-tuned one, else the
    first); ``project`` names a task (CLIP) whose shared-space projection its embeddings go through."""
    from selfsup.model import load_model

    target = path.path if isinstance(path, Run) else Path(path)
    return load_model(target, _plugins(plugins_dir), device=device, checkpoint=checkpoint, backbone=backbone,
                      project=project)


def export(run: str | Path | Run, *, format: str = "selfsup", out: str | Path | None = None,
           backbone: str | None = None, checkpoint: str | Path | None = None,
           plugins_dir: str | Path | None = None) -> Path:
    """Write the run's model in ``format`` to ``out`` (default ``<run>/export/<format>``), as
    ``selfsup export`` does (docs/export.md); returns the folder."""
    from selfsup.exporting import export_run

    run = open_run(run)
    folder = Path(out) if out is not None else run.path / "export" / format
    return export_run(run.path, folder, format=format, backbone=backbone,
                      checkpoint=Path(checkpoint) if checkpoint else None, pm=_plugins(plugins_dir))


from selfsup.model import Model  # noqa: E402 - the class load() returns, re-exported here
