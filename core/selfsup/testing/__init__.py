"""Conformance suites any plugin runs against its own components.

Subclass a suite in a test module, name the components and their options, and pytest collects
the inherited tests::

    from selfsup.testing import TaskConformance

    class TestMyTask(TaskConformance):
        task = "my_task"
        task_options = {"temperature": 0.2}
        data = ("my_source", {"n": 64})
        augment = [("my_views", {})]
        backbone = ("mlp", {"in_dim": 16})
        bad_options = [{"temperature": -1.0}]

Components are looked up among installed plugins (entry points); set ``plugins = [module, ...]``
to register plugin modules directly instead (the core's built-ins are always there).

Every suite also checks the component's declared sample keys (:mod:`selfsup.contract`) against
what it really does (:mod:`selfsup.testing.keys`): a data source's samples and an augmentation's
output hold the declared keys, dtypes and shapes; a task and a backbone work on a batch of exactly
the keys they declare to read. Undeclared components skip these checks.

Every suite also checks that each option of the component changes what it does, and a task suite
that the task ignores ``"label"`` (:mod:`selfsup.testing.effects`). Set ``option_variants =
{"field": value}`` to choose the changed value of a field, and ``inert_options = {"field": "reason"}``
for a field that legitimately changes nothing for the suite's inputs.
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Iterator

import pytest

from selfsup.components import BuildContext
from selfsup.plugins import CORE_PLUGIN, PluginManager, get_plugin_manager
from selfsup.registry import Component, Kind, Registry
from selfsup.testing.chromium import RenderedPage, render_in_chromium
from selfsup.testing.effects import (
    AugmentationEffects,
    BackboneEffects,
    DataSourceEffects,
    EvaluatorEffects,
    TaskEffects,
)
from selfsup.testing.hub import hub_cache_repo, torch_hub_file
from selfsup.testing.keys import AugmentationKeys, BackboneKeys, DataSourceKeys, EvaluatorKeys, TaskKeys

Spec = tuple[str, dict[str, Any]]

__all__ = [
    "AugmentationConformance",
    "BackboneConformance",
    "DataSourceConformance",
    "EvaluatorConformance",
    "TaskConformance",
    "RenderedPage",
    "registry_with",
    "render_in_chromium",
    "serving_client",
    "train_against_random_init",
    "hub_cache_repo",
    "torch_hub_file",
]


def registry_with(plugins: list[Any] | None) -> Registry:
    """The registry of installed plugins, or of the core built-ins plus ``plugins`` only."""
    if not plugins:
        return get_plugin_manager().registry
    import selfsup.builtins

    pm = PluginManager(load_entry_points=False)
    pm.register(selfsup.builtins, CORE_PLUGIN, distribution="selfsup")
    for i, plugin in enumerate(plugins):
        pm.register(plugin, getattr(plugin, "__name__", f"plugin{i}"))
    if pm.errors:
        raise RuntimeError(f"plugins failed to load: {[e.message for e in pm.errors]}")
    return pm.registry


@contextlib.contextmanager
def serving_client(path: Any, timeout: float = 120.0, **options: Any) -> Iterator[Any]:
    """A ``selfsup serve`` application for the run or export at ``path`` (``options``: the fields
    of :class:`selfsup.serving.ServeConfig`, e.g. ``max_batch=8``), in this process, behind a
    ``fastapi.testclient.TestClient`` that is returned once ``/readyz`` says the model is loaded.
    Needs the ``serve`` extra (fastapi, uvicorn, prometheus-client) and httpx."""
    import time
    from pathlib import Path

    from fastapi.testclient import TestClient

    from selfsup.serving.app import create_app
    from selfsup.serving.config import ServeConfig

    with TestClient(create_app(ServeConfig(path=Path(path), **options))) as client:
        deadline = time.time() + timeout
        while client.get("/readyz").status_code != 200:
            if time.time() > deadline:
                raise AssertionError(f"selfsup serve {path} did not become ready: {client.get('/readyz').json()}")
            time.sleep(0.05)
        yield client


def train_against_random_init(
    recipe: str, run_dir: Any, overrides: list[str] | tuple[str, ...] = (), *, evaluators: list[str] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Train ``recipe`` (a shipped name or a path) with ``overrides`` into ``run_dir`` and return
    ``(final evaluation, evaluation of the same model at its random initialisation)``: the
    comparison every end-to-end "it learned" test makes. ``evaluators`` limits both evaluations
    (default: all of the recipe's)."""
    from pathlib import Path

    import torch

    from selfsup.engine.build import build_run
    from selfsup.engine.evaluation import run_evaluators
    from selfsup.engine.loop import train
    from selfsup.recipe import load_recipe

    pm = get_plugin_manager()
    run_dir = Path(run_dir)
    keep = list(evaluators or [])
    loaded = load_recipe(recipe, pm.registry, [f'output_dir="{run_dir}"', "train.tensorboard=false", *overrides])
    if keep:  # drop the other evaluators from the run itself
        drop = [f"evaluators.{name}=" for name in loaded.recipe.evaluators if name not in keep]
        loaded = load_recipe(recipe, pm.registry,
                             [f'output_dir="{run_dir}"', "train.tensorboard=false", *overrides, *drop])
    names = list(loaded.recipe.evaluators)
    untrained = build_run(loaded.recipe, pm.registry, base_dir=loaded.base_dir, source=loaded.source)
    run_dir.mkdir(parents=True, exist_ok=True)
    random_init = run_evaluators(loaded.recipe, untrained, names=names, step=0, device=torch.device("cpu"),
                                 run_dir=run_dir)
    result = train(loaded, pm, progress=False)
    if result.status != "completed":
        raise AssertionError(f"{recipe}: training ended {result.status}")
    return result.evaluation, random_init


