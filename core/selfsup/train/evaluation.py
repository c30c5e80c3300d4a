"""Running evaluators on frozen backbones (during training, at the end, and by ``selfsup eval``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import default_collate

from selfsup.components import EvalContext
from selfsup.recipe import Recipe
from selfsup.train.build import Built, select_backbones
from selfsup.train.data import apply_pipeline, is_iterable_source, sample_generator, stream_id, to_device


def _samples(source: Any, pipeline: list[Any], seed: int, stream: int):
    if is_iterable_source(source):
        it = source.iterate(epoch=0, rank=0, world_size=1, seed=seed)
    else:
        it = (source[i] for i in range(len(source)))
    for i, sample in enumerate(it):
        yield apply_pipeline(sample, pipeline, sample_generator(seed, stream, 0, i)) if pipeline else sample


@torch.no_grad()
def extract_features(
    backbone: torch.nn.Module, source: Any, *, pipeline: list[Any], batch_size: int, device: torch.device, seed: int, stream: int = 0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``backbone.embed`` over a whole source in order: ``(features [N, D] float32 on CPU, labels [N] or None)``."""
    was_training = backbone.training
    backbone.eval()
    feats, labels, chunk = [], [], []
    collate = getattr(source, "collate", None) or default_collate  # e.g. text sources pad to the longest

    def flush() -> None:
        batch = collate(chunk)
        feats.append(backbone.embed(to_device(batch, device)).float().cpu())
        if "label" in batch:
            labels.append(torch.as_tensor(batch["label"]).long().cpu())
        chunk.clear()

    try:
        for sample in _samples(source, pipeline, seed, stream):
            chunk.append(sample)
            if len(chunk) == batch_size:
                flush()
        if chunk:
            flush()
    finally:
        backbone.train(was_training)
    if not feats:
        raise ValueError("cannot evaluate on an empty data source")
    return torch.cat(feats), (torch.cat(labels) if len(labels) == len(feats) else None)


def extract_inputs(source: Any, key: str, *, pipeline: list[Any], seed: int, stream: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The raw ``sample[key]`` of a whole source, flattened: ``([N, prod(shape)] float32, labels or None)``.
    The "raw pixels" (or raw features) baseline of kNN and probes."""
    rows, labels = [], []
    for sample in _samples(source, pipeline, seed, stream):
        if key not in sample:
            raise ValueError(f"samples have no {key!r} field (they have {', '.join(sorted(sample))})")
        rows.append(torch.as_tensor(sample[key]).float().flatten())
        if "label" in sample:
            labels.append(int(sample["label"]))
    if not rows:
        raise ValueError("cannot evaluate on an empty data source")
    return torch.stack(rows), (torch.tensor(labels) if len(labels) == len(rows) else None)


def run_evaluators(
    recipe: Recipe, built: Built, *, names: list[str], step: int, device: torch.device, run_dir: Path
) -> dict[str, float]:
    """Run the named evaluators; returns ``{"<evaluator>/<metric>": value}``."""
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
        )
        metrics = built.evaluators[name].evaluate(context)
        results.update({f"{name}/{k}": float(v) for k, v in metrics.items()})
    return results
