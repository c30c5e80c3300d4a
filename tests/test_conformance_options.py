"""The conformance suites' options and labels checks (selfsup.testing.effects): a component whose
option changes nothing fails unless the option is declared inert with a reason, a task that
hard-codes its options fails, a task that reads labels fails, and changed values are derived from
each field's type and constraints."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any, Literal

import pytest
import torch
from pydantic import Field

import selfsup
import selfsup_toy
from selfsup.components import TaskOutput
from selfsup.options import ExistingFile, Options
from selfsup.testing import DataSourceConformance, TaskConformance
from selfsup.testing.effects import NoVariant, changed_value, same

BLOBS = ("blobs", {"n": 64, "dim": 8, "classes": 4})
MLP = ("mlp", {"in_dim": 8, "hidden_dims": [16], "out_dim": 8})


class ProbeOptions(Options):
    temperature: float = Field(0.5, gt=0)
    scale: float = Field(1.0, gt=0)


class ProbeTask(torch.nn.Module):
    """A cosine-similarity loss between a point and its noisy copy. ``mode`` says what it gets wrong:
    ``"honest"`` nothing, ``"hard_coded"`` ignores its options (uses the defaults), ``"labels"`` reads
    the batch's labels, ``"labels_if_present"`` reads them when the batch has them."""

    def __init__(self, options: ProbeOptions, mode: str):
        super().__init__()
        self.mode = mode
        self.temperature, self.scale = (0.5, 1.0) if mode == "hard_coded" else (options.temperature, options.scale)
        self.head = torch.nn.Linear(8, 4)

    def forward(self, batch: dict[str, Any], backbone: torch.nn.Module) -> TaskOutput:
        x = batch["input"]
        z1 = torch.nn.functional.normalize(self.head(backbone(x)), dim=1)
        z2 = torch.nn.functional.normalize(self.head(backbone(x + 0.1 * torch.randn_like(x))), dim=1)
        loss = self.scale * (1 - (z1 * z2).sum(1) / self.temperature).mean()
        if self.mode == "labels":
            loss = loss + 0.01 * batch["label"].float().mean()
        if self.mode == "labels_if_present" and "label" in batch:
            loss = loss + 0.01 * batch["label"].float().mean()
        return TaskOutput(loss=loss, metrics={})


def _plugin(mode: str) -> types.ModuleType:
    module = types.ModuleType(f"probe_{mode}")

    @selfsup.hookimpl
    def register_pretext_tasks(register):
        register("probe_task", lambda options, context: ProbeTask(options, mode), options=ProbeOptions,
                 modality="vector", summary="A probe of the conformance checks.", consumes={"input": "float32[D]"})

    module.register_pretext_tasks = register_pretext_tasks
    return module


def _suite(mode: str, **attributes: Any) -> TaskConformance:
    namespace = {"plugins": [selfsup_toy, _plugin(mode)], "task": "probe_task", "task_options": {"temperature": 0.5},
                 "data": BLOBS, "backbone": MLP, **attributes}
    return type(f"Probe{mode.title()}", (TaskConformance,), namespace)()


def test_a_task_that_uses_its_options_passes_both_checks():
    suite = _suite("honest")
    suite.test_every_option_changes_loss_or_gradients()
    suite.test_ignores_labels()


def test_a_task_that_hard_codes_its_options_fails():
    with pytest.raises(pytest.fail.Exception) as failed:
        _suite("hard_coded").test_every_option_changes_loss_or_gradients()
    message = str(failed.value)
    assert "pretext task 'probe_task': options that change nothing" in message
    assert ("temperature: 0.5 -> 0.75 leaves the losses, metrics, gradients, buffers and learning-rate scales "
            "unchanged") in message
    assert "scale: 1.0 -> 1.5 leaves" in message


def test_inert_options_need_a_reason_and_real_names():
    _suite("hard_coded", inert_options={"temperature": "fixed on purpose", "scale": "fixed too"}) \
        .test_every_option_changes_loss_or_gradients()
    for attributes, expected in [
        ({"inert_options": {"temperature": " ", "scale": "x"}}, "inert_options['temperature'] needs a reason"),
        ({"inert_options": {"temprature": "typo"}}, "inert_options names 'temprature', which is not an option"),
        ({"option_variants": {"sale": 2.0}}, "option_variants names 'sale', which is not an option"),
        ({"option_variants": {"scale": 2.0}, "inert_options": {"scale": "x"}}, "'scale' is in both"),
    ]:
        with pytest.raises(pytest.fail.Exception, match=expected.replace("[", r"\[").replace("(", r"\(")):
            _suite("honest", **attributes).test_every_option_changes_loss_or_gradients()


def test_a_variant_replaces_the_derived_value():
    with pytest.raises(pytest.fail.Exception, match=r"temperature: 0.5 -> 0.5 leaves"):
        _suite("honest", option_variants={"temperature": 0.5}).test_every_option_changes_loss_or_gradients()


class ScheduleOptions(Options):
    decay_from: int = Field(1, ge=0, description="Optimizer step from which the loss is halved.")


