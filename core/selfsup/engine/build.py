"""Turn a validated recipe into objects: data sources, augmentations, backbones, tasks, evaluators.

A factory that raises (unreadable file, incompatible backbone, ...) becomes a one-line
:class:`RecipeError` naming the recipe table it came from. Options are validated once, by recipe
validation (:func:`selfsup.recipe.check_components`), which hands the parsed models to building.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfsup.components import BuildContext
from selfsup.engine.errors import component_error
from selfsup.recipe import ComponentSpec, Recipe, RecipeError
from selfsup.registry import Kind, Registry


def select_backbones(backbones: Any, ref: str | dict[str, str]) -> Any:
    """The backbone a task or evaluator names, or ``{role: backbone}`` for a table of roles."""
    if isinstance(ref, str):
        return backbones[ref]
    return {role: backbones[key] for role, key in ref.items()}


class SelfSupModel(nn.Module):
    """Every backbone and every task head of a run, as one module (one ``state_dict``)."""

    def __init__(
        self,
        backbones: dict[str, nn.Module],
        tasks: dict[str, nn.Module],
        task_backbone: dict[str, str | dict[str, str]],
        labels: dict[str, str] | None = None,
    ):
        super().__init__()
        self.backbones = nn.ModuleDict(backbones)
        self.tasks = nn.ModuleDict(tasks)
        self.task_backbone = dict(task_backbone)
        self.labels = dict(labels or {})  # "tasks.<name>" -> "tasks.<name> (distribution version)", for errors

    def backbone_of(self, task: str) -> Any:
        """The task's backbone, or ``{role: backbone}`` for a task with several."""
        return select_backbones(self.backbones, self.task_backbone[task])

    def forward(self, batches: dict[str, Any]) -> dict[str, tuple[torch.Tensor, dict[str, Any]]]:
        """``{task: batch}`` -> ``{task: (loss, metrics)}``: one forward for all tasks of a step."""
        out = {}
        for name, batch in batches.items():
            try:
                result = self.tasks[name](batch, self.backbone_of(name))
            except Exception as exc:  # noqa: BLE001 - re-raised naming the task, its plugin and the batch's keys
                raise component_error(self.labels.get(f"tasks.{name}", f"tasks.{name}"), exc, "forward", batch) from exc
            out[name] = (result.loss, result.metrics)
        return out

    def step_started(self, step: int) -> None:
        """Tell every task that defines ``on_step(step)`` the optimizer step about to run (0-based:
        the number of optimizer steps completed), once per step whatever ``grad_accum`` is. Momentum
        teachers that are not yet a copy of their student become one first (outside any forward)."""
        from selfsup.lib.teacher import EMATeacher

        for module in self.tasks.modules():
            if isinstance(module, EMATeacher):
                module.start()
        for task in self.tasks.values():
            hook = getattr(task, "on_step", None)
            if hook is not None:
                hook(step)

    def step_finished(self, step: int, total_steps: int) -> None:
        """Tell every task that defines ``after_step(step, total_steps)`` that optimizer step ``step``
        (1-based) of ``total_steps`` was applied: momentum teachers follow the student here."""
        for task in self.tasks.values():
            hook = getattr(task, "after_step", None)
            if hook is not None:
                hook(step, total_steps)


@dataclass
class Built:
    data: dict[str, Any]
    augmentations: dict[str, Any]
    model: SelfSupModel
    evaluators: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)  # "tasks.<name>" -> "tasks.<name> (plugin version)"
    initialised: dict[str, str] = field(default_factory=dict)  # backbone key -> where its init weights came from

    def pipeline(self, names: list[str]) -> list[Any]:
        return [self.augmentations[n] for n in names]


def component_label(registry: Registry, kind: Kind, path: str, spec: ComponentSpec, plugins: Any = None) -> str:
    """``tasks.rotnet (selfsup-rotnet 0.1.0)``: a recipe field and the plugin that provides it."""
    component = registry.get(kind, spec.type)
    if component is None:
        return path
    info = getattr(plugins, "infos", {}).get(component.plugin)
    version = getattr(info, "version", None)
    provider = component.distribution or f"plugin {component.plugin}"
    return f"{path} ({provider}{' ' + version if version else ''})"


