"""Helpers for plugins' options models.

Paths in recipes are relative to the recipe file. Use these types in an options model so that a
missing file is reported against the recipe field, at validation time::

    class FolderOptions(selfsup.options.Options):
        root: ExistingDir
        limit: int | None = Field(None, gt=0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo


class Options(BaseModel):
    """Base class for component options: unknown keys are errors, models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve(value: Any, info: ValidationInfo) -> Path:
    path = Path(value).expanduser()
    base = (info.context or {}).get("base_dir") if info.context else None
    if not path.is_absolute() and base is not None:
        path = Path(base) / path
    return path


def _existing(kind: str):
    def check(value: Any, info: ValidationInfo) -> Path:
        path = _resolve(value, info)
        if (info.context or {}).get("data_optional"):  # serving: decoders never read the data
            return path
        test, noun = {"file": (Path.is_file, "file"), "dir": (Path.is_dir, "directory"),
                      "any": (Path.exists, "path")}[kind]
        try:
            found = test(path)
        except OSError as exc:  # a name too long for the file system, a permission problem
            raise ValueError(f"cannot access {path}: {exc.strerror or exc}") from None
        if not found:
            raise ValueError(f"{noun} not found: {path}")
        return path

    return check


#: A path that must name an existing file (relative to the recipe's directory).
ExistingFile = Annotated[Path, AfterValidator(_existing("file"))]
#: A path that must name an existing directory (relative to the recipe's directory).
ExistingDir = Annotated[Path, AfterValidator(_existing("dir"))]
#: A path that must exist, file or directory (relative to the recipe's directory).
ExistingPath = Annotated[Path, AfterValidator(_existing("any"))]
#: A path that may not exist yet (an output), made relative to the recipe's directory.
RecipePath = Annotated[Path, AfterValidator(_resolve)]


def _pretrained(value: Any, info: ValidationInfo) -> str | None:
    """A ``pretrained`` value: hub forms checked for syntax, a path resolved and checked to exist."""
    if value is None:
        return None
    from selfsup.lib.pretrained import parse_pretrained

    value = str(value) if isinstance(value, Path) else value  # the Python API passes folders as Paths

    spec = parse_pretrained(value)
    if spec.kind != "path":
        return str(spec)
    return str(_existing("any")(spec.name, info))


class PretrainedOptions(Options):
    """The ``pretrained`` options every backbone takes (see :mod:`selfsup.lib.pretrained`): where the
    starting weights come from, how strictly they must fit and whether they may be downloaded."""

    pretrained: Annotated[str | Path | None, AfterValidator(_pretrained)] = Field(
        None, description="Starting weights: a local file or folder, hf:org/name[@revision], timm:model.tag, "
                          "torchvision:Weights.NAME or torchaudio:BUNDLE (which forms a backbone accepts: its docs). "
                          "Loaded from the libraries' caches; downloads only with pretrained_download or "
                          "SELFSUP_ALLOW_DOWNLOADS=1.")
    pretrained_strict: bool = Field(
        True, description="Refuse weights that do not fit (unexpected keys, shape mismatches, missing encoder keys); "
                          "false loads whatever matches by name and shape and reports the rest.")
    pretrained_download: bool = Field(
        False, description="Allow downloading the pretrained weights into the library's cache (else only cached "
                           "weights load; the error says how to fetch them once).")