class _Suite:
    plugins: ClassVar[list[Any] | None] = None
    seed: ClassVar[int] = 0
    #: ``{option: value}``: the changed value the options check uses for an option (else derived).
    option_variants: ClassVar[dict[str, Any]] = {}
    #: ``{option: reason}``: options that change nothing for the suite's inputs (not varied).
    inert_options: ClassVar[dict[str, str]] = {}

    @classmethod
    def registry(cls) -> Registry:
        return registry_with(cls.plugins)

    @classmethod
    def component(cls, kind: Kind, name: str) -> Component:
        comp = cls.registry().get(kind, name)
        if comp is None:
            pytest.fail(f"no {kind} named {name!r} is registered; installed: {cls.registry().names(kind)}")
        return comp

    @classmethod
    def build(cls, kind: Kind, spec: Spec, **context: Any) -> Any:
        name, options = spec
        registry = cls.registry()
        context = BuildContext(name=name, seed=cls.seed, _registry=registry, **context)
        return cls.component(kind, name).build(options, context)

    @staticmethod
    def _check_bad_options(comp: Component, bad: list[dict[str, Any]]) -> None:
        from pydantic import ValidationError

        with pytest.raises(ValidationError):
            comp.options.model_validate({"__not_an_option__": 1})
        for options in bad:
            with pytest.raises(ValidationError):
                comp.options.model_validate(options)


def _samples(source: Any, n: int, pipeline: list[Any], seed: int) -> list[dict[str, Any]]:
    from itertools import islice

    from selfsup.lib.data import is_iterable_source, ordered

    streaming = is_iterable_source(source)
    if not streaming and len(source) < n:
        pytest.fail(f"the data source has {len(source)} samples; the suite needs {n}")
    samples = list(islice(ordered(source, seed=seed, index=not streaming, pipeline=pipeline), n))
    if len(samples) < n:
        pytest.fail(f"the data source yielded {len(samples)} samples; the suite needs {n}")
    return samples


def _assert_same(a: Any, b: Any, where: str = "sample", close: bool = False) -> None:
    """``a`` equals ``b`` (nested dicts, lists, tensors); ``close``: float tensors up to rounding."""
    import torch

    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape, f"{where} differs in shape"
        if close and a.is_floating_point():
            torch.testing.assert_close(a, b, msg=lambda m: f"{where} differs: {m}")
        else:
            assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where} keys differ"
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]", close)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where} lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]", close)
    else:
        assert a == b, f"{where} differs: {a!r} != {b!r}"


