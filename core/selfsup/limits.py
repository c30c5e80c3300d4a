"""Limits every recipe value respects, checked at validation time so that a run never starts with a
value it cannot train with, write with or print.

* **Finite floats.** Every float in the recipe and in every component's parsed options is finite
  (no ``inf``, ``nan``; TOML's ``1e999`` is ``inf``). A field whose meaning allows infinity opts out
  with ``Field(..., json_schema_extra={"allow_nonfinite": True})``; the opt-out covers the values
  nested under it.
* **Bounded integers.** Every integer lies within ``±INT_MAX`` (2**31 - 1), on each side where the
  field declares no bound of its own (``le``/``lt`` above, ``ge``/``gt`` below). Seeds (a field named
  ``seed`` or ending in ``_seed``) go up to ``SEED_MAX`` (2**63 - 1); any other field sets its own
  limit with ``json_schema_extra={"int_max": N}`` (also for the values nested under it).
* **Nesting.** Tables and arrays nest at most ``MAX_DEPTH`` levels, checked on the TOML text before
  it is parsed (tomllib recurses per level) and on the data after ``--set`` overrides.
* **Keys.** Component keys (``[backbones.<key>]``...) are identifier-like: ``KEY_PATTERN``, at most
  ``KEY_MAX_LENGTH`` characters; they name metrics, export folders and checkpoint entries.
* **Short messages.** :func:`short` gives a bounded ``repr`` of a value and :func:`short_text`
  bounds any message, so a 100 KB string is never repeated in an error.

Everything here is pure Python (no pydantic model of its own, no torch).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

INT_MAX = 2**31 - 1
SEED_MAX = 2**63 - 1
MAX_DEPTH = 32
KEY_MAX_LENGTH = 64
KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
NAME_MAX_LENGTH = 128

#: ``json_schema_extra`` keys a field may set.
ALLOW_NONFINITE = "allow_nonfinite"
INT_MAX_KEY = "int_max"
#: A raw table validated later by its own model (a component's ``options``): skipped by :func:`value_problems`.
RAW_TABLE = "raw_table"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# ------------------------------------------------------------------------------------ messages


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (saying how long it was) when longer."""
    if isinstance(value, str) and len(value) > 4 * limit:
        value = value[: 2 * limit]  # the rest is cut anyway: no need to repr 100 KB
        cut = True
    else:
        cut = False
    try:
        text = repr(value)
    except RecursionError:
        return "<a too deeply nested value>"
    if len(text) <= limit and not cut:
        return text
    return text[: limit - 3] + "..."


def short_text(text: str, word: int = 200, total: int = 2000) -> str:
    """``text`` with every run of more than ``word`` non-space characters, and the whole text
    beyond ``total`` characters, cut in the middle (``…[N characters]…``)."""

    def cut(s: str, keep: int) -> str:
        return f"{s[: keep // 2]}…[{len(s) - keep} characters]…{s[-(keep // 4):]}"

    if len(text) > word:
        text = re.sub(rf"\S{{{word + 1},}}", lambda m: cut(m.group(0), word), text)
    return cut(text, total) if len(text) > total else text


def join_path(path: str, key: Any) -> str:
    """``path`` extended by one table key: ``a.b``, or ``a['odd key']`` for a key that is not plain."""
    text = key_text(key)
    return f"{path}{text}" if text.startswith("[") or not path else f"{path}.{text}"


def key_text(key: Any) -> str:
    """A table key as it reads in a field path: itself when plain, else its shortened ``repr``."""
    if isinstance(key, str) and re.fullmatch(rf"[\w-]{{1,{KEY_MAX_LENGTH}}}", key) and key.isprintable():
        return key
    return f"[{short(key, 40)}]"


# ------------------------------------------------------------------------------------ keys and names


def key_problem(key: Any) -> str | None:
    """Why ``key`` cannot name a component (``[backbones.<key>]``), or None."""
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        return ("not a valid key: use letters, digits, '_' and '-', starting with a letter or '_' "
                "(keys name metrics, checkpoint entries and export folders)")
    if len(key) > KEY_MAX_LENGTH:
        return f"key is {len(key)} characters long; at most {KEY_MAX_LENGTH}"
    return None


def path_component_problem(text: str) -> str | None:
    """Why ``text`` cannot be one file or folder name inside another folder, or None: it must be
    non-empty, hold no '/', '\\', control characters or lone surrogates, and not start with '.'
    (which also excludes '.' and '..')."""
    if not text:
        return "must not be empty"
    if "/" in text or "\\" in text:
        return "must be a single folder name: no '/' or '\\'"
    if text.startswith("."):
        return "must not start with '.'"
    if _CONTROL.search(text):
        return "must not contain control characters"
    if not _encodable(text):
        return "must be valid Unicode (it holds a lone surrogate)"
    if len(text) > NAME_MAX_LENGTH:
        return f"is {len(text)} characters long; at most {NAME_MAX_LENGTH}"
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def plain_path_problem(text: str) -> str | None:
    """Why ``text`` cannot be a path written as given (``output_dir``), or None."""
    if _CONTROL.search(text):
        return "must not contain control characters"
    if not _encodable(text):
        return "must be valid Unicode (it holds a lone surrogate)"
    if text.startswith("~"):
        return ("'~' is not expanded here; write the path out (an absolute path, or one relative to the "
                "working directory)")
    return None


