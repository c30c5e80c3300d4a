"""Errors raised inside a component (a task's forward, a data source's ``__getitem__``, an
augmentation, an evaluator), re-raised naming the component, its recipe field and its plugin."""

from __future__ import annotations

from typing import Any


class ComponentError(RuntimeError):
    """``tasks.rotnet (selfsup-rotnet 0.1.0): KeyError 'input' in forward; the batch has keys image, label``.

    The original exception is the ``__cause__`` (``selfsup train --verbose`` prints its traceback).
    """


def describe_exception(exc: BaseException) -> str:
    """``KeyError 'input'`` / ``ValueError: bad shape``: the exception in one line."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, KeyError):
        return f"KeyError {text}"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def keys_of(value: Any) -> str:
    """The keys of a sample or batch dict, for messages."""
    return ", ".join(sorted(map(str, value))) if isinstance(value, dict) else type(value).__name__


def component_error(
    label: str, exc: BaseException, where: str, data: Any = None, what: str = "batch"
) -> ComponentError:
    """A :class:`ComponentError` for ``exc`` raised by the component ``label`` in ``where``."""
    if isinstance(exc, ComponentError):
        return exc
    message = f"{label}: {describe_exception(exc)} in {where}"
    if data is not None:
        message += f"; the {what} has keys {keys_of(data)}"
    return ComponentError(message)