class DataSourceConformance(_Suite, DataSourceKeys, DataSourceEffects):
    """``data = (name, options)``; ``bad_options``; ``min_samples`` checked."""

    data: ClassVar[Spec]
    bad_options: ClassVar[list[dict[str, Any]]] = []
    min_samples: ClassVar[int] = 2

    def _source(self) -> Any:
        return self.build("data_source", self.data)

    def test_registered_with_summary(self) -> None:
        assert self.component("data_source", self.data[0]).summary, "register(..., summary=...) is empty"

    def test_yields_sample_dicts(self) -> None:
        samples = _samples(self._source(), self.min_samples, [], self.seed)
        for s in samples:
            assert isinstance(s, dict) and s, "a sample must be a non-empty dict"
            if "label" in s:
                assert int(s["label"]) == s["label"], "labels must be integers"

    def test_deterministic(self) -> None:
        a = _samples(self._source(), self.min_samples, [], self.seed)
        b = _samples(self._source(), self.min_samples, [], self.seed)
        _assert_same(a, b, "data")

    def test_options_reject_bad_values(self) -> None:
        self._check_bad_options(self.component("data_source", self.data[0]), self.bad_options)


class AugmentationConformance(_Suite, AugmentationKeys, AugmentationEffects):
    """``augmentation = (name, options)``; ``data`` gives input samples; ``random`` says whether
    different generator seeds must give different outputs."""

    augmentation: ClassVar[Spec]
    data: ClassVar[Spec]
    bad_options: ClassVar[list[dict[str, Any]]] = []
    random: ClassVar[bool] = True

    def _run(self, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
        import torch

        source = self.build("data_source", self.data)
        sample = _samples(source, 1, [], self.seed)[0]
        aug = self.build("augmentation", self.augmentation)
        return sample, aug(dict(sample), torch.Generator().manual_seed(seed))

    def test_returns_sample_dict(self) -> None:
        _, out = self._run(0)
        assert isinstance(out, dict) and out

    def test_deterministic_under_generator(self) -> None:
        _assert_same(self._run(1)[1], self._run(1)[1], "augmented sample")

    def test_depends_on_generator(self) -> None:
        if not self.random:
            pytest.skip("declared deterministic (random = False)")
        with pytest.raises(AssertionError):
            _assert_same(self._run(1)[1], self._run(2)[1])

    def test_does_not_modify_input(self) -> None:
        import copy

        import torch

        source = self.build("data_source", self.data)
        sample = _samples(source, 1, [], self.seed)[0]
        before = copy.deepcopy(sample)
        self.build("augmentation", self.augmentation)(sample, torch.Generator().manual_seed(0))
        _assert_same(before, sample, "input sample after augmentation")

    def test_batch_equals_per_sample(self) -> None:
        """An augmentation with ``batch`` (API 1.8) returns what it returns sample by sample, and
        leaves each generator as the per-sample calls leave it."""
        import torch

        aug = self.build("augmentation", self.augmentation)
        if not callable(getattr(aug, "batch", None)):
            pytest.skip("no batch(): the core calls it sample by sample")
        samples = _samples(self.build("data_source", self.data), 4, [], self.seed)
        seeds = [11, 12, 13, 11]  # a repeated seed: two samples may share a generator state
        one = [torch.Generator().manual_seed(s) for s in seeds]
        many = [torch.Generator().manual_seed(s) for s in seeds]
        expected = [aug(dict(sample), g) for sample, g in zip(samples, one)]
        got = aug.batch([dict(sample) for sample in samples], many)
        assert len(got) == len(samples), "batch() must return one sample per input"
        _assert_same(expected, got, "batch() output", close=True)
        after = [torch.rand(2, generator=g) for g in one], [torch.rand(2, generator=g) for g in many]
        _assert_same(*after, "the generators after batch()")

    def test_options_reject_bad_values(self) -> None:
        self._check_bad_options(self.component("augmentation", self.augmentation[0]), self.bad_options)


class BackboneConformance(_Suite, BackboneKeys, BackboneEffects):
    """``backbone = (name, options)``; ``data`` and ``augment`` give inputs for ``embed``."""

    backbone: ClassVar[Spec]
    data: ClassVar[Spec]
    augment: ClassVar[list[Spec]] = []
    bad_options: ClassVar[list[dict[str, Any]]] = []

    def _batch(self, n: int) -> dict[str, Any]:
        from torch.utils.data import default_collate

        source = self.build("data_source", self.data)
        pipeline = [self.build("augmentation", a) for a in self.augment]
        return default_collate(_samples(source, n, pipeline, self.seed))

    def test_embed_shape_and_gradients(self) -> None:
        import torch

        torch.manual_seed(self.seed)
        backbone = self.build("backbone", self.backbone)
        assert isinstance(backbone, torch.nn.Module)
        assert isinstance(backbone.output_dim, int) and backbone.output_dim > 0
        for n in (1, 2):
            out = backbone.embed(self._batch(n))
            assert out.shape == (n, backbone.output_dim), f"embed gave {tuple(out.shape)}"
            assert torch.isfinite(out).all()
        out.float().pow(2).mean().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.parameters())

    def test_options_reject_bad_values(self) -> None:
        self._check_bad_options(self.component("backbone", self.backbone[0]), self.bad_options)