class ScheduleTask(torch.nn.Module):
    """A loss halved from step ``decay_from`` on (counted by ``on_step``), or never (``ignore``)."""

    def __init__(self, options: ScheduleOptions, ignore: bool):
        super().__init__()
        self.decay_from = 10**9 if ignore else options.decay_from
        self.step = 0
        self.head = torch.nn.Linear(8, 4)

    def on_step(self, step: int) -> None:
        self.step = step

    def forward(self, batch: dict[str, Any], backbone: torch.nn.Module) -> TaskOutput:
        loss = self.head(backbone(batch["input"])).pow(2).mean()
        return TaskOutput(loss=loss * (0.5 if self.step >= self.decay_from else 1.0))


@pytest.mark.parametrize("ignore", [False, True])
def test_an_option_that_acts_from_the_second_step_is_seen(ignore):
    module = types.ModuleType("schedule")

    @selfsup.hookimpl
    def register_pretext_tasks(register):
        register("schedule_task", lambda options, context: ScheduleTask(options, ignore), options=ScheduleOptions,
                 modality="vector", summary="A loss schedule.")

    module.register_pretext_tasks = register_pretext_tasks
    suite = type("Schedule", (TaskConformance,), {"plugins": [selfsup_toy, module], "task": "schedule_task",
                                                  "data": BLOBS, "backbone": MLP})()
    if ignore:
        with pytest.raises(pytest.fail.Exception, match="decay_from: 1 -> 2 leaves"):
            suite.test_every_option_changes_loss_or_gradients()
    else:
        suite.test_every_option_changes_loss_or_gradients()


def test_a_task_that_reads_labels_fails():
    with pytest.raises(pytest.fail.Exception, match="fails on a batch with the labels removed: KeyError"):
        _suite("labels").test_ignores_labels()
    with pytest.raises(AssertionError, match="the loss or metrics change with the labels removed"):
        _suite("labels_if_present").test_ignores_labels()


class BrokenBlobsOptions(Options):
    n: int = Field(64, gt=0)
    dim: int = Field(8, gt=0)
    classes: int = Field(4, gt=1)
    seed: int = Field(0, ge=0)


def test_a_data_source_that_ignores_an_option_fails_and_names_it():
    module = types.ModuleType("broken_blobs")

    @selfsup.hookimpl
    def register_data_sources(register):
        def build(options, context):  # forgets `seed`
            from selfsup_toy.blobs import Blobs

            return Blobs(selfsup_toy.BlobsOptions(n=options.n, dim=options.dim, classes=options.classes))

        register("broken_blobs", build, options=BrokenBlobsOptions, modality="vector", summary="Blobs, seed ignored.")

    module.register_data_sources = register_data_sources
    suite = type("Broken", (DataSourceConformance,), {"plugins": [module], "data": ("broken_blobs", {})})()
    with pytest.raises(pytest.fail.Exception) as failed:
        suite.test_every_option_changes_samples()
    problems = str(failed.value).splitlines()[1:]
    assert len(problems) == 1 and problems[0].strip().startswith("seed: 0 -> 1 leaves the samples unchanged"), problems


class Everything(Options):
    flag: bool = True
    mode: Literal["a", "b"] = "a"
    split: str = Field("all", pattern="^(all|train|val)$")
    p: float = Field(0.8, ge=0, le=1)
    zero: float = Field(0.0, ge=0)
    size: int | None = Field(None, ge=8)
    limit: int | None = Field(None, gt=0)
    scale: tuple[float, float] = (0.08, 1.0)
    widths: list[int] = Field(default_factory=lambda: [32, 64])
    key: str = "image"
    label_key: str | None = "label"
    path: ExistingFile = Path(__file__)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    mean: list[float] | None = None
    crop: tuple[float, float] | None = None


@pytest.mark.parametrize(("name", "expected"), [
    ("flag", False), ("mode", "b"), ("split", "train"), ("p", 0.4), ("zero", 0.5), ("size", 16), ("limit", 16),
    ("scale", (0.12, 1.0)), ("widths", [33, 64]), ("key", "image_changed"), ("label_key", None),
    ("mean", [0.5]), ("crop", (0.1, 0.5)),
])
def test_changed_values_are_derived_from_type_and_constraints(name, expected):
    value = changed_value(Everything, {}, name)
    assert same(value, expected) and type(value) is type(expected), value
    assert changed_value(Everything, {"mode": "b"}, "mode") == "a"
    assert changed_value(Everything, {"p": 1.0}, "p") == 0.5


@pytest.mark.parametrize("name", ["path", "kwargs"])
def test_fields_without_a_derivable_change_need_a_variant(name):
    with pytest.raises(NoVariant, match="no changed value could be derived"):
        changed_value(Everything, {}, name)


def test_same_compares_exactly():
    a = {"x": torch.tensor([1.0, float("nan")]), "y": [1, 2.5]}
    assert same(a, {"x": torch.tensor([1.0, float("nan")]), "y": [1, 2.5]})
    assert not same(a, {"x": torch.tensor([1.0, float("nan")], dtype=torch.float64), "y": [1, 2.5]})
    assert not same(a, {"x": torch.tensor([1.0, 2.0]), "y": [1, 2.5]})
    assert not same(a, {"x": torch.tensor([1.0, float("nan")]), "y": [1, 2.5000001]})
