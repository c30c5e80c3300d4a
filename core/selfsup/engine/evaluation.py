"""Running evaluators on frozen backbones (during training, at the end, and by ``selfsup eval``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from selfsup.components import EvalContext
from selfsup.engine.build import Built, select_backbones
from selfsup.engine.data import stream_id
from selfsup.engine.errors import component_error
from selfsup.lib.data import batches as lib_batches
from selfsup.lib.data import extract_features, ordered  # noqa: F401 - extract_features: re-exported for the core
from selfsup.recipe import Recipe


def extract_inputs(
    source: Any, key: str, *, pipeline: list[Any], seed: int, stream: int = 0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The raw ``sample[key]`` of a whole source, flattened: ``([N, prod(shape)] float32, labels or None)``.
    The "raw pixels" (or raw features) baseline of kNN and probes."""
    rows, labels = [], []
    for sample in ordered(source, seed=seed, pipeline=pipeline, stream=stream):
        if key not in sample:
            raise ValueError(f"samples have no {key!r} field (they have {', '.join(sorted(sample))})")
        rows.append(torch.as_tensor(sample[key]).float().flatten())
        if "label" in sample:
            labels.append(int(sample["label"]))
    if not rows:
        raise ValueError("cannot evaluate on an empty data source")
    return torch.stack(rows), (torch.tensor(labels) if len(labels) == len(rows) else None)


def run_evaluators(
    recipe: Recipe, built: Built, *, names: list[str], step: int, device: torch.device, run_dir: Path,
    labels: dict[str, str] | None = None,
) -> dict[str, float]:
    """Run the named evaluators; returns ``{"<evaluator>/<metric>": value}``. An exception inside an
    evaluator is re-raised as a :class:`ComponentError` naming it (``labels``: recipe path -> label)."""
    results: dict[str, float] = {}
    backbones = built.model.backbones
    for name in names:
        spec = recipe.evaluators[name]
        backbone = select_backbones(backbones, spec.backbone or next(iter(backbones.keys())))
        pipeline = built.pipeline(spec.augment)
        cache: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}

        def features(source: Any, backbone: Any = None, default=backbone, pipeline=pipeline, cache=cache, name=name):
            backbone = default if backbone is None else backbone
            if isinstance(backbone, dict):
                raise ValueError(f"evaluator {name!r} has several backbones: pass features(source, backbone=...)")
            key = (id(source), id(backbone))
            if key not in cache:
                cache[key] = extract_features(
                    backbone, source, pipeline=pipeline, batch_size=spec.batch_size, device=device,
                    seed=recipe.seed, stream=stream_id(f"eval:{name}"),
                )
            return cache[key]

        def inputs(source: Any, key: str, pipeline=pipeline, name=name):
            return extract_inputs(source, key, pipeline=pipeline, seed=recipe.seed, stream=stream_id(f"eval:{name}"))

        def batches(source: Any, pipeline=pipeline, name=name, size=spec.batch_size):
            return lib_batches(source, batch_size=size, pipeline=pipeline, seed=recipe.seed,
                               stream=stream_id(f"eval:{name}"))

        context = EvalContext(
            name=name,
            step=step,
            seed=recipe.seed,
            device=device,
            backbone=backbone,
            data=built.data[spec.data],
            fit_data=built.data[spec.fit_data] if spec.fit_data else None,
            run_dir=Path(run_dir),
            batch_size=spec.batch_size,
            features=features,
            inputs=inputs,
            tasks=built.model.tasks,
            batches=batches,
        )
        try:
            metrics = built.evaluators[name].evaluate(context)
        except Exception as exc:  # noqa: BLE001 - re-raised naming the evaluator and its plugin
            label = (labels or built.labels).get(f"evaluators.{name}", f"evaluators.{name}")
            raise component_error(label, exc, "evaluate") from exc
        results.update({f"{name}/{k}": float(v) for k, v in metrics.items()})
    return results
