"""Conformance checks of the data contract (:mod:`selfsup.contract`): the sample keys a component
declares in its ``register`` call against what it really yields, changes and reads.

Each class here is mixed into the matching suite of :mod:`selfsup.testing` (``DataSourceConformance``
inherits ``DataSourceKeys``, ...) and uses that suite's attributes (``data``, ``augment``, ...).
A component that declares nothing is skipped, with a message saying how to declare.
"""

from __future__ import annotations

from typing import Any

import pytest

from selfsup.contract import check_augmentation, check_sample, consumed_names
from selfsup.registry import DECLARATIONS_OF_KIND, Component


def _declared(comp: Component) -> None:
    if not comp.declared:
        wanted = " and ".join(f"{w}={{...}}" for w in DECLARATIONS_OF_KIND[comp.kind] if w != "feeds")
        pytest.skip(f"{comp.name!r} declares no sample keys: pass {wanted} to register (see selfsup.contract)")


def _fail(what: str, problems: list[str]) -> None:
    if problems:
        pytest.fail(f"{what} does not match its declared keys:\n  " + "\n  ".join(problems), pytrace=False)


def _keep(samples: list[dict[str, Any]], keys: set[str]) -> list[dict[str, Any]]:
    """The samples with every key not in ``keys`` removed."""
    return [{k: v for k, v in s.items() if k in keys} for s in samples]


class DataSourceKeys:
    """Samples hold exactly the declared ``produces`` keys (plus the core's ``index``), of the declared
    dtype and shape."""

    def test_samples_match_declared_keys(self) -> None:
        from selfsup.testing import _samples

        comp = self.component("data_source", self.data[0])
        _declared(comp)
        options = comp.parse_options(self.data[1])
        for i, sample in enumerate(_samples(self._source(), self.min_samples, [], self.seed)):
            problems = check_sample(comp.produces, options, sample, exhaustive=True)
            _fail(f"data source {comp.name!r}: sample {i}", problems)


class AugmentationKeys:
    """The input has the declared ``consumes`` keys; the output has the declared ``produces`` keys
    (dtype, shape, removals), and every other key is unchanged in dtype and shape."""

    def test_output_matches_declared_keys(self) -> None:
        comp = self.component("augmentation", self.augmentation[0])
        _declared(comp)
        options = comp.parse_options(self.augmentation[1])
        for seed in (0, 1):
            before, after = self._run(seed)
            _fail(f"augmentation {comp.name!r} (generator seed {seed})",
                  check_augmentation(comp.consumes, comp.produces, options, before, after))


class BackboneKeys:
    """``embed`` works on a batch of exactly the declared ``consumes`` keys (all others removed),
    which the suite's data gives with the declared dtype and shape."""

    def test_embed_reads_only_declared_keys(self) -> None:
        import torch
        from torch.utils.data import default_collate

        from selfsup.testing import _samples

        comp = self.component("backbone", self.backbone[0])
        _declared(comp)
        options = comp.parse_options(self.backbone[1])
        source = self.build("data_source", self.data)
        pipeline = [self.build("augmentation", a) for a in self.augment]
        samples = _samples(source, 2, pipeline, self.seed)
        for i, sample in enumerate(samples):
            _fail(f"backbone {comp.name!r}: the suite's sample {i}", check_sample(comp.consumes, options, sample))
        torch.manual_seed(self.seed)
        backbone = self.build("backbone", self.backbone)
        batch = default_collate(_keep(samples, consumed_names(comp.consumes, options)))
        out = backbone.embed(batch)
        assert out.shape == (2, backbone.output_dim), f"embed on the keys {sorted(batch)} gave {tuple(out.shape)}"


class TaskKeys:
    """The task's samples have its declared ``consumes`` keys, and it trains on a batch of exactly
    those keys (plus its backbone's, unless it declares ``feeds``)."""

    def test_runs_on_declared_keys_only(self) -> None:
        import torch
        from torch.utils.data import default_collate

        from selfsup.testing import _samples

        comp = self.component("pretext_task", self.task)
        _declared(comp)
        options = comp.parse_options(self.task_options)
        keys = consumed_names(comp.consumes, options)
        if comp.feeds is None:  # the backbone reads the samples too
            bb = self.component("backbone", self.backbone[0])
            _declared(bb)
            keys |= consumed_names(bb.consumes, bb.parse_options(self.backbone[1]))
        source = self.build("data_source", self.data)
        pipeline = [self.build("augmentation", a) for a in self.augment]
        samples = _samples(source, self.batch_sizes[-1], pipeline, self.seed)
        for i, sample in enumerate(samples):
            _fail(f"pretext task {comp.name!r}: the suite's sample {i}", check_sample(comp.consumes, options, sample))
        torch.manual_seed(self.seed)
        backbone = self.build("backbone", self.backbone)
        task = self.build("pretext_task", (self.task, self.task_options), backbone=backbone, data=source)
        collate = getattr(task, "collate", None) or getattr(source, "collate", None) or default_collate  # as the loop
        batch = collate(_keep(samples, keys))
        out = task(batch, backbone)
        assert torch.isfinite(out.loss), f"loss on the declared keys {sorted(keys)} is {out.loss.item()}"


class EvaluatorKeys:
    """The suite's data (and fit data) give the evaluator's declared ``consumes`` keys, with the
    declared dtype and shape."""

    def test_data_gives_declared_keys(self) -> None:
        from selfsup.testing import _samples

        comp = self.component("evaluator", self.evaluator)
        _declared(comp)
        options = comp.parse_options(self.evaluator_options)
        for role, spec in (("data", self.data), ("fit_data", self.fit_data)):
            if spec is None:
                continue
            for i, sample in enumerate(_samples(self.build("data_source", spec), 2, [], self.seed)):
                _fail(f"evaluator {comp.name!r}: {role} sample {i}", check_sample(comp.consumes, options, sample))
