"""``selfsup report RUN_OR_SWEEP``: one self-contained HTML file about a run or a sweep.

The file has no JavaScript and loads nothing: figures are PNGs (matplotlib) embedded as base64
``data:`` URIs, styles are inline, and a Content-Security-Policy forbids any other source, so it
opens offline, prints, and can be mailed or attached to an issue as it is.

Modules: :mod:`~selfsup.report.command` (the click command), :mod:`~selfsup.report.run_report` and
:mod:`~selfsup.report.sweep_report` (what each report holds), :mod:`~selfsup.report.records`
(metrics history -> series, groups, collapse warnings, evaluation table), :mod:`~selfsup.report.figures`
(matplotlib -> PNG), :mod:`~selfsup.report.html` (the page, every text escaped) and
:mod:`~selfsup.report.toml_text` (a recipe as TOML). Plugins add sections through the
``report_sections`` hook (:mod:`selfsup.report_api`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPORT_FILE = "report.html"


def write_report(path: str | Path, out: str | Path | None = None, *, baseline: bool = False, device: str = "cpu",
                 pm: Any = None) -> Path:
    """Write the report of ``path`` (a run directory, or a sweep directory holding ``sweep.json``)
    to ``out`` (default ``<path>/report.html``) and return where. ``baseline``: evaluate the
    random-init baseline first when the run has no ``baseline.json``; ``device``: where plugin
    sections run the model; ``pm``: the plugin manager (default: the process-wide one)."""
    path = Path(path)
    target = Path(out) if out is not None else path / REPORT_FILE
    if (path / "sweep.json").is_file():
        from selfsup.report.sweep_report import sweep_report

        text = sweep_report(path, target)
    elif (path / "recipe.json").is_file():
        from selfsup.plugins import get_plugin_manager
        from selfsup.report.run_report import run_report

        text = run_report(path, pm or get_plugin_manager(), baseline=baseline, device=device)
    else:
        raise FileNotFoundError(f"{path} is neither a selfsup run directory (recipe.json) nor a sweep (sweep.json)")
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, text)
    return target


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder renamed over it, so a
    reader never sees half a report (torch-free, unlike the checkpoint writer: a report of a run
    whose sections need no model never imports torch)."""
    import os

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")  # created with the umask's permissions
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