class TaskConformance(_Suite, TaskKeys, TaskEffects):
    """``task``, ``task_options``, ``data``, ``augment``, ``backbone``, ``bad_options``;
    ``batch_sizes`` (default 1 and 2) are the batch sizes that must work."""

    task: ClassVar[str]
    task_options: ClassVar[dict[str, Any]] = {}
    data: ClassVar[Spec]
    augment: ClassVar[list[Spec]] = []
    backbone: ClassVar[Spec]
    bad_options: ClassVar[list[dict[str, Any]]] = []
    batch_sizes: ClassVar[tuple[int, ...]] = (1, 2)

    def _prepare(self, batch_size: int, seed: int = 0, *, options: dict[str, Any] | None = None,
                 edit: Any = None, batches: int = 1) -> tuple[list[Any], Any, Any]:
        """``([batch, ...], backbone, task)``: the task built with ``options`` (default ``task_options``)
        on a backbone initialised from ``seed``, and ``batches`` batches of ``batch_size`` consecutive
        samples (the first one repeated when the data has too few); ``edit(samples)`` changes each
        batch's samples before they are collated."""
        from itertools import islice

        import torch
        from torch.utils.data import default_collate

        from selfsup.lib.data import is_iterable_source, ordered

        source = self.build("data_source", self.data)
        pipeline = [self.build("augmentation", a) for a in self.augment]
        torch.manual_seed(seed)
        backbone = self.build("backbone", self.backbone)
        spec = (self.task, self.task_options if options is None else options)
        task = self.build("pretext_task", spec, backbone=backbone, data=source)
        n = batch_size * batches
        if is_iterable_source(source):  # as many as it has, at least one batch
            samples = list(islice(ordered(source, seed=self.seed, pipeline=pipeline), n))
            samples = samples if len(samples) >= batch_size else _samples(source, batch_size, pipeline, self.seed)
        else:
            samples = _samples(source, n if len(source) >= n else batch_size, pipeline, self.seed)
        if len(samples) < n:  # too few for distinct batches: repeat the first
            samples = samples[:batch_size] * batches
        groups = [samples[i * batch_size:(i + 1) * batch_size] for i in range(batches)]
        collate = getattr(task, "collate", None) or getattr(source, "collate", None) or default_collate  # as the loop
        return [collate(edit(group) if edit is not None else group) for group in groups], backbone, task

    def _run(self, batch_size: int, seed: int = 0, *, options: dict[str, Any] | None = None,
             edit: Any = None) -> tuple[Any, Any, Any]:
        """One forward pass (see :meth:`_prepare`, global seed ``seed + 1``): ``(output, backbone, task)``."""
        import torch

        batches, backbone, task = self._prepare(batch_size, seed, options=options, edit=edit)
        torch.manual_seed(seed + 1)
        out = task(batches[0], backbone)
        return out, backbone, task

    def test_registered_with_summary(self) -> None:
        assert self.component("pretext_task", self.task).summary, "register(..., summary=...) is empty"

    def test_is_module(self) -> None:
        import torch

        _, _, task = self._run(self.batch_sizes[-1])
        assert isinstance(task, torch.nn.Module), "a pretext task must be an nn.Module"

    @pytest.mark.parametrize("index", [0, 1])
    def test_finite_scalar_loss_with_metrics(self, index: int) -> None:
        import torch

        if index >= len(self.batch_sizes):
            pytest.skip("fewer batch sizes declared")
        out, _, _ = self._run(self.batch_sizes[index])
        assert isinstance(out.loss, torch.Tensor) and out.loss.dim() == 0, "loss must be a 0-dim tensor"
        assert torch.isfinite(out.loss), f"loss is {out.loss.item()}"
        assert out.loss.requires_grad, "loss must carry gradients"
        for key, value in out.metrics.items():
            assert isinstance(key, str)
            assert float(value) == float(value), f"metric {key!r} is NaN"

    def test_gradients_reach_backbone(self) -> None:
        out, backbone, _ = self._run(self.batch_sizes[-1])
        out.loss.backward()
        grads = [p.grad for p in backbone.parameters() if p.requires_grad]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), "no gradient reached the backbone"

    def test_deterministic_under_seed(self) -> None:
        a, _, _ = self._run(self.batch_sizes[-1], seed=3)
        b, _, _ = self._run(self.batch_sizes[-1], seed=3)
        assert a.loss.item() == b.loss.item(), "same seed, different loss"

    def test_options_reject_bad_values(self) -> None:
        self._check_bad_options(self.component("pretext_task", self.task), self.bad_options)