# ------------------------------------------------------------------------------------ nesting


def depth_problem(data: Any, limit: int = MAX_DEPTH) -> str | None:
    """The field path where ``data`` (dicts and lists) nests more than ``limit`` levels, or None.
    Iterative, so any depth is safe to check."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > limit:
            return path or "(top)"
        if isinstance(value, dict):
            stack.extend((v, join_path(path, k), depth + 1) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value))
    return None


def toml_depth_problem(text: str, limit: int = MAX_DEPTH) -> int | None:
    """The line where brackets and braces of a TOML document nest more than ``limit`` deep, or None.

    A light scan before parsing (tomllib recurses once per level and would raise RecursionError):
    it skips strings (basic, literal, multi-line) and comments, and counts ``[`` and ``{``."""
    depth, line, i, n = 0, 1, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif c in "\"'":
            triple = text.startswith(c * 3, i)
            quote = c * 3 if triple else c
            j = i + len(quote)
            while j < n:
                if c == '"' and text[j] == "\\":
                    j += 2
                    continue
                if text.startswith(quote, j) or (not triple and text[j] == "\n"):
                    break
                j += 1
            line += text.count("\n", i, j)
            i = j + len(quote)
            continue
        elif c in "[{":
            depth += 1
            if depth > limit:
                return line
        elif c in "]}":
            depth = max(depth - 1, 0)
        i += 1
    return None


# ------------------------------------------------------------------------------------ values


def value_problems(value: Any, path: str = "") -> list[tuple[str, str]]:
    """``(field path, message)`` for every non-finite float and out-of-range integer in ``value``
    (a validated pydantic model, or plain dicts/lists/tuples), following the rules above."""
    problems = []
    for where, item, allow_nonfinite, low, high in _scalars(value, path):
        if isinstance(item, float) and not allow_nonfinite and not math.isfinite(item):
            problems.append((where, f"must be a finite number (got {item})"))
        elif isinstance(item, int) and not isinstance(item, bool):
            if high is not None and item > high:
                problems.append((where, f"must be at most {high} (got {short(item, 30)})"))
            elif low is not None and item < low:
                problems.append((where, f"must be at least {low} (got {short(item, 30)})"))
    return problems


def _bounds(name: str, info: Any, int_max: int | None) -> tuple[int | None, int | None]:
    """The default (low, high) integer limits of field ``name``: None on a side the field bounds itself."""
    import annotated_types as at

    if int_max is None:
        int_max = SEED_MAX if name == "seed" or name.endswith("_seed") else INT_MAX
    metadata = getattr(info, "metadata", [])
    has_high = any(isinstance(m, (at.Le, at.Lt)) for m in metadata)
    has_low = any(isinstance(m, (at.Ge, at.Gt)) for m in metadata)
    return (None if has_low else -int_max), (None if has_high else int_max)


def _scalars(root: Any, path: str) -> Iterator[tuple[str, Any, bool, int | None, int | None]]:
    """Every float and int under ``root``, in field order: (path, value, allow_nonfinite, low, high)."""
    # (path, value, allow_nonfinite, low, high, the int_max set by an enclosing field)
    stack: list[tuple[str, Any, bool, int | None, int | None, int | None]] = [
        (path, root, False, -INT_MAX, INT_MAX, None)
    ]
    seen: set[int] = set()
    while stack:
        where, value, nonfinite, low, high, inherited_max = stack.pop()
        children: list[tuple[str, Any, bool, int | None, int | None, int | None]] = []
        if isinstance(value, (float, int)):
            yield where, value, nonfinite, low, high
        elif isinstance(value, BaseModel):
            if id(value) in seen:
                continue
            seen.add(id(value))
            fields = type(value).model_fields
            items = [(name, getattr(value, name, None), fields[name]) for name in fields]
            items += [(str(k), v, None) for k, v in (value.model_extra or {}).items()]
            for name, item, info in items:
                extra = getattr(info, "json_schema_extra", None)
                extra = extra if isinstance(extra, dict) else {}
                if extra.get(RAW_TABLE):
                    continue
                own_max = extra.get(INT_MAX_KEY, inherited_max)
                lo, hi = _bounds(name, info, own_max)
                allow = nonfinite or bool(extra.get(ALLOW_NONFINITE))
                children.append((join_path(where, name), item, allow, lo, hi, own_max))
        elif isinstance(value, dict):
            for k, v in value.items():
                lo, hi = _bounds(str(k), None, inherited_max)
                children.append((join_path(where, k), v, nonfinite, lo, hi, inherited_max))
        elif isinstance(value, (list, tuple, set, frozenset)):
            limit = inherited_max or INT_MAX
            children = [(f"{where}[{i}]", v, nonfinite, -limit, limit, inherited_max) for i, v in enumerate(value)]
        stack.extend(reversed(children))
