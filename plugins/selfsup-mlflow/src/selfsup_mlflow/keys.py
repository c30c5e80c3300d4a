"""Turning selfsup's names and values into what MLflow accepts.

MLflow 3 (``mlflow.utils.validation``) accepts names of at most 250 characters made of letters,
digits, ``_ - . /``, spaces (and ``:`` except on Windows) that stay the same under
``posixpath.normpath`` (no leading, trailing or doubled ``/``, no ``.`` or ``..`` segment); param
values of at most 6,000 characters, tag values of at most 8,000; and per ``log_batch`` call at most
1,000 metrics and 100 params or tags. Nothing here imports MLflow.
"""

from __future__ import annotations

import json
import numbers
import re
from typing import Any, Iterable, Iterator, Mapping, Sequence, TypeVar

MAX_KEY = 250
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_PARAMS_OR_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000

_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_\-. /]")  # ':' is left out too: a Windows tracking server refuses it

T = TypeVar("T")


def sanitise(name: Any) -> str:
    """``name`` as a valid MLflow metric, param or tag name: every other character becomes ``_``,
    empty, ``.`` and ``..`` path segments are removed or renamed, and it is cut to 250 characters
    (``"knn/accuracy"`` is kept; ``"loss:ce//x/"`` becomes ``"loss_ce/x"``)."""
    text = _NOT_ALLOWED.sub("_", str(name))[:MAX_KEY]
    segments = [s if s not in (".", "..") else "_" * len(s) for s in text.split("/") if s]
    return "/".join(segments) or "_"


def unique_names(items: Iterable[tuple[Any, T]]) -> dict[str, T]:
    """``{sanitised name: value}``, in order; a name that sanitises to one already taken gets a
    ``_2``, ``_3``... suffix (MLflow refuses a batch that names a param twice)."""
    out: dict[str, T] = {}
    for name, value in items:
        base = key = sanitise(name)
        n = 1
        while key in out:
            n += 1
            suffix = f"_{n}"
            key = base[: MAX_KEY - len(suffix)] + suffix
        out[key] = value
    return out


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested recipe dict as ``{"tasks.simclr.options.temperature": 0.5, ...}``; lists stay
    values, an empty table is kept as ``{}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def text_value(value: Any, limit: int) -> str:
    """A param or tag value: strings as they are, anything else as JSON, cut to ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text[:limit]


def recipe_params(recipe: Mapping[str, Any]) -> dict[str, str]:
    """The recipe as MLflow params: dotted, sanitised, unique names and values within the limits."""
    return unique_names((k, text_value(v, MAX_PARAM_VALUE)) for k, v in flatten(recipe).items())


def numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries of ``metrics`` as floats (booleans and other values left out), under
    sanitised, unique names. NaN and infinities are kept: MLflow's stores record them."""
    return unique_names((k, float(v)) for k, v in metrics.items()
                        if isinstance(v, numbers.Real) and not isinstance(v, bool))


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size`` (batches within MLflow's limits)."""
    for start in range(0, len(items), size):
        yield items[start:start + size]
