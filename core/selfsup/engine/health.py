"""Training-health checks (``[train.health]``, docs/health.md): is a task's representation collapsing?

Each task gets a fixed probe, built once at its first check: ``samples`` samples of its training
data (evenly spaced over a map-style source, the first ones of a streaming source), passed twice
through the task's augmentation pipeline with fixed seeds (two views) and collated as its batches
are. A check (rank 0, eval mode, no gradients, the RNG states untouched) embeds both views with
the task's backbone ``embed`` and reports ``health/<task>/<metric>`` (:mod:`selfsup.lib.health`):
``std``, ``rankme``, ``uniformity`` (first view), ``alignment`` (between the views, when the
pipeline changes what ``embed`` reads), whatever the task's optional ``health(batch, backbone)``
adds (``code_perplexity``, ``cluster_entropy``, ...), and ``collapsed`` (1.0 when a metric crossed
its threshold from step ``grace_steps`` on; the first time per task a :class:`CollapseWarning` says
which and what to try).
A task with several backbones reports ``health/<task>/<role>/<metric>`` for each; tasks whose
backbones have no ``embed`` only report what their ``health`` gives, or nothing.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import torch

from selfsup.engine.data import TaskStream, apply_pipeline, is_iterable_source, stream_id, to_device
from selfsup.lib.health import (
    CollapseWarning,
    HealthThresholds,
    alignment,
    collapse_warnings,
    embedding_std,
    rankme,
    uniformity,
)
from selfsup.lib.modules import frozen
from selfsup.lib.seeding import sample_generator

ADVICE = {
    "std": "check the augmentations (two views must differ yet share content), lower the temperature of a "
           "contrastive loss, lower train.lr or add train.warmup_steps",
    "code_perplexity": "raise the codebook diversity weight or the Gumbel temperature, or lower train.lr",
    "cluster_entropy": "sample balanced over clusters, freeze the prototypes for longer, or lower train.lr",
}
ADVICE["rankme"] = ADVICE["std"]


class HealthCheck:
    """The health checks of a run's tasks (rank 0 only): ``check(step)`` -> ``{key: value}``."""

    def __init__(self, model: Any, streams: dict[str, TaskStream], device: torch.device, seed: int, spec: Any):
        self.model, self.streams, self.device, self.seed = model, streams, device, seed
        self.every, self.samples, self.grace_steps = spec.every, spec.samples, spec.grace_steps
        self.thresholds: HealthThresholds = spec.thresholds.thresholds()
        self.probes: dict[str, list[tuple[Any, Any]]] = {}  # task -> [(view 1, view 2 or None)], on the CPU
        self.warned: set[str] = set()  # tasks whose collapse was reported (once per task)
        self.failed: set[str] = set()  # tasks whose check raised (reported once, then skipped)
        self.one_view: set[tuple[str, str]] = set()  # (task, role) whose embed reads what the pipeline keeps
        self._last: tuple[Any, dict[str, float]] | None = None

    def due(self, step: int, total_steps: int) -> bool:
        """Whether the train record of ``step`` carries a check: every ``every`` steps and at the last."""
        return step == total_steps or (self.every > 0 and step % self.every == 0)

    def check(self, step: int, weights: Any = None) -> dict[str, float]:
        """Every task's metrics at ``step``; computed once per ``(step, weights)`` (``weights``: which
        weights are loaded, e.g. the best checkpoint's step), so a train and an eval record of the
        same step share one check."""
        if self._last is not None and self._last[0] == (step, weights):
            return dict(self._last[1])
        out: dict[str, float] = {}
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the run's random streams are left as they were
            for name in self.streams:
                if name not in self.failed:
                    out.update(self._task(name, step))
        self._last = ((step, weights), out)
        return dict(out)

    # ------------------------------------------------------------------ one task

    def _task(self, name: str, step: int) -> dict[str, float]:
        task, backbone = self.model.tasks[name], self.model.backbone_of(name)
        roles = backbone if isinstance(backbone, dict) else {"": backbone}
        embedders = {r: b for r, b in roles.items() if callable(getattr(b, "embed", None))}
        own = getattr(task, "health", None)
        if not embedders and not callable(own):
            return {}
        try:
            probe = self._probe(name)
            with frozen(task, *roles.values()):
                inputs = getattr(task, "health_inputs", None)  # the batch as embed reads it (CLM: T + 1 -> T)
                if callable(inputs):
                    probe = [(inputs(a), None if b is None else inputs(b)) for a, b in probe]
                metrics, problems = self._measure(name, probe, embedders)
                if callable(own):
                    extra = _weighted_mean([(own(to_device(a, self.device), backbone), _size(a)) for a, _b in probe])
                    metrics.update(extra)
                    problems += collapse_warnings(extra, 0, self.thresholds)
        except Exception as exc:  # noqa: BLE001 - a diagnostic never stops training: say so once, skip the task
            self.failed.add(name)
            warnings.warn(f"training health: the check of task {name!r} failed at step {step} and is skipped from "
                          f"now on: {type(exc).__name__}: {exc}", stacklevel=3)
            return {}
        if step < self.grace_steps:  # random-init embeddings can look degenerate: not a collapse yet
            problems = []
        metrics["collapsed"] = 1.0 if problems else 0.0
        if problems and name not in self.warned:
            self.warned.add(name)
            tips = dict.fromkeys(ADVICE[p.split(" = ")[0].split("/")[-1]] for p in problems)  # "audio/std = ..."
            warnings.warn(f"training health: task {name!r} looks collapsed at step {step}: {'; '.join(problems)}. "
                          f"Try: {'; or '.join(tips)}", CollapseWarning, stacklevel=3)
        return {f"health/{name}/{k}": float(v) for k, v in metrics.items()}

    def _measure(self, name: str, probe: list[tuple[Any, Any]],
                 embedders: dict[str, Any]) -> tuple[dict[str, float], list[str]]:
        """std, rankme, uniformity and alignment of each backbone's embeddings of the probe."""
        metrics: dict[str, float] = {}
        problems: list[str] = []
        for role, backbone in embedders.items():
            z1 = torch.cat([backbone.embed(to_device(a, self.device)).float() for a, _b in probe])  # [N, D]
            if z1.shape[0] < 2:
                continue
            values = {"std": embedding_std(z1), "rankme": rankme(z1), "uniformity": uniformity(z1)}
            if all(b is not None for _a, b in probe) and (name, role) not in self.one_view:
                z2 = torch.cat([backbone.embed(to_device(b, self.device)).float() for _a, b in probe])  # [N, D]
                if torch.equal(z1, z2):  # the pipeline does not change what embed reads (it adds "views"):
                    self.one_view.add((name, role))  # embed one view from now on
                else:
                    values["alignment"] = alignment(z1, z2)
            values = {k: float(v) for k, v in values.items()}
            prefix = f"{role}/" if role else ""
            problems += [prefix + p for p in collapse_warnings(values, min(z1.shape), self.thresholds)]
            metrics.update({prefix + k: v for k, v in values.items()})
        return metrics, problems

    def _probe(self, name: str) -> list[tuple[Any, Any]]:
        """The task's probe (built at its first check): ``[(view 1 batch, view 2 batch)]`` on the CPU;
        ``None`` for view 2 when it equals view 1 (no random augmentation), so it is embedded once."""
        if name in self.probes:
            return self.probes[name]
        stream = self.streams[name]
        source, pipeline = stream.source, stream.pipeline
        labels = list(stream.labels.get("augment", []))
        health_stream = stream_id(f"health:{name}")
        samples = probe_samples(source, self.samples, self.seed)
        views = []
        for view in (0, 1):
            views.append([apply_pipeline(s, pipeline, sample_generator(self.seed, health_stream, view, i), labels)
                          if pipeline else s for i, s in samples])
        size = max(1, stream.batch_size)
        pairs = []
        for start in range(0, len(samples), size):
            a, b = stream.collate(views[0][start:start + size]), stream.collate(views[1][start:start + size])
            pairs.append((a, None if _same(a, b) else b))  # None: one view (no or no random augmentation)
        self.probes[name] = pairs
        return pairs


