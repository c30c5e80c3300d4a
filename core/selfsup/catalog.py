"""The catalogue of known pretext tasks (``ssl_registry.toml``), read without importing torch."""

from __future__ import annotations

import os
import re
import sys
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: The families of Balestriero et al., A Cookbook of Self-Supervised Learning (2023), plus predictive tasks:
#: contrastive (deep metric learning), self-distillation (BYOL, DINO: a teacher's output as the target),
#: canonical-correlation (Barlow Twins, VICReg: decorrelated, non-collapsed embeddings), masked, clustering.
Family = Literal["predictive", "masked", "contrastive", "self-distillation", "canonical-correlation", "clustering"]


class CatalogEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    modality: str
    family: Family
    distribution: str
    paper: str
    summary: str


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: list[CatalogEntry]


def catalog_path() -> Path:
    """The catalogue shipped inside the ``selfsup`` package (a link to the repository's top-level
    ``ssl_registry.toml`` in a source checkout)."""
    return Path(str(resources.files("selfsup") / "ssl_registry.toml"))


@lru_cache(maxsize=1)
def load_catalog(path: str | None = None) -> tuple[CatalogEntry, ...]:
    """All catalogue entries, validated; names are unique."""
    file = Path(path) if path else catalog_path()
    with open(file, "rb") as fh:
        catalog = Catalog.model_validate(tomllib.load(fh))
    names = [e.name for e in catalog.task]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{file}: duplicate task names {dupes}")
    return tuple(catalog.task)


def find_task(name: str) -> CatalogEntry | None:
    return next((e for e in load_catalog() if e.name == name), None)


def distributions() -> list[str]:
    """The distributions the catalogue names (those ``selfsup install`` accepts by name)."""
    return sorted({e.distribution for e in load_catalog()})


# ----------------------------------------------------------------------------- selfsup install


class InstallRefused(ValueError):
    """``selfsup install`` was given something it does not pass to pip (see :func:`install_targets`)."""


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _looks_like_path(name: str) -> bool:
    return name.endswith(".whl") or "/" in name or os.sep in name or name.startswith(".")


def install_targets(names: list[str] | tuple[str, ...]) -> tuple[list[str], list[str]]:
    """What ``selfsup install NAMES`` passes to pip: ``(pip arguments, notes)``, each argument once,
    in order; the notes say how task names were resolved. Accepted, and nothing else:

    * a pretext task of the catalogue (``simclr``): the distribution that provides it;
    * a distribution the catalogue names (``selfsup-vision``), optionally with extras and a version
      range (``selfsup-vision[timm]>=0.1``), never a URL;
    * a local wheel (``*.whl``) or project directory (with ``pyproject.toml``, ``setup.py`` or
      ``setup.cfg``), which must exist; passed as an absolute path.

    Raises :class:`InstallRefused` for anything else: a name starting with ``-`` (a pip option), an
    unknown name (with the nearest known one: ``simclrr`` is never sent to the index, where anyone
    could have published it), a missing file. Other distributions go through ``--pip-args``."""
    from packaging.requirements import InvalidRequirement, Requirement

    tasks = {e.name: e for e in load_catalog()}
    dists = {_normalise(d): d for d in distributions()}
    targets: list[str] = []
    notes: list[str] = []
    for name in names:
        if name.startswith("-"):
            raise InstallRefused(f"{name!r} looks like a pip option; selfsup install takes task names, catalogued "
                                 "distributions, wheels and project folders (pip options go through --pip-args '...')")
        if name in tasks:
            dist = tasks[name].distribution
            targets.append(dist)
            notes.append(f"{name}: provided by {dist}")
            continue
        try:
            req = Requirement(name) if "@" in name or not name.endswith(".whl") else None
        except InvalidRequirement:
            req = None
        if req is not None and req.url:
            raise InstallRefused(f"{name!r}: installing from a URL needs an explicit --pip-args '...'")
        if req is not None and _normalise(req.name) in dists:
            targets.append(name)
            continue
        path = Path(name)
        if _looks_like_path(name) or path.is_dir():
            targets.append(_local_target(name, path))
            continue
        raise InstallRefused(_unknown(name, list(tasks), list(dists.values())))
    return list(dict.fromkeys(targets)), notes


def _local_target(name: str, path: Path) -> str:
    if path.suffix == ".whl":
        if not path.is_file():
            raise InstallRefused(f"wheel {name!r} not found")
        return str(path.resolve())
    if not path.is_dir():
        raise InstallRefused(f"{name!r} is neither a catalogued name nor an existing wheel or project folder")
    if not any((path / f).is_file() for f in ("pyproject.toml", "setup.py", "setup.cfg")):
        raise InstallRefused(f"folder {name!r} is not a Python project (no pyproject.toml, setup.py or setup.cfg)")
    return str(path.resolve())


def _unknown(name: str, tasks: list[str], dists: list[str]) -> str:
    import difflib

    msg = f"unknown plugin or task {name!r}"
    near = difflib.get_close_matches(name, [*tasks, *dists], n=1, cutoff=0.6)
    if near:
        provider = next((e.distribution for e in load_catalog() if e.name == near[0]), None)
        msg += f"; did you mean {near[0]!r}" + (f" (from {provider})?" if provider else "?")
    else:
        msg += f"; known: the tasks of `selfsup tasks` and {', '.join(sorted(dists))}."
    return msg + f" To install another distribution from the package index, say so: --pip-args '{name}'"
