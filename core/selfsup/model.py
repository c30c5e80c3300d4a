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
    float32 tensors on the CPU, computed in eval mode without gradients in batches of ``batch_size``.

    ``key`` names the backbone in the run's recipe. ``projection`` (optional) maps its pooled
    features into the space a task compares them in (a CLIP task's shared image-text space, see
    :func:`load_model`'s ``project``): :meth:`features` and :meth:`embed` then return projected
    embeddings."""

    def __init__(self, backbone: torch.nn.Module, task: torch.nn.Module | None = None, *, collate: Any = None,
                 device: str | torch.device = "cpu", source: str = "", recipe: dict[str, Any] | None = None,
                 batch_size: int = 256, base_dir: str | Path = ".", data: Any = None, key: str | None = None,
                 projection: torch.nn.Module | None = None):
        self.backbone, self.task, self.collate = backbone, task, collate
        self.key, self.projection = key, projection
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
        for module in self.modules():
            module.to(self.device)
        return self

    def modules(self) -> list[torch.nn.Module]:
        """The backbone, the fine-tuned task and the projection (those the model has)."""
        return [m for m in (self.backbone, self.task, self.projection) if m is not None]

    def features(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Pooled features ``[N, D]`` of a collated batch already on the model's device: the
        backbone's ``embed``, through the ``projection`` when there is one. No mode or grad handling."""
        features = self.backbone.embed(batch)
        return features if self.projection is None else self.projection(features)

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
        """Pooled features ``[N, output_dim]`` (the backbone's ``embed``, projected when the model has a
        ``projection``)."""
        with frozen(*self.modules()):
            return torch.cat([self.features(b).float().cpu() for b in self._batches(inputs)])

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


def load_model(path: Path, pm: Any, *, device: str = "cpu", checkpoint: str | Path | None = None,
               backbone: str | None = None, project: str | None = None) -> Model:
    """The model at ``path`` (a run directory or an export). From a run directory, ``backbone`` picks
    any backbone of the recipe by key (default: :func:`primary`'s) and ``project`` names a task whose
    projection of that backbone's features the embeddings go through (the task's
    ``joint_projection(role)``, e.g. CLIP's shared space). An export holds one backbone already."""
    from selfsup.engine.init import MANIFEST

    path = Path(path)
    if (path / MANIFEST).is_file():
        if project is not None:
            raise ValueError(f"project={project!r}: an export holds the backbone only; load the run directory")
        model = _from_export(path, pm, device)
        if backbone is not None and backbone != model.key:
            raise ValueError(f"backbone={backbone!r}: {path} is an export of backbone {model.key!r}")
        return model
    if not (path / "recipe.json").is_file():
        raise FileNotFoundError(f"{path} is neither a selfsup run directory (recipe.json) nor an export ({MANIFEST})")
    built, recipe, base_dir, weights = load_trained(path, pm, Path(checkpoint) if checkpoint else None)
    return model_of(built, recipe, base_dir, weights, path, device, backbone=backbone, project=project)


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


def model_of(built: Any, recipe: Any, base_dir: Path, path: Path, run_dir: Path, device: str, *,
             backbone: str | None = None, project: str | None = None) -> Model:
    """The :class:`Model` a user means in a rebuilt run (see :func:`primary`), or backbone ``backbone``
    with the data of the first task that trains it (and ``project``'s projection, see :func:`load_model`)."""
    key = primary(recipe)[0] if backbone is None else _known_backbone(recipe, backbone)
    task_name = finetune_task(recipe, key)
    task = built.model.tasks[task_name] if task_name else None
    data = built.data[recipe.tasks[task_name].data if task_name else data_of(recipe, key)]
    projection = None if project is None else _projection(built, recipe, key, project)
    return Model(built.model.backbones[key], task, collate=getattr(data, "collate", None), device=device,
                 source=f"{run_dir} ({path.name})", recipe=recipe.model_dump(mode="json"), base_dir=base_dir,
                 data=data, key=key, projection=projection)


def finetune_task(recipe: Any, key: str) -> str | None:
    """The fine-tuning task of backbone ``key``, if the recipe has one."""
    return next((name for name, spec in recipe.tasks.items() if spec.type == "finetune" and spec.backbone == key),
                None)


def uses(spec: Any, key: str) -> bool:
    """Whether a task or evaluator table's ``backbone`` (a key, or a table of roles) names ``key``."""
    named = spec.backbone
    return named == key if isinstance(named, str) else key in dict(named or {}).values()


def data_of(recipe: Any, key: str) -> str:
    """The data table of the first task that trains backbone ``key`` (else of an evaluator reading it,
    else the first task's): the samples that backbone was trained on, and how served inputs decode."""
    for spec in recipe.tasks.values():
        if uses(spec, key):
            return spec.data
    for spec in (recipe.evaluators or {}).values():
        if getattr(spec, "data", None) and uses(spec, key):
            return spec.data
    return next(iter(recipe.tasks.values())).data


def _known_backbone(recipe: Any, key: str) -> str:
    if key not in recipe.backbones:
        raise ValueError(f"backbone {key!r}: the recipe has no such backbone{_hint(key, recipe.backbones)} "
                         f"(its backbones: {', '.join(recipe.backbones)})")
    return key


def _hint(name: str, known: Any) -> str:
    import difflib

    near = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
    return f"; did you mean {near[0]!r}?" if near else ""


def _projection(built: Any, recipe: Any, key: str, project: str) -> torch.nn.Module:
    """Task ``project``'s ``joint_projection(role)``: the module from backbone ``key``'s pooled
    features to the space the task compares them in. ``role`` is the backbone's role in the task's
    ``backbone`` table (``{ image = "cnn", text = "bert" }``), None for a task of one backbone."""
    if project not in recipe.tasks:
        raise ValueError(f"project {project!r}: the recipe has no such task{_hint(project, recipe.tasks)} "
                         f"(its tasks: {', '.join(recipe.tasks)})")
    spec, task = recipe.tasks[project], built.model.tasks[project]
    joint = getattr(task, "joint_projection", None)
    if joint is None:
        raise ValueError(f"project {project!r}: a {spec.type!r} task has no joint_projection(); "
                         "use the backbone's own features (no project)")
    if not uses(spec, key):
        raise ValueError(f"project {project!r}: that task does not train backbone {key!r}")
    roles = [role for role, named in dict(spec.backbone).items() if named == key] if not isinstance(
        spec.backbone, str) else [None]
    return joint(roles[0])


def primary(recipe: Any) -> tuple[str, str | None]:
    """The backbone a user means (a fine-tuning task's, else the first) and the fine-tuning task, if any."""
    for name, spec in recipe.tasks.items():
        if spec.type == "finetune" and isinstance(spec.backbone, str):
            return spec.backbone, name
    return next(iter(recipe.backbones)), None


def _from_export(folder: Path, pm: Any, device: str) -> Model:
    from safetensors.torch import load_model

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
    load_model(backbone, str(folder / manifest["weights"]))  # strict; restores tied tensors
    task = None
    if manifest.get("task"):
        spec = manifest["task"]
        task = context.build("tasks", spec["type"], spec["options"], name=spec["name"], backbone=backbone)
        load_model(task, str(folder / spec["weights"]))
    collate = None
    if manifest.get("collate_data"):  # the data source's collate (text padding): rebuilt from its options
        data = manifest["collate_data"]
        collate = getattr(context.build("data", data["type"], data.get("options") or {}), "collate", None)
    return Model(backbone, task, collate=collate, device=device, source=str(folder), recipe=manifest.get("recipe"),
                 base_dir=manifest.get("base_dir", "."), key=manifest["key"])
