"""The catalogue of known pretext tasks (``ssl_registry.toml``), read without importing torch."""

from __future__ import annotations

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

Family = Literal["predictive", "masked", "contrastive", "clustering"]


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
