"""Turn a validated recipe into objects: data sources, augmentations, backbones, tasks, evaluators.

A factory that raises (unreadable file, incompatible backbone, ...) becomes a one-line
:class:`RecipeError` naming the recipe table it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfsup.components import BuildContext
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
        self, backbones: dict[str, nn.Module], tasks: dict[str, nn.Module], task_backbone: dict[str, str | dict[str, str]]
    ):
        super().__init__()
        self.backbones = nn.ModuleDict(backbones)
        self.tasks = nn.ModuleDict(tasks)
        self.task_backbone = dict(task_backbone)

    def backbone_of(self, task: str) -> Any:
        """The task's backbone, or ``{role: backbone}`` for a task with several."""
        return select_backbones(self.backbones, self.task_backbone[task])

    def forward(self, batches: dict[str, Any]) -> dict[str, tuple[torch.Tensor, dict[str, Any]]]:
        """``{task: batch}`` -> ``{task: (loss, metrics)}``: one forward for all tasks of a step."""
        out = {}
        for name, batch in batches.items():
            result = self.tasks[name](batch, self.backbone_of(name))
            out[name] = (result.loss, result.metrics)
        return out


@dataclass
class Built:
    data: dict[str, Any]
    augmentations: dict[str, Any]
    model: SelfSupModel
    evaluators: dict[str, Any] = field(default_factory=dict)

    def pipeline(self, names: list[str]) -> list[Any]:
        return [self.augmentations[n] for n in names]


def _build(registry: Registry, kind: Kind, path: str, spec: ComponentSpec, context: BuildContext, source: str) -> Any:
    component = registry.get(kind, spec.type)
    assert component is not None, "check_components() validated the names"
    try:
        options = component.options.model_validate(spec.options, context={"base_dir": context.base_dir})
        return component.factory(options, context)
    except RecipeError:
        raise
    except Exception as exc:  # noqa: BLE001 - report against the recipe field, in one line
        raise RecipeError(source, [(path, f"{spec.type!r} could not be built: {type(exc).__name__}: {exc}")]) from exc


def build_run(recipe: Recipe, registry: Registry, *, base_dir: Path, source: str, with_evaluators: bool = True) -> Built:
    """Build everything a recipe names. Weights are initialised from ``recipe.seed``."""
    torch.manual_seed(recipe.seed)

    def ctx(name: str, **kw: Any) -> BuildContext:
        return BuildContext(name=name, seed=recipe.seed, base_dir=base_dir, **kw)

    data = {n: _build(registry, "data_source", f"data.{n}", s, ctx(n), source) for n, s in recipe.data.items()}
    augs = {
        n: _build(registry, "augmentation", f"augmentations.{n}", s, ctx(n), source)
        for n, s in recipe.augmentations.items()
    }
    backbones: dict[str, Any] = {}
    for n, s in recipe.backbones.items():  # in recipe order: a backbone may build on an earlier one (a shared trunk)
        backbones[n] = _build(registry, "backbone", f"backbones.{n}", s, ctx(n, backbones=dict(backbones)), source)
    tasks = {}
    for n, s in recipe.tasks.items():
        task = _build(registry, "pretext_task", f"tasks.{n}", s, ctx(n, backbone=select_backbones(backbones, s.backbone), data=data[s.data]), source)
        if not isinstance(task, nn.Module):
            raise RecipeError(source, [(f"tasks.{n}.type", f"{s.type!r} did not return an nn.Module")])
        tasks[n] = task
    for n, b in backbones.items():
        if not isinstance(b, nn.Module) or not isinstance(getattr(b, "output_dim", None), int):
            raise RecipeError(source, [(f"backbones.{n}.type", "a backbone must be an nn.Module with an int output_dim")])
    model = SelfSupModel(backbones, tasks, {n: s.backbone for n, s in recipe.tasks.items()})

    evaluators = {}
    if with_evaluators:
        for n, s in recipe.evaluators.items():
            backbone = select_backbones(backbones, s.backbone or next(iter(backbones)))
            ev = _build(registry, "evaluator", f"evaluators.{n}", s, ctx(n, backbone=backbone, data=data[s.data]), source)
            if getattr(ev, "needs_fit_data", False) and s.fit_data is None:
                raise RecipeError(source, [(f"evaluators.{n}.fit_data", f"{s.type!r} needs fit_data (the set to fit on)")])
            evaluators[n] = ev
    return Built(data=data, augmentations=augs, model=model, evaluators=evaluators)