def _build(registry: Registry, kind: Kind, path: str, spec: ComponentSpec, context: BuildContext, source: str,
           parsed: Any = None) -> Any:
    component = registry.get(kind, spec.type)
    assert component is not None, "check_components() validated the names"
    try:
        options = parsed if parsed is not None else component.options.model_validate(
            spec.options, context={"base_dir": context.base_dir})
        return component.factory(options, context)
    except RecipeError:
        raise
    except Exception as exc:  # noqa: BLE001 - report against the recipe field, in one line
        raise RecipeError(source, [(path, f"{spec.type!r} could not be built: {type(exc).__name__}: {exc}")]) from exc


def build_run(recipe: Recipe, registry: Registry, *, base_dir: Path, source: str, with_evaluators: bool = True,
              plugins: Any = None, options: dict[str, Any] | None = None, initialise: bool = True) -> Built:
    """Build everything a recipe names. Weights are initialised from ``recipe.seed``. ``options``
    are the parsed options by recipe path (``"tasks.simclr"``), as recipe validation returned them;
    ``plugins`` (the plugin manager) adds plugin versions to the labels used in error messages.
    ``initialise``: load ``[backbones.<key>.init]`` weights (skipped when a checkpoint is loaded next)."""
    torch.manual_seed(recipe.seed)
    options = options or {}
    labels = {}
    for section, kind in (("data", "data_source"), ("augmentations", "augmentation"), ("backbones", "backbone"),
                          ("tasks", "pretext_task"), ("evaluators", "evaluator")):
        for n, s in getattr(recipe, section).items():
            labels[f"{section}.{n}"] = component_label(registry, kind, f"{section}.{n}", s, plugins)

    def ctx(name: str, **kw: Any) -> BuildContext:
        return BuildContext(name=name, seed=recipe.seed, base_dir=base_dir, _registry=registry,  # build() uses it
                            load_weights=initialise, **kw)

    data = {n: _build(registry, "data_source", f"data.{n}", s, ctx(n), source, options.get(f"data.{n}"))
            for n, s in recipe.data.items()}
    augs = {
        n: _build(registry, "augmentation", f"augmentations.{n}", s, ctx(n), source, options.get(f"augmentations.{n}"))
        for n, s in recipe.augmentations.items()
    }
    backbones: dict[str, Any] = {}
    initialised: dict[str, str] = {}
    for n, s in recipe.backbones.items():  # in recipe order: a backbone may build on an earlier one (a shared trunk)
        backbones[n] = _build(registry, "backbone", f"backbones.{n}", s, ctx(n, backbones=dict(backbones)), source,
                              options.get(f"backbones.{n}"))
        if s.init is not None and initialise:  # trained weights, before tasks size heads or copy the backbone
            initialised[n] = _init(backbones[n], n, s, base_dir, source)
    tasks = {}
    for n, s in recipe.tasks.items():
        context = ctx(n, backbone=select_backbones(backbones, s.backbone), data=data[s.data])
        task = _build(registry, "pretext_task", f"tasks.{n}", s, context, source, options.get(f"tasks.{n}"))
        if not isinstance(task, nn.Module):
            raise RecipeError(source, [(f"tasks.{n}.type", f"{s.type!r} did not return an nn.Module")])
        tasks[n] = task
    for n, b in backbones.items():
        if not isinstance(b, nn.Module) or not isinstance(getattr(b, "output_dim", None), int):
            why = "a backbone must be an nn.Module with an int output_dim"
            raise RecipeError(source, [(f"backbones.{n}.type", why)])
    model = SelfSupModel(backbones, tasks, {n: s.backbone for n, s in recipe.tasks.items()}, labels)

    evaluators = {}
    if with_evaluators:
        for n, s in recipe.evaluators.items():
            backbone = select_backbones(backbones, s.backbone or next(iter(backbones)))
            context = ctx(n, backbone=backbone, data=data[s.data])
            label = f"evaluators.{n}"
            evaluators[n] = _build(registry, "evaluator", label, s, context, source, options.get(label))
    return Built(data=data, augmentations=augs, model=model, evaluators=evaluators, labels=labels,
                 initialised=initialised)


def _init(backbone: Any, key: str, spec: Any, base_dir: Path, source: str) -> str:
    """Load ``[backbones.<key>.init]``; a problem is a recipe error on that field."""
    from selfsup.engine.init import load_init

    path = Path(spec.init.path)
    path = path if path.is_absolute() else base_dir / path
    try:
        return load_init(backbone, key, path, spec.init.backbone, spec.type).description
    except (ValueError, OSError) as exc:
        raise RecipeError(source, [(f"backbones.{key}.init", str(exc))]) from None
