"""Where metrics go: ``metrics.jsonl`` (one JSON object per logged step or evaluation),
TensorBoard event files (when the ``tensorboard`` package is installed and ``train.tensorboard``
is on), and a rich progress bar with throughput and ETA on the terminal.

``metrics.jsonl`` is append-only: nothing rewrites it. Each record is appended with one write and
ends with a newline. When a writer opens it, a torn last line (an interrupted write) is cut off, a
cut to the end of the last complete line, with a warning. A resumed run appends a marker
``{"kind": "resume", "step": N}``; :func:`read_metrics` drops the records written before a marker
for steps after ``N`` (the resumed run writes them again), so the history it returns has no
repeated steps. A write that fails (disk full) never stops training: the record is dropped,
counted and warned about once, and the file is cut back to its last complete line.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

FILENAME = "metrics.jsonl"
RESUME = "resume"  # the ``kind`` of a resume marker
_MAX_LINE = 16 << 20  # a last line longer than this is not a record
_BLOCK = 1 << 16


class MetricsWriter:
    """Appends metrics to ``run_dir/metrics.jsonl`` and TensorBoard; rank 0 only.

    ``resume_step``: the step a resumed run restarts from; a resume marker is appended so that
    :func:`read_metrics` drops the older records of the steps after it. ``dropped`` counts the
    records that could not be written."""

    def __init__(self, run_dir: Path, *, tensorboard: bool, resume_step: int | None = None):
        self.path = Path(run_dir) / FILENAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dropped = 0
        self._failed = False
        self._cut_to: int | None = None  # where a failed write's partial line starts, until cut off
        self._fd: int | None = None
        try:
            cut = cut_torn_line(self.path)
            if cut:
                warnings.warn(f"{self.path}: its last line was torn (an interrupted write); cut off {cut} bytes "
                              f"to the end of the last complete record", stacklevel=2)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as err:
            self._warn(err)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
            except ImportError:
                warnings.warn(
                    "train.tensorboard is on but the tensorboard package is not installed "
                    "(pip install 'selfsup[tensorboard]'); logging to metrics.jsonl only",
                    stacklevel=2,
                )
        if resume_step is not None:
            self._append({"kind": RESUME, "step": int(resume_step), "time": round(time.time(), 3)})

    def write(self, kind: str, step: int, metrics: Mapping[str, float]) -> None:
        record = {"kind": kind, "step": step, "time": round(time.time(), 3)}
        record.update({k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()})
        self._append(record)
        if self._tb is not None:
            prefix = "eval/" if kind == "eval" else ""
            for key, value in metrics.items():
                self._tb.add_scalar(prefix + key, value, step)

    def _append(self, record: dict[str, Any]) -> None:
        """One record, one line, one write; on failure the partial line is cut off and the record dropped."""
        data = memoryview((json.dumps(record) + "\n").encode("utf-8"))
        if self._fd is None:
            self.dropped += 1
            return
        start = None
        try:
            if self._cut_to is not None:  # an earlier failed write left a partial line
                os.ftruncate(self._fd, self._cut_to)
                self._cut_to = None
            start = os.fstat(self._fd).st_size
            while data:
                written = os.write(self._fd, data)
                if written <= 0:
                    raise OSError(28, os.strerror(28))
                data = data[written:]
        except OSError as err:
            if start is not None:
                self._cut_to = start
                try:
                    os.ftruncate(self._fd, start)
                    self._cut_to = None
                except OSError:
                    pass
            self.dropped += 1
            self._warn(err)

    def _warn(self, err: OSError) -> None:
        """Warn about the first failure only; the count is reported at :meth:`close`."""
        if not self._failed:
            self._failed = True
            warnings.warn(f"{self.path}: cannot write metrics ({err}); records are dropped and counted while "
                          f"this lasts (training continues, checkpoints are written separately)", stacklevel=3)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.dropped:
            warnings.warn(f"{self.path}: {self.dropped} metric record(s) could not be written", stacklevel=2)
        if self._tb is not None:
            self._tb.close()


def cut_torn_line(path: Path) -> int:
    """Cut a torn last line off ``path`` (no trailing newline and not a complete JSON record, or not
    valid JSON at all): the file is truncated to the end of its last complete line, not rewritten.
    A last record that is complete but lacks its newline gets the newline. Returns the bytes cut."""
    path = Path(path)
    try:
        fh = open(path, "r+b")
    except FileNotFoundError:
        return 0
    with fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        fh.seek(size - 1)
        terminated = fh.read(1) == b"\n"
        end = size - 1 if terminated else size  # the last line is [start, end)
        start = _line_start(fh, end)
        if end - start <= _MAX_LINE:
            fh.seek(start)
            line = fh.read(end - start)
            if terminated and not line.strip():
                return 0
            if _is_record(line):
                if not terminated:
                    fh.write(b"\n")
                return 0
        fh.truncate(start)
        return size - start


def _line_start(fh: Any, end: int) -> int:
    """The offset just after the last newline before ``end`` (0 if there is none)."""
    pos = end
    while pos > 0:
        block = min(_BLOCK, pos)
        pos -= block
        fh.seek(pos)
        found = fh.read(block).rfind(b"\n")
        if found >= 0:
            return pos + found + 1
    return 0


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of ``run_dir/metrics.jsonl``, in order, as one history: records superseded by a
    resume marker (steps after the marker's, written before it) are dropped, and the markers are not
    returned. A torn last line (a write in progress or interrupted) is skipped; other unreadable lines
    are skipped with a warning naming them."""
    path = Path(run_dir) / FILENAME
    if not path.is_file():
        return []
    lines = path.read_bytes().split(b"\n")
    tail = lines.pop()  # the text after the last newline: empty, or a line still being written
    if tail.strip() and _is_record(tail):
        lines.append(tail)  # complete, only its newline is missing
    records: list[dict[str, Any]] = []
    bad: list[int] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            bad.append(number)
            continue
        if record.get("kind") == RESUME:
            resumed = _step_of(record)
            if resumed is not None:
                records = [r for r in records if (_step_of(r) is None or _step_of(r) <= resumed)]
            continue
        records.append(record)
    if bad:
        lines_text = ", ".join(map(str, bad[:5])) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        warnings.warn(f"{path}: skipped {len(bad)} unreadable line(s) (line {lines_text})", stacklevel=2)
    return records


def _step_of(record: dict[str, Any]) -> float | None:
    step = record.get("step")
    return step if isinstance(step, (int, float)) and not isinstance(step, bool) else None


class ProgressBar:
    """A rich progress bar (steps, samples/s, loss, ETA); silent when disabled or not a terminal."""

    def __init__(self, total: int, start: int, *, enabled: bool, description: str):
        self.enabled = enabled and sys.stderr.isatty()
        self._progress: Progress | None = None
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("loss {task.fields[loss]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._task = self._progress.add_task(description, total=total, completed=start, rate="", loss="-")
            self._progress.start()

    def update(self, step: int, *, loss: float | None = None, samples_per_s: float | None = None) -> None:
        if self._progress is None:
            return
        fields: dict[str, Any] = {}
        if loss is not None:
            fields["loss"] = f"{loss:.4f}"
        if samples_per_s is not None:
            fields["rate"] = f"{samples_per_s:,.0f} samples/s"
        self._progress.update(self._task, completed=step, **fields)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
