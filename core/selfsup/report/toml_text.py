"""A resolved recipe (``recipe.json``) written back as TOML, the way recipes are written by hand.

Top-level values first; then a ``[table]`` for each top-level table of values (``[train]``) and a
``[table.key]`` for each entry of a table of tables (``[data.train]``, ``[tasks.simclr]``), whose
nested tables stay inline (``options = { ... }``). ``None`` values (unset optional fields) are left
out, as TOML has no null.
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping


def value_text(value: Any) -> str:
    """One TOML value: strings quoted, lists and dicts inline, non-finite floats as ``nan`` / ``inf``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        items = [f"{key_text(k)} = {value_text(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return json.dumps(str(value))


def key_text(key: str) -> str:
    """A bare key when TOML allows one, else a quoted key."""
    return key if key and all(c.isalnum() or c in "_-" for c in key) else json.dumps(key)


def _is_table_of_tables(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(isinstance(v, Mapping) for v in value.values())


def recipe_toml(recipe: Mapping[str, Any]) -> str:
    """``recipe`` as TOML text (see the module docstring)."""
    lines = [f"{key_text(k)} = {value_text(v)}" for k, v in recipe.items()
             if v is not None and not isinstance(v, Mapping)]
    for name, table in recipe.items():
        if not isinstance(table, Mapping) or not table:
            continue
        if _is_table_of_tables(table):
            for key, entry in table.items():
                lines += ["", f"[{key_text(name)}.{key_text(key)}]"]
                lines += [f"{key_text(k)} = {value_text(v)}" for k, v in entry.items() if v is not None]
        else:
            lines += ["", f"[{key_text(name)}]"]
            lines += [f"{key_text(k)} = {value_text(v)}" for k, v in table.items() if v is not None]
    return "\n".join(lines).strip() + "\n"
