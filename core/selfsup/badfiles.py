"""Bad input data, by a data source's ``on_error`` policy: counted per kind and reported, or fatal.

Data sources that read files (images, audio, text) share one rule. When the source is built it
scans its files (:meth:`BadFiles.scan`); a file that cannot be read is either skipped and counted
(``on_error = "skip"``; one warning at the end of the build gives the counts and examples) or, with
``on_error = "raise"``, stops the build with an error naming the file. A file that breaks after the
scan is met at read time (:meth:`BadFiles.read_first`): under "skip" the next readable file takes
its place, counted as ``replaced`` and warned at once (to stderr, also from data-loader workers);
under "raise" the error names the file.

Events are counted by kind (:data:`KINDS`): ``skipped`` (files, samples or lines left out),
``replaced`` (reads that failed after the scan, served by the next readable sample), ``cut``
(over-long documents cut into several) and ``invalid_unicode`` (lines whose undecodable bytes or
lone surrogates were replaced by U+FFFD). Only ``skipped``/``replaced`` follow ``on_error``: cuts
and replaced characters keep every readable character, so they are counted under either policy.

A source exposes its ``BadFiles`` as the attribute ``bad_files``; the training loop writes its
:meth:`~BadFiles.counts` into the run's metrics. Counts made in a data-loader worker process stay
in that process; such events are always warned where they happen, naming the file.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Literal, Sequence, TypeVar

T = TypeVar("T")

#: The kinds of bad-data event a :class:`BadFiles` counts.
KINDS = ("skipped", "replaced", "cut", "invalid_unicode")
_EXAMPLES_PER_KIND = 5  # examples kept per kind
_MAX_LISTED = 10_000  # entries kept in ``skipped`` (the counts stay exact beyond it)
_LIVE_WARNINGS = 10  # read-time warnings per source and process before they are only counted


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class BadFiles:
    """The bad-data record of one source (``source`` names it in messages) under ``policy``.

    ``what`` names the unit skipped ("image", "audio file", "JSON line"); ``max_doc_chars`` (when the
    source cuts documents) is quoted in the warning. ``skipped`` lists ``(path, reason)`` of every
    unreadable file met, at build or at read time (the first 10,000)."""

    def __init__(self, source: str, policy: Literal["skip", "raise"], what: str = "file",
                 max_doc_chars: int | None = None):
        if policy not in ("skip", "raise"):
            raise ValueError(f"{source}: on_error must be 'skip' or 'raise', not {policy!r}")
        self.source, self.policy, self.what, self.max_doc_chars = source, policy, what, max_doc_chars
        self.skipped: list[tuple[str, str]] = []
        self._counts = dict.fromkeys(KINDS, 0)
        self._examples: list[tuple[str, str, str]] = []
        self._live_warnings = 0

    # ------------------------------------------------------------------ recording

    def record(self, path: str | Path, exc: BaseException | str, *, kind: str = "skipped") -> None:
        """Count ``path`` as unreadable (``exc`` says why) under ``kind`` ("skipped" or "replaced"),
        or raise a ``ValueError`` naming it under ``policy = "raise"``."""
        reason = exc if isinstance(exc, str) else _reason(exc)
        if self.policy == "raise":
            raise ValueError(f"{self.source}: unreadable {self.what} {path}: {reason}") from None
        if len(self.skipped) < _MAX_LISTED:
            self.skipped.append((str(path), reason))
        self.note(kind, path, reason)

    def note(self, kind: str, where: str | Path, reason: str, n: int = 1) -> None:
        """Count ``n`` events of ``kind`` at ``where`` (a file, ``file:line`` or ``shard:key``); never raises."""
        if kind not in self._counts:
            raise ValueError(f"unknown bad-data kind {kind!r}; known: {', '.join(KINDS)}")
        self._counts[kind] += n
        if sum(k == kind for k, _, _ in self._examples) < _EXAMPLES_PER_KIND:
            self._examples.append((kind, str(where), reason))

    def merge(self, other: "BadFiles") -> None:
        """Add the counts, examples and ``skipped`` entries of ``other`` (e.g. one file's events, kept
        apart until the file is known to be readable)."""
        for kind, n in other._counts.items():
            self._counts[kind] += n
        for kind, where, reason in other._examples:
            if sum(k == kind for k, _, _ in self._examples) < _EXAMPLES_PER_KIND:
                self._examples.append((kind, where, reason))
        self.skipped.extend(other.skipped[: max(0, _MAX_LISTED - len(self.skipped))])

    # ------------------------------------------------------------------ reporting

    def counts(self) -> dict[str, int]:
        """Events so far by kind, every kind of :data:`KINDS` present (zeros included)."""
        return dict(self._counts)

    def total(self) -> int:
        return sum(self._counts.values())

    def examples(self, n: int = 3, kind: str | None = None) -> list[tuple[str, str]]:
        """The first ``n`` recorded events as ``(where, reason)`` (only those of ``kind`` if given), in the
        order they were met; ``where`` is a file, ``file:line`` or ``shard:key``. Up to five are kept per kind."""
        return [(w, r) for k, w, r in self._examples if kind is None or k == kind][:n]

    def summary(self, where: str | Path = "") -> str:
        """One line with the count of each kind seen and an example of each ("" when nothing was seen)."""
        c, parts = self._counts, []
        unreadable = c["skipped"] + c["replaced"]
        if unreadable:
            path, reason = self.skipped[0] if self.skipped else self._first("skipped", "replaced")
            text = f"skipped {unreadable} unreadable {self.what}(s), e.g. {path} ({reason})"
            if c["replaced"]:
                text += f" ({c['replaced']} of them at read time, replaced by the next readable one)"
            parts.append(text)
        if c["cut"]:
            at, reason = self._first("cut")
            limit = f" of at most {self.max_doc_chars} characters" if self.max_doc_chars else ""
            parts.append(f"cut {c['cut']} over-long document(s) into pieces{limit}, e.g. {at} ({reason})")
        if c["invalid_unicode"]:
            at, reason = self._first("invalid_unicode")
            n = c["invalid_unicode"]
            parts.append(f"replaced invalid Unicode with U+FFFD in {n} line(s), e.g. {at} ({reason})")
        if not parts:
            return ""
        return f"{self.source} {where}".rstrip() + ": " + "; ".join(parts)

    def _first(self, *kinds: str) -> tuple[str, str]:
        return next((w, r) for k, w, r in self._examples if k in kinds)

    def warn(self, where: str | Path, stacklevel: int = 3) -> None:
        """One warning with every count and an example of each, if anything was counted."""
        text = self.summary(where)
        if text:
            warnings.warn(text, stacklevel=stacklevel)

    def warn_now(self, kind: str, where: str | Path, reason: str) -> None:
        """Count one event of ``kind`` and warn about it at once, naming ``where`` (for events met while
        streaming or reading; in a data-loader worker the warning on stderr is the only report)."""
        self.note(kind, where, reason)
        self._live(f"{self.source}: {kind}: {where}: {reason}")

    def _live(self, message: str) -> None:
        """Warn now: the first few per source and process, then one note that the rest are only counted.

        In a child process (a data-loader worker) the message is written to stderr directly: its counts
        never reach the parent, and warning filters or a recording ``catch_warnings`` inherited from the
        parent must not swallow it."""
        self._live_warnings += 1
        if self._live_warnings > _LIVE_WARNINGS:
            return
        messages = [f"{message} (pid {os.getpid()})"]
        if self._live_warnings == _LIVE_WARNINGS:
            messages.append(f"{self.source}: further bad-data events in pid {os.getpid()} are counted, not shown")
        for text in messages:
            if multiprocessing.parent_process() is not None:
                print(f"warning: {text}", file=sys.stderr, flush=True)
            else:
                warnings.warn(text, stacklevel=4)

    # ------------------------------------------------------------------ scanning and reading

    def scan(self, items: Sequence[T], check: Callable[[T], Any], *, threads: int | None = None) -> list[T]:
        """The items whose ``check(item)`` returns, in order; the others are recorded as skipped (under
        "raise" the first failing item, in order, raises). Checks run in a thread pool (file I/O and
        decoders release the GIL); the result does not depend on the number of threads."""
        def attempt(item: T) -> BaseException | None:
            try:
                check(item)
            except Exception as exc:  # noqa: BLE001 - any decoder error means "unreadable"
                return exc
            return None

        threads = threads or min(8, os.cpu_count() or 1)
        if threads <= 1 or len(items) < 32:
            outcomes = map(attempt, items)
            return [item for item, exc in zip(items, outcomes) if not self._failed(item, exc)]
        pool = ThreadPoolExecutor(threads, thread_name_prefix=f"scan-{self.source}")
        try:
            return [item for item, exc in zip(items, pool.map(attempt, items)) if not self._failed(item, exc)]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _failed(self, item: Any, exc: BaseException | None) -> bool:
        if exc is None:
            return False
        self.record(item, exc)
        return True

    def read_first(self, files: Sequence[Any], i: int, read: Callable[[Any], T]) -> tuple[int, T]:
        """``(j, read(files[j]))`` for the first ``j`` from ``i`` on (wrapping) whose read succeeds.

        Each failure in between is recorded as ``replaced`` and warned at once, naming the file (under
        "raise" the first failure raises)."""
        for offset in range(len(files)):
            j = (i + offset) % len(files)
            try:
                return j, read(files[j])
            except Exception as exc:  # noqa: BLE001 - any decoder error means "unreadable"
                self.record(files[j], exc, kind="replaced")
                self._live(f"{self.source}: unreadable {self.what} {files[j]} at read time ({_reason(exc)}); "
                           "the next readable one is used instead")
        raise ValueError(f"{self.source}: none of the {len(files)} {self.what}s could be read")
