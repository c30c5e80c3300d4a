"""What a registered component is, as data: its options (name, type, default, description), its
sample keys (:mod:`selfsup.contract`), the plugin that provides it. Used by ``selfsup describe``
and by the generated component pages (:mod:`selfsup.docgen`). Imports no torch."""

from __future__ import annotations

import enum
import json
import types
import typing
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel

from selfsup.registry import (
    DECLARATIONS_OF_KIND,
    LABEL_OF_KIND,
    TABLE_OF_KIND,
    Component,
)

#: How constraints of pydantic fields read (annotated_types' names).
_BOUNDS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "min_length": "min length", "max_length": "max length",
           "pattern": "pattern", "multiple_of": "multiple of"}


def type_name(annotation: Any) -> str:
    """A readable type: ``int | None``, ``list[float]``, ``'all' | 'train'``, ``path``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join('...' if a is Ellipsis else type_name(a) for a in args)}]" if args else name
    if isinstance(annotation, type):
        if issubclass(annotation, PurePath):
            return "path"
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _plain(value: Any) -> Any:
    """A default as JSON data (paths and enums as text, tuples as lists, models as dicts)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _constraints(info: Any) -> str:
    parts = []
    for item in info.metadata:
        for attr, label in _BOUNDS.items():
            value = getattr(item, attr, None)
            if value is not None:
                parts.append(f"{label} {value}")
    return ", ".join(parts)


def option_rows(model: type[BaseModel]) -> list[dict[str, Any]]:
    """One row per option of ``model``: ``name``, ``type``, ``required``, ``default`` (JSON data;
    ``None`` when required), ``constraints`` (``> 0, <= 1``) and ``description``."""
    rows = []
    for name, info in model.model_fields.items():
        required = info.is_required()
        default = None
        if not required:
            try:
                default = _plain(info.get_default(call_default_factory=True))
            except Exception:  # noqa: BLE001 - a factory that needs validated data
                default = None
        rows.append({
            "name": name,
            "type": type_name(info.annotation),
            "required": required,
            "default": default,
            "constraints": _constraints(info),
            "description": (info.description or "").strip(),
        })
    return rows


def description_text(row: Mapping[str, Any]) -> str:
    """An option row's description with its constraints: ``Rows kept. (> 0)``."""
    text, bounds = row["description"], row["constraints"]
    return f"{text} ({bounds})" if text and bounds else text or (f"({bounds})" if bounds else "")


def default_text(row: Mapping[str, Any]) -> str:
    """An option row's default as recipe text (``required`` when there is none)."""
    if row["required"]:
        return "required"
    value = row["default"]
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, (str, list, dict)) else str(value)


def keys_of(comp: Component) -> dict[str, dict[str, str] | None]:
    """The component's declarations (``produces``/``consumes``, and a task's ``feeds`` when it has
    one) as written. An undeclared component gives ``None`` for each; a declared one ``{}`` for
    what it left out (an augmentation that only reads changes no key's type)."""
    out: dict[str, dict[str, str] | None] = {}
    for what in DECLARATIONS_OF_KIND[comp.kind]:
        keys = getattr(comp, what)
        if keys is not None:
            out[what] = keys.as_dict()
        elif what != "feeds":
            out[what] = {} if comp.declared else None
    return out


def keys_text(keys: Mapping[str, str] | None) -> str:
    """``image: float32[1,8,8], label: int64[]``; ``undeclared`` for ``None``."""
    if keys is None:
        return "undeclared"
    return ", ".join(f"{k}: {v}" for k, v in keys.items()) or "none"


def component_info(comp: Component, plugins: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything ``selfsup describe KIND NAME --json`` prints about ``comp``; ``plugins`` maps plugin
    names to their :class:`selfsup.plugins.PluginInfo` (for the version)."""
    info = (plugins or {}).get(comp.plugin)
    return {
        "kind": TABLE_OF_KIND[comp.kind],
        "name": comp.name,
        "summary": comp.summary,
        "modality": comp.modality,
        "plugin": comp.plugin,
        "distribution": comp.distribution,
        "version": getattr(info, "version", None),
        "declared": comp.declared,
        "keys": keys_of(comp),
        "options_model": comp.options.__name__,
        "options": option_rows(comp.options) if comp.kind != "recipe" else [],
    }


def undeclared_warning(comps: list[Component]) -> str | None:
    """The warning for components that declare no sample keys, or ``None`` when all do."""
    missing = [c for c in comps if not c.declared]
    if not missing:
        return None
    names = ", ".join(f"{LABEL_OF_KIND[c.kind]} {c.name!r} ({c.plugin})" for c in missing)
    return (f"{names} declare{'s' if len(missing) == 1 else ''} no sample keys: recipes using "
            f"{'it' if len(missing) == 1 else 'them'} are not checked for matching keys "
            f"(register(..., produces=/consumes=...), see selfsup.contract)")
