"""Conformance checks that every option of a component does something, and that pretext tasks ignore labels.

**Options.** For each field of a component's options model, the suite builds the component with the
suite's options and again with that one field changed, runs both on the same inputs and seeds, and
checks that the outputs differ:

======================  ==========================================================================
Kind                    Output compared
======================  ==========================================================================
data source             its length, its first 8 samples, and its ``collate`` of the first two
augmentation            its output for the first 2 samples under generator seeds 0-3
backbone                ``embed`` of a batch of 2 (same ``torch.manual_seed`` before building)
pretext task            two steps on consecutive batches (``on_step(0)``, forward, backward, then
                        ``on_step(1)``, forward, backward; no update in between): each step's loss,
                        metrics and gradients, the buffers after them, and ``sample_weights(0)``
                        when the task has it
evaluator               the metrics, and the files it writes to its run directory
======================  ==========================================================================

The changed value is the suite's ``option_variants[field]`` when given, else it is derived from the
field's current value, type and constraints by :func:`changed_value` (a bool is negated, a
``Literal`` or a ``pattern="^(a|b)$"`` string takes another member, a number moves within its
bounds, a list or tuple of numbers has its first element changed, ``None`` becomes a small value of
the field's type (a number, a one-element list, an increasing tuple; never a string, which may name
a path to write), an optional value becomes ``None``, a free string gets ``_changed`` appended). A
value that makes building or running the component raise counts as a change: the component read it
(``key = "image_changed"`` raises ``KeyError`` in a component that reads its ``key`` option, and
changes nothing in one that ignores it).

An option that legitimately changes nothing for the suite's inputs (``on_error`` when every file
is readable, ``workers`` that only changes speed) is listed in the suite's ``inert_options`` with
the reason, and is not varied::

    class TestMyFolder(DataSourceConformance):
        data = ("my_folder", {"root": "..."})
        option_variants = {"root": "/other/folder", "size": 16}
        inert_options = {"on_error": "the suite's files are all readable"}

A field that is neither varied nor listed fails the check, and so do a field that cannot be derived
(a path, a free string, a dict): give it a variant or a reason. Names that are not fields, a field in
both attributes and an empty reason fail too.

**Labels.** A pretext task must not read ``"label"`` (evaluators do): on the suite's samples it gives
the same loss and metrics with the labels removed and with the labels replaced by other integers
(set on every sample when the suite's data has no labels).
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
import types
import typing
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pytest

from selfsup.options import PretrainedOptions
from selfsup.registry import Component

#: How many samples of a data source the options check compares.
SOURCE_SAMPLES = 8
#: Generator seeds under which the options check compares an augmentation's outputs.
AUGMENT_SEEDS = (0, 1, 2, 3)
#: Optimizer steps the options check runs a task for (``on_step``, forward, backward each; no update).
TASK_STEPS = 2
#: Values tried, in order, for an option whose current value is ``None``.
_FRESH: dict[type, tuple[Any, ...]] = {int: (16, 4, 2, 1, 64, 256), float: (0.5, 0.1, 1.0, 2.0, 0.9),
                                      bool: (True, False)}


class NoVariant(ValueError):
    """No changed value could be derived for an option (give one in ``option_variants``)."""


# ----------------------------------------------------------------------------- deriving a changed value


def _without_none(annotation: Any) -> list[Any]:
    """The members of a union annotation other than ``None`` (or the annotation itself)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _members(annotation: Any) -> list[Any]:
    """The allowed values of a ``Literal`` or ``Enum`` annotation (inside ``Optional`` too), else ``[]``."""
    out: list[Any] = []
    for a in _without_none(annotation):
        if typing.get_origin(a) is typing.Literal:
            out += list(typing.get_args(a))
        elif isinstance(a, type) and issubclass(a, enum.Enum):
            out += list(a)
    return out


def _pattern_members(field: Any) -> list[str]:
    """The words of a ``pattern="^(a|b|c)$"`` constraint on a string field, else ``[]``."""
    for meta in field.metadata:
        match = re.fullmatch(r"\^?\(([\w.-]+(?:\|[\w.-]+)+)\)\$?", str(getattr(meta, "pattern", "") or ""))
        if match:
            return match.group(1).split("|")
    return []


