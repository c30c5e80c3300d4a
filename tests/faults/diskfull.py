"""Full disks for the fault tests: a real size-limited folder (a tmpfs, when the tests run as root
and may mount), else the test is skipped; the simulated ENOSPC tests live beside it and always run."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


@contextlib.contextmanager
def small_tmpfs(path: Path, size_kib: int) -> Iterator[Path]:
    """Mount a ``size_kib`` KiB tmpfs at ``path`` for the block (skips the test where that is not allowed)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("a size-limited tmpfs needs root (the simulated ENOSPC tests cover this case)")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder: Path, name: str = "filler") -> Path:
    """Write zeros into ``folder/name`` until its file system is full; returns the file."""
    filler = folder / name
    block = b"\0" * 4096
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(block)
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
    return filler
