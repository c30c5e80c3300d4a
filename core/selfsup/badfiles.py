"""Unreadable input files, by a data source's ``on_error`` policy: skipped and counted, or fatal.

Data sources that read files (images, audio, text) share one rule: a file that cannot be read is
either recorded in ``skipped`` (``(path, reason)`` pairs; one warning at the end of the scan says
how many) and the source goes on, or, with ``on_error = "raise"``, stops with an error naming the
file. ``read_first`` applies the rule at read time: the next readable file takes a bad one's place.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, TypeVar

T = TypeVar("T")


class BadFiles:
    """The skipped files of one source (``source`` names it in messages) under ``policy``."""

    def __init__(self, source: str, policy: Literal["skip", "raise"], what: str = "file"):
        if policy not in ("skip", "raise"):
            raise ValueError(f"{source}: on_error must be 'skip' or 'raise', not {policy!r}")
        self.source, self.policy, self.what = source, policy, what
        self.skipped: list[tuple[str, str]] = []

    def record(self, path: str | Path, exc: BaseException) -> None:
        """Count ``path`` as unreadable (``exc`` says why), or raise under ``policy = "raise"``."""
        reason = f"{type(exc).__name__}: {exc}"
        if self.policy == "raise":
            raise ValueError(f"{self.source}: unreadable {self.what} {path}: {reason}") from None
        self.skipped.append((str(path), reason))

    def warn(self, where: str | Path, stacklevel: int = 3) -> None:
        """One warning with the count and the first skipped file, if any were skipped."""
        if self.skipped:
            path, reason = self.skipped[0]
            warnings.warn(f"{self.source} {where}: skipped {len(self.skipped)} unreadable {self.what}(s), "
                          f"e.g. {path} ({reason})", stacklevel=stacklevel)

    def read_first(self, files: Sequence[Any], i: int, read: Callable[[Any], T]) -> tuple[int, T]:
        """``(j, read(files[j]))`` for the first ``j`` from ``i`` on (wrapping) whose read succeeds;
        the failures in between are recorded."""
        for offset in range(len(files)):
            j = (i + offset) % len(files)
            try:
                return j, read(files[j])
            except Exception as exc:  # noqa: BLE001 - any decoder error means "unreadable"
                self.record(files[j], exc)
        raise ValueError(f"{self.source}: none of the {len(files)} {self.what}s could be read")
