"""The plugin kit: ``selfsup plugin new NAME`` writes a complete third-party plugin project.

The project's files are templates shipped in ``selfsup/kit/template``. Rendering is plain string
replacement of ``{{key}}`` placeholders (no code is evaluated); in paths, a ``dot-`` prefix becomes
``.`` (``dot-github`` -> ``.github``, kept out of sight of packaging tools) and ``.tmpl`` is dropped
(so template ``.py`` files are never imported or collected by the core's tools).
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from selfsup import __version__

if TYPE_CHECKING:  # pragma: no cover
    from importlib.resources.abc import Traversable

#: Plugin names the kit refuses: the core's own and the first-party plugins' entry points.
RESERVED = frozenset({"core", "text", "vision", "speech", "multimodal", "toy"})
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
MODALITY_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


class KitError(ValueError):
    """A bad name or modality, or a target directory that exists (without ``force``)."""


def supported_range(version: str = __version__) -> str:
    """The core versions a new plugin declares: this core's minor series, ``">=0.1,<0.2"`` for 0.1.x."""
    major, minor = (int(part) for part in re.findall(r"\d+", version)[:2])
    return f">={major}.{minor},<{major}.{minor + 1}"


def check_name(name: str) -> str:
    """``name`` if it can be a plugin name, entry point and package suffix; else :class:`KitError`."""
    if name.lower().startswith(("selfsup-", "selfsup_")):
        raise KitError(f"pass the name without the 'selfsup-' prefix: {name[8:]!r} makes selfsup-{name[8:]}")
    if not NAME_PATTERN.match(name):
        hint = re.sub(r"[^a-z0-9_]", "_", name.lower()).strip("_")
        suggestion = f" (e.g. {hint!r})" if hint and NAME_PATTERN.match(hint) else ""
        raise KitError(f"plugin name {name!r} must be lowercase letters, digits and '_', starting with a letter, "
                       f"at most 40 characters{suggestion}")
    if keyword.iskeyword(name) or name in RESERVED:
        raise KitError(f"plugin name {name!r} is reserved; choose a name specific to your project")
    return name


@dataclass(frozen=True)
class Plan:
    """What :func:`new_plugin` writes: the project directory and each file's text, by relative path."""

    root: Path
    files: dict[str, str]


def _walk(node: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    out: list[tuple[str, Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        rel = f"{prefix}{child.name}"
        out += _walk(child, rel + "/") if child.is_dir() else [(rel, child)]
    return out


def render(text: str, values: dict[str, str]) -> str:
    """Replace each ``{{key}}`` of ``values`` in ``text`` (others, like GitHub's ``${{ x }}``, stay)."""
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def plan(name: str, directory: str | Path = ".", *, modality: str = "vector") -> Plan:
    """The files of plugin ``name`` in ``directory/selfsup-<name>`` (nothing is written)."""
    check_name(name)
    if not MODALITY_PATTERN.match(modality):
        raise KitError(f"modality {modality!r} must be a short lowercase word such as 'vector' or 'tabular'")
    values = {
        "name": name,
        "package": f"selfsup_{name}",
        "distribution": f"selfsup-{name}",
        "modality": modality,
        "core_range": supported_range(),
        "core_version": __version__,
    }
    files = {}
    for rel, node in _walk(resources.files("selfsup.kit").joinpath("template")):
        if not rel.endswith(".tmpl"):
            continue
        path = "/".join("." + p[4:] if p.startswith("dot-") else p for p in rel[: -len(".tmpl")].split("/"))
        files[render(path, values)] = render(node.read_text(encoding="utf-8"), values)
    return Plan(Path(directory) / f"selfsup-{name}", files)


def new_plugin(name: str, directory: str | Path = ".", *, modality: str = "vector", force: bool = False) -> Plan:
    """Write plugin ``name``'s project to ``directory/selfsup-<name>`` and return what was written.
    An existing project directory is an error unless ``force`` (then the kit's files are overwritten
    and any other file is left alone)."""
    result = plan(name, directory, modality=modality)
    if result.root.exists() and not force:
        raise KitError(f"{result.root} already exists; pass --force to overwrite the kit's files in it")
    for rel, text in result.files.items():
        target = result.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return result
