"""The ``selfsup report`` command. Only click is imported here: matplotlib, optuna and torch load when
the command runs, so ``selfsup --help`` stays fast."""

from __future__ import annotations

import sys
from pathlib import Path

import click

EXTRAS = {"matplotlib": "report", "optuna": "sweep"}  # optional packages a report needs -> the extra with them


@click.command()
@click.argument("path", metavar="RUN_OR_SWEEP", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the HTML file. Default: RUN_OR_SWEEP/report.html.")
@click.option("--baseline", is_flag=True,
              help="When the run has no baseline.json, evaluate the random init first (as selfsup eval --baseline, "
                   "which saves it).")
@click.option("--device", default="cpu", show_default=True,
              help="Where the model runs for plugin sections (and --baseline): cpu, cuda, cuda:1, mps.")
def report(path: Path, out: Path | None, baseline: bool, device: str) -> None:
    """Write one self-contained HTML report of a run or a sweep: figures embedded as PNG, no script,
    nothing loaded from the network, so it opens offline and prints. See docs/reports.md."""
    from selfsup.recipe import RecipeError
    from selfsup.report import write_report

    try:
        written = write_report(path, out, baseline=baseline, device=device)
    except ModuleNotFoundError as err:
        top = (err.name or "").partition(".")[0]
        if top not in EXTRAS:
            raise
        click.echo(f"error: selfsup report needs {top}: pip install 'selfsup[{EXTRAS[top]}]'", err=True)
        sys.exit(2)
    except (RecipeError, FileNotFoundError, ValueError) as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(2)
    click.echo(f"wrote {written} ({written.stat().st_size / 1024:.0f} KiB)")
