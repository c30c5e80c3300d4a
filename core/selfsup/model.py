"""A trained model for inference: ``selfsup.load(path)`` -> :class:`Model`.

From a run directory the whole run is rebuilt from its recipe (data sources included, since a
head may size itself from them) and the best, else newest intact, checkpoint is loaded. From a
``selfsup export --format selfsup`` folder only the backbone and the fine-tuned task are built,
from the options the export recorded, so the data need not be there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from selfsup.lib.data import to_device
from selfsup.lib.modules import frozen

Inputs = Mapping[str, Any] | Sequence[Mapping[str, Any]]


class Model:
    """A backbone, and the head of a fine-tuned run when there is one.

    Inputs are sample dicts as the run's data source yields them (``{"image": [C, H, W]}``,
    ``{"input_ids": [T]}``, ``{"audio": [S]}``), a list of them (collated by the data source's
    ``collate`` when it has one, e.g. text padding), or a batch dict already collated. Outputs are
    float32 tensors on the CPU, computed in eval mode without gradients in batches of ``batch_size``."""

    def __init__(self, backbone: torch.nn.Module, task: torch.nn.Module | None = None, *, collate: Any = None,
                 device: str | torch.device = "cpu", source: str = "", recipe: dict[str, Any] | None = None,
                 batch_size: int = 256, base_dir: str | Path = ".", data: Any = None):
        self.backbone, self.task, self.collate = backbone, task, collate
        self.data = data  # the run's (fine-tuning, else first) task data, when loaded from a run directory
        self.source, self.recipe, self.batch_size = source, recipe or {}, batch_size
        self.base_dir = Path(base_dir)  # the recipe's directory: relative paths in its data tables
        self.device = torch.device("cpu")
        self.to(device)

    def __repr__(self) -> str:
        head = f", head {type(self.task.head).__name__} ({self.task.head.problem})" if self.task is not None else ""
        return f"Model({type(self.backbone).__name__}{head}, from {self.source}, on {self.device})"

    @property
    def has_head(self) -> bool:
        return self.task is not None

    def to(self, device: str | torch.device) -> Model:
        """Move the model to ``device`` (``"cuda"``, ``"cpu"``, ...); returns itself."""
        self.device = torch.device(device)
        self.backbone.to(self.device)
        if self.task is not None:
            self.task.to(self.device)
        return self

    def _batches(self, inputs: Inputs) -> Any:
        from torch.utils.data import default_collate

        if isinstance(inputs, Mapping):
            yield to_device(dict(inputs), self.device)
            return
        samples = list(inputs)
        if not samples:
            raise ValueError("no inputs")
        collate = self.collate or default_collate
        for start in range(0, len(samples), self.batch_size):
            yield to_device(collate([dict(s) for s in samples[start:start + self.batch_size]]), self.device)

    def embed(self, inputs: Inputs) -> torch.Tensor:
        """Pooled features ``[N, output_dim]`` (the backbone's ``embed``)."""
        with frozen(self.backbone):
            return torch.cat([self.backbone.embed(b).float().cpu() for b in self._batches(inputs)])

    def outputs(self, inputs: Inputs) -> torch.Tensor:
        """The fine-tuned head's raw outputs (logits, or values on the standardised scale)."""
        if self.task is None:
            raise ValueError(f"{self.source} has no fine-tuned head: use embed(), or load a `selfsup finetune` run")
        with frozen(self.backbone, self.task):
            return torch.cat([self.task.outputs(b, self.backbone).float().cpu() for b in self._batches(inputs)])

    def predict(self, inputs: Inputs) -> torch.Tensor:
        """The head's predictions: class ids ``[N]``, 0/1 labels ``[N, C]`` or values ``[N, K]``."""
        outputs = self.outputs(inputs)
        with torch.no_grad():
            return self.task.head.predict(outputs.to(self.device)).cpu()

    def probabilities(self, inputs: Inputs) -> torch.Tensor:
        """Class probabilities: softmax of a single-label head, per-label sigmoid of a multi-label one."""
        outputs = self.outputs(inputs)
        if self.task.head.problem in ("single_label", "token"):
            return outputs.softmax(-1)
        if self.task.head.problem == "multi_label":
            return outputs.sigmoid()
        raise ValueError(f"a {self.task.head.problem} head gives values, not probabilities: use predict()")


def load_model(path: Path, pm: Any, *, device: str = "cpu", checkpoint: str | Path | None = None) -> Model:
    from selfsup.engine.init import MANIFEST

    path = Path(path)
    if (path / MANIFEST).is_file():
        return _from_export(path, pm, device)
    if not (path / "recipe.json").is_file():
        raise FileNotFoundError(f"{path} is neither a selfsup run directory (recipe.json) nor an export ({MANIFEST})")
    return _from_run(path, pm, device, Path(checkpoint) if checkpoint else None)


def load_trained(run_dir: Path, pm: Any, checkpoint: Path | None = None) -> tuple[Any, Any, Path, Path]:
    """The run rebuilt from its recipe (data sources included) with a checkpoint's weights (default:
    the best, else newest intact one): ``(built run, recipe, base directory, checkpoint path)``."""
    from selfsup.api import open_run
    from selfsup.engine import checkpoint as ckpt
    from selfsup.engine.build import build_run
    from selfsup.evaluation import saved_recipe

    recipe, options, base_dir, source = saved_recipe(run_dir, pm)
    built = build_run(recipe, pm.registry, base_dir=base_dir, source=source, plugins=pm, options=options,
                      with_evaluators=False, initialise=False)
    path = checkpoint or open_run(run_dir).checkpoint
    if path is None:
        raise FileNotFoundError(f"{run_dir} has no intact checkpoint")
    ckpt.load_weights(path, built.model)
    return built, recipe, base_dir, Path(path)


def _from_run(run_dir: Path, pm: Any, device: str, checkpoint: Path | None) -> Model:
    built, recipe, base_dir, path = load_trained(run_dir, pm, checkpoint)
    return model_of(built, recipe, base_dir, path, run_dir, device)


def model_of(built: Any, recipe: Any, base_dir: Path, path: Path, run_dir: Path, device: str) -> Model:
    """The :class:`Model` a user means in a rebuilt run (see :func:`primary`)."""
    key, task_name = primary(recipe)
    task = built.model.tasks[task_name] if task_name else None
    data = built.data[recipe.tasks[task_name or next(iter(recipe.tasks))].data]
    return Model(built.model.backbones[key], task, collate=getattr(data, "collate", None), device=device,
                 source=f"{run_dir} ({path.name})", recipe=recipe.model_dump(mode="json"), base_dir=base_dir,
                 data=data)


def primary(recipe: Any) -> tuple[str, str | None]:
    """The backbone a user means (a fine-tuning task's, else the first) and the fine-tuning task, if any."""
    for name, spec in recipe.tasks.items():
        if spec.type == "finetune" and isinstance(spec.backbone, str):
            return spec.backbone, name
    return next(iter(recipe.backbones)), None


def _from_export(folder: Path, pm: Any, device: str) -> Model:
    from safetensors.torch import load_file

    from selfsup.components import BuildContext
    from selfsup.engine import checkpoint as ckpt
    from selfsup.engine.init import read_manifest

    manifest = read_manifest(folder)
    for name, entry in manifest.get("files", {}).items():
        problem = ckpt._file_problem(folder / name, entry)
        if problem:
            raise ckpt.CheckpointReadError(f"{folder / name}: {problem}")
    context = BuildContext(name=manifest["key"], seed=0, base_dir=Path(manifest.get("base_dir", ".")),
                           _registry=pm.registry, load_weights=False)  # the export's weights are loaded next
    backbone = context.build("backbones", manifest["type"], manifest.get("options") or {})
    backbone.load_state_dict(load_file(str(folder / manifest["weights"])))
    task = None
    if manifest.get("task"):
        spec = manifest["task"]
        task = context.build("tasks", spec["type"], spec["options"], name=spec["name"], backbone=backbone)
        task.load_state_dict(load_file(str(folder / spec["weights"])))
    collate = None
    if manifest.get("collate_data"):  # the data source's collate (text padding): rebuilt from its options
        data = manifest["collate_data"]
        collate = getattr(context.build("data", data["type"], data.get("options") or {}), "collate", None)
    return Model(backbone, task, collate=collate, device=device, source=str(folder), recipe=manifest.get("recipe"),
                 base_dir=manifest.get("base_dir", "."))
