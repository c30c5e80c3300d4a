"""Where metrics go: ``metrics.jsonl`` (one JSON object per logged step or evaluation),
TensorBoard event files (when the ``tensorboard`` package is installed and ``train.tensorboard``
is on), and a rich progress bar with throughput and ETA on the terminal."""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class MetricsWriter:
    """Appends metrics to ``run_dir/metrics.jsonl`` and TensorBoard; rank 0 only."""

    def __init__(self, run_dir: Path, *, tensorboard: bool):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")
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

    def write(self, kind: str, step: int, metrics: Mapping[str, float]) -> None:
        record = {"kind": kind, "step": step, "time": round(time.time(), 3)}
        record.update({k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()})
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        if self._tb is not None:
            prefix = "eval/" if kind == "eval" else ""
            for key, value in metrics.items():
                self._tb.add_scalar(prefix + key, value, step)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


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
