"""Reading what a training run left in its run directory."""

from __future__ import annotations

import warnings
from pathlib import Path


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest intact checkpoint directory of a run (its files match the sizes and SHA-256 hashes
    recorded when it was written), or ``None``. Damaged newer checkpoints are skipped with a warning
    naming the file and the problem."""
    from selfsup.engine.checkpoint import find_resumable

    found, problems = find_resumable(Path(run_dir))
    for problem in problems:
        warnings.warn(f"damaged checkpoint skipped: {problem}", stacklevel=2)
    return found
