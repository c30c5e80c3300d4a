"""Keeping a run's writes inside its run directory.

Every file a run writes (checkpoints, exports, metrics, evaluation results) goes through
:func:`inside`, which joins the parts onto the run directory and refuses a result that leaves it:
an absolute part, a ``..`` that climbs out, or a symbolic link (anywhere along the path, already
existing) that points elsewhere. Recipe validation already refuses names that could do this
(component keys are identifier-like, ``name`` is one folder name); this is the second line.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath


class UnsafePath(ValueError):
    """A path built for a run would lie outside its run directory."""


def inside(run_dir: str | os.PathLike[str], *parts: str | os.PathLike[str]) -> Path:
    """``run_dir / parts``, resolved (symbolic links followed), after checking that it stays inside
    ``run_dir`` (also resolved); raises :class:`UnsafePath` naming the part otherwise.

    ``inside(run, "export", key)`` is the export folder of backbone ``key``. With no parts it is the
    resolved run directory. The directories need not exist yet."""
    try:
        base = Path(run_dir).resolve()
        for part in parts:
            pure = PurePath(part)
            if pure.is_absolute() or pure.drive or pure.anchor:
                raise UnsafePath(f"{str(part)!r} is an absolute path; the run writes only inside {base}")
        target = base.joinpath(*parts).resolve()
    except UnsafePath:
        raise
    except (OSError, ValueError, RuntimeError) as exc:  # a NUL byte, a symlink loop, a name too long
        raise UnsafePath(f"cannot use {os.path.join(str(run_dir), *map(str, parts))!r} in the run: {exc}") from None
    if target != base and base not in target.parents:
        joined = os.path.join(*map(str, parts)) if parts else ""
        raise UnsafePath(f"{joined!r} leads outside the run directory {base} (to {target})")
    return target