def _number_candidates(current: Any) -> list[Any]:
    if isinstance(current, bool):
        return [not current]
    if isinstance(current, int):
        return [current + 1, current - 1, current * 2, current // 2]
    if isinstance(current, float):
        return [current * 1.5, current / 2, current + 0.5, current - 0.5, (current + 1) / 2, 0.5]
    return []


def _fresh(annotation: Any) -> list[Any]:
    """Values to try for a field of type ``annotation`` that is ``None`` now: small numbers, a
    one-element list, an increasing tuple."""
    if annotation in _FRESH:
        return list(_FRESH[annotation])
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list and args and args[0] in _FRESH:
        return [[value] for value in _FRESH[args[0]]]
    if origin is tuple and args and Ellipsis not in args and len(set(args)) == 1 and args[0] in _FRESH:
        return [tuple(sorted(_FRESH[args[0]][: len(args)]))]
    return []


def _candidates(current: Any, annotation: Any) -> list[Any]:
    """Values to try instead of ``current`` for a field annotated ``annotation``, most natural first."""
    out = [m for m in _members(annotation) if m != current]
    if current is None:
        for base in _without_none(annotation):
            out += list(_fresh(base))
        return out
    out += _number_candidates(current)
    if isinstance(current, (list, tuple)) and current:
        args = typing.get_args(_without_none(annotation)[0]) or (Any,)
        first = _candidates(current[0], args[0])
        out += [type(current)([value, *current[1:]]) for value in first]
        if isinstance(current, list) and len(current) > 1:
            out.append(current[:-1])
    if type(None) in typing.get_args(annotation):
        out.append(None)
    if isinstance(current, str) and not isinstance(current, enum.Enum):
        out.append(f"{current}_changed")  # a key or name: reading it shows (a missing key raises)
    return out


def changed_value(model: type[Any], configured: Mapping[str, Any], name: str) -> Any:
    """A value of option ``name`` that ``model`` accepts beside ``configured`` and that differs from
    the configured one (see the module docstring); :class:`NoVariant` when none is found."""
    from pydantic import ValidationError

    field = model.model_fields[name]
    current = getattr(model.model_validate(dict(configured)), name)
    for candidate in [*_candidates(current, field.annotation), *_pattern_members(field)]:
        try:
            parsed = model.model_validate({**configured, name: candidate})
        except ValidationError:
            continue
        if not same(getattr(parsed, name), current):
            return candidate
    raise NoVariant(f"no changed value could be derived from {current!r} ({_type_name(field.annotation)})")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


# ----------------------------------------------------------------------------- comparing outputs


def same(a: Any, b: Any) -> bool:
    """Whether two outputs are equal: tensors and arrays exactly (NaN equal to NaN, dtype and shape
    included), mappings and sequences element by element, anything else with ``==``."""
    import numpy as np
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return False
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if torch.equal(a, b):
            return True
        return bool(a.is_floating_point() and torch.equal(a.isnan(), b.isnan())
                    and torch.equal(a.nan_to_num(), b.nan_to_num()))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape and a.dtype == b.dtype
                and bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")))
    if isinstance(a, Mapping):
        return isinstance(b, Mapping) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return bool(a == b)
    except Exception:  # an object whose == is not a truth value
        return a is b


def files_digest(directory: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``directory`` (what an evaluator wrote)."""
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(directory).rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- the check

#: Without ``pretrained`` in the suite's options, the options of :class:`selfsup.options.PretrainedOptions`
#: change nothing (starting weights are the plugin's own tests' to check, with weights they write).
PRETRAINED_INERT = {
    "pretrained": "starting weights: the suite's options load none (the plugin's pretrained tests load them)",
    "pretrained_strict": "only read when pretrained weights are loaded",
    "pretrained_download": "only read when pretrained weights are resolved (tests never download)",
}


def check_options_matter(suite: Any, comp: Component, options: Mapping[str, Any], run: Callable[[dict[str, Any]], Any],
                         what: str) -> None:
    """Fail unless every field of ``comp``'s options model changes ``run(options)`` or is listed in
    ``suite.inert_options``; changed values come from ``suite.option_variants`` or :func:`changed_value`."""
    fields = comp.options.model_fields
    variants: dict[str, Any] = dict(getattr(suite, "option_variants", {}) or {})
    inert: dict[str, str] = dict(getattr(suite, "inert_options", {}) or {})
    label = f"{comp.kind.replace('_', ' ')} {comp.name!r}"
    if isinstance(comp.options, type) and issubclass(comp.options, PretrainedOptions) and not options.get("pretrained"):
        for name, why in PRETRAINED_INERT.items():  # unless the suite gives them a variant or its own reason
            if name not in variants and name not in inert:
                inert[name] = why
    setup = [f"option_variants names {n!r}, which is not an option of {label}"
             for n in sorted(set(variants) - set(fields))]
    setup += [f"inert_options names {n!r}, which is not an option of {label}" for n in sorted(set(inert) - set(fields))]
    setup += [f"{n!r} is in both option_variants and inert_options" for n in sorted(set(variants) & set(inert))]
    setup += [f"inert_options[{n!r}] needs a reason (why the option changes nothing here)"
              for n, why in inert.items() if not (isinstance(why, str) and why.strip())]
    if setup:
        pytest.fail(f"{label}: " + "; ".join(setup), pytrace=False)

    reference = run(dict(options))
    problems: list[str] = []
    for name in fields:
        if name in inert:
            continue
        try:
            value = variants[name] if name in variants else changed_value(comp.options, options, name)
        except NoVariant as exc:
            problems.append(f"{name}: {exc}; set option_variants = {{{name!r}: ...}}, or inert_options = "
                            f"{{{name!r}: 'why it changes nothing'}}")
            continue
        try:
            output = run({**options, name: value})
        except Exception:  # noqa: BLE001 - raising on the changed value shows the option is read
            continue
        if same(reference, output):
            current = getattr(comp.parse_options(dict(options)), name)
            problems.append(f"{name}: {current!r} -> {value!r} leaves the {what} unchanged; if the option is used, "
                            "give a value that shows it in option_variants, else list it in inert_options with "
                            "the reason")
    if problems:
        pytest.fail(f"{label}: options that change nothing:\n  " + "\n  ".join(problems), pytrace=False)


_HOW = {"drop": "removed", "garbage": "replaced by (or set to) other integers"}


def _relabel(samples: Iterable[dict[str, Any]], how: str) -> list[dict[str, Any]]:
    """The samples without ``"label"`` (``how="drop"``) or with other integer labels (``"garbage"``; added
    where a sample has none)."""
    out = []
    for i, sample in enumerate(samples):
        sample = dict(sample)
        if how == "drop":
            sample.pop("label", None)
        elif "label" in sample:
            sample["label"] = sample["label"] * 0 + 1000 + 7 * i  # same type (int or tensor), not a class
        else:  # data without labels: the task must ignore one that is there all the same
            sample["label"] = 1000 + 7 * i
        out.append(sample)
    return out


# ----------------------------------------------------------------------------- mixins of the suites


class DataSourceEffects:
    """Every option changes the source's length, first samples or ``collate`` (or is declared inert)."""

    def test_every_option_changes_samples(self) -> None:
        from selfsup.lib.data import is_iterable_source, ordered

        def run(options: dict[str, Any]) -> Any:
            source = self.build("data_source", (self.data[0], options))
            streaming = is_iterable_source(source)
            samples = list(islice(ordered(source, seed=self.seed, index=not streaming), SOURCE_SAMPLES))
            out: dict[str, Any] = {"samples": samples, "len": None if streaming else len(source)}
            if getattr(source, "collate", None) is not None and len(samples) >= 2:
                out["collate"] = source.collate(samples[:2])
            return out

        check_options_matter(self, self.component("data_source", self.data[0]), self.data[1], run, "samples")


class AugmentationEffects:
    """Every option changes the augmentation's outputs under the same generators (or is declared inert)."""

    def test_every_option_changes_output(self) -> None:
        import torch

        from selfsup.testing import _samples

        inputs = _samples(self.build("data_source", self.data), 2, [], self.seed)

        def run(options: dict[str, Any]) -> Any:
            aug = self.build("augmentation", (self.augmentation[0], options))
            return [aug(dict(s), torch.Generator().manual_seed(seed)) for s in inputs for seed in AUGMENT_SEEDS]

        check_options_matter(self, self.component("augmentation", self.augmentation[0]), self.augmentation[1], run,
                             "output")


class BackboneEffects:
    """Every option changes ``embed`` of the same batch (or is declared inert)."""

    def test_every_option_changes_embed(self) -> None:
        import torch

        batch = self._batch(2)

        def run(options: dict[str, Any]) -> Any:
            torch.manual_seed(self.seed)
            backbone = self.build("backbone", (self.backbone[0], options))
            return backbone.embed(batch).detach()

        check_options_matter(self, self.component("backbone", self.backbone[0]), self.backbone[1], run, "embedding")


class TaskEffects:
    """Every option changes the loss, metrics or gradients (or is declared inert); labels change nothing."""

    def test_every_option_changes_loss_or_gradients(self) -> None:
        import torch

        def run(options: dict[str, Any]) -> Any:
            batches, backbone, task = self._prepare(self.batch_sizes[-1], options=options, batches=TASK_STEPS)
            params = [*task.named_parameters(), *backbone.named_parameters()]
            torch.manual_seed(1)
            record: dict[str, Any] = {}
            for step in range(TASK_STEPS):
                if callable(getattr(task, "on_step", None)):
                    task.on_step(step)
                out = task(batches[step], backbone)
                out.loss.backward()
                record[f"step {step}"] = {
                    "loss": out.loss.detach(), "metrics": {k: float(v) for k, v in out.metrics.items()},
                    "grads": [(n, None if p.grad is None else p.grad.clone()) for n, p in params]}
                for _, p in params:
                    p.grad = None
            record["buffers"] = {n: b.clone() for n, b in task.named_buffers()}
            if callable(getattr(task, "sample_weights", None)):
                record["sample_weights"] = task.sample_weights(0)
            if callable(getattr(task, "lr_scales", None)):  # learning-rate multipliers the optimizer applies
                scales = task.lr_scales()
                record["lr_scales"] = {n: float(scales[p]) for n, p in params if p in scales}
            return record

        check_options_matter(self, self.component("pretext_task", self.task), self.task_options, run,
                             "losses, metrics, gradients, buffers and learning-rate scales")

    def test_ignores_labels(self) -> None:
        def result(edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None) -> Any:
            out, _, _ = self._run(self.batch_sizes[-1], seed=3, edit=edit)
            return {"loss": out.loss.detach(), "metrics": {k: float(v) for k, v in out.metrics.items()}}

        reference = result(None)
        for how in ("drop", "garbage"):
            try:
                changed = result(lambda samples, how=how: _relabel(samples, how))
            except Exception as exc:  # noqa: BLE001 - reported with the cause
                pytest.fail(f"pretext task {self.task!r} fails on a batch with the labels {_HOW[how]}: {exc!r}; "
                            "tasks must not read 'label'", pytrace=False)
            assert same(reference, changed), (
                f"pretext task {self.task!r}: the loss or metrics change with the labels {_HOW[how]} "
                f"({reference} -> {changed}); tasks must not read 'label'")


class EvaluatorEffects:
    """Every option changes the metrics or the files written (or is declared inert)."""

    def test_every_option_changes_metrics(self, tmp_path: Path) -> None:
        runs = iter(range(10_000))

        def run(options: dict[str, Any]) -> Any:
            run_dir = tmp_path / f"run{next(runs)}"
            run_dir.mkdir()
            metrics = self._evaluate(options, run_dir)
            return {"metrics": {k: float(v) for k, v in metrics.items()}, "files": files_digest(run_dir)}

        check_options_matter(self, self.component("evaluator", self.evaluator), self.evaluator_options, run,
                             "metrics and files")
