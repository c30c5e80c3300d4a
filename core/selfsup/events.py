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