def probe_samples(source: Any, n: int, seed: int) -> list[tuple[int, dict[str, Any]]]:
    """``n`` samples with their positions: evenly spaced over a map-style source (all of a smaller
    one; each carries ``"index"`` as in training), the first ``n`` of a streaming one (epoch 0)."""
    if is_iterable_source(source):
        return list(enumerate(itertools.islice(source.iterate(epoch=0, rank=0, world_size=1, seed=seed), n)))
    size = len(source)
    indices = [i * size // n for i in range(n)] if size > n else list(range(size))
    out = []
    for i in indices:
        sample = source[i]
        out.append((i, sample if "index" in sample else {**sample, "index": i}))
    return out


def _same(a: Any, b: Any) -> bool:
    """Whether two collated batches hold the same values (nested dicts, lists, tensors)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return type(a) is type(b) and bool(a == b)
    except (TypeError, ValueError):  # e.g. numpy arrays
        return False


def _size(batch: Any) -> int:
    """The number of samples of a collated batch (its first tensor's first dimension)."""
    for value in (batch.values() if isinstance(batch, dict) else [batch]):
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
    return 1


def _weighted_mean(parts: list[tuple[dict[str, Any], int]]) -> dict[str, float]:
    """The task's ``health`` values of each probe batch, averaged weighted by the batches' sizes."""
    sums: dict[str, float] = {}
    weights: dict[str, int] = {}
    for values, size in parts:
        for key, value in (values or {}).items():
            sums[key] = sums.get(key, 0.0) + float(value) * size
            weights[key] = weights.get(key, 0) + size
    return {k: sums[k] / weights[k] for k in sums}