class EvaluatorConformance(_Suite, EvaluatorKeys, EvaluatorEffects):
    """``evaluator``, ``evaluator_options``, ``data`` (held out), ``fit_data``, ``backbone``."""

    evaluator: ClassVar[str]
    evaluator_options: ClassVar[dict[str, Any]] = {}
    data: ClassVar[Spec]
    fit_data: ClassVar[Spec | None] = None
    backbone: ClassVar[Spec]
    bad_options: ClassVar[list[dict[str, Any]]] = []

    def _evaluate(self, options: dict[str, Any], run_dir: Any) -> dict[str, Any]:
        """The evaluator built with ``options`` run once on a backbone at its (seeded) random init."""
        import torch

        from selfsup.components import EvalContext
        from selfsup.engine.evaluation import extract_inputs
        from selfsup.lib.data import batches, extract_features

        torch.manual_seed(self.seed)
        backbone = self.build("backbone", self.backbone)
        data = self.build("data_source", self.data)
        fit = self.build("data_source", self.fit_data) if self.fit_data else None
        ev = self.build("evaluator", (self.evaluator, options), backbone=backbone, data=data)

        def features(source: Any) -> Any:
            return extract_features(backbone, source, pipeline=[], batch_size=64, device=torch.device("cpu"),
                                    seed=self.seed)

        context = EvalContext(
            name=self.evaluator, step=0, seed=self.seed, device=torch.device("cpu"), backbone=backbone,
            data=data, fit_data=fit, run_dir=run_dir, batch_size=64, features=features,
            inputs=lambda source, key: extract_inputs(source, key, pipeline=[], seed=self.seed),
            batches=lambda source: batches(source, batch_size=64, seed=self.seed),
        )
        return ev.evaluate(context)

    def test_returns_finite_named_floats(self, tmp_path: Any) -> None:
        metrics = self._evaluate(self.evaluator_options, tmp_path)
        assert isinstance(metrics, dict) and metrics
        for key, value in metrics.items():
            assert isinstance(key, str) and isinstance(float(value), float) and float(value) == float(value)

    def test_options_reject_bad_values(self) -> None:
        self._check_bad_options(self.component("evaluator", self.evaluator), self.bad_options)
