"""The run description handed to lifecycle hooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class RunInfo:
    """What a logger or callback plugin may want to know about the run."""

    name: str
    run_dir: Path
    recipe: dict[str, Any]
    device: str
    world_size: int
    total_steps: int
    step: int = 0
    parameters: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    round: int = 0  # the round being trained (0-based; [rounds]), 0 for a run without rounds
    rounds: int = 1  # rounds.count, 1 for a run without rounds
    stop_reason: str | None = None  # set through :meth:`request_stop`

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop this run after the current step (e.g. a sweep pruning a trial from
        ``on_evaluation_end``). The loop saves a checkpoint, skips the final evaluation and export,
        and ends with status ``"stopped"``; ``reason`` is printed and passed on as ``stop_reason``.
        The first request wins."""
        if self.stop_reason is None:
            self.stop_reason = str(reason) or "a plugin asked to stop"
