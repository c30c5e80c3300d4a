"""The core's report section: the confusion matrix and per-class table of a fine-tuned classifier.

The ``classification`` evaluator writes them under ``<run>/reports/<evaluator>/step-XXXXXXXX/``
(``confusion.csv``, ``classes.json``) each time it runs with ``options.report`` on (the default);
the section shows the latest, so no model is loaded.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from selfsup.report_api import ReportRun, ReportSection


def sections(run: ReportRun) -> list[ReportSection] | None:
    """One section per ``classification`` evaluator of the run, or ``None`` when it has none."""
    keys = run.evaluators_of_type("classification")
    if not keys:
        return None
    return [section(run.path, key) for key in keys]


def section(run_dir: Path, key: str) -> ReportSection:
    from selfsup.builtins.confusion import confusion_figure

    title = f"Confusion matrix ({key})"
    folders = sorted(p for p in (run_dir / "reports" / key).glob("step-*") if (p / "confusion.csv").is_file())
    if not folders:
        return ReportSection(title, note=f"No confusion matrix yet: the '{key}' evaluator writes one under "
                                         f"reports/{key}/ each time it runs (with options.report = true).")
    folder = folders[-1]
    names, matrix = read_confusion(folder / "confusion.csv")
    try:
        classes = json.loads((folder / "classes.json").read_text()).get("classes", [])
    except (OSError, ValueError, AttributeError):
        classes = []
    step = int(folder.name.removeprefix("step-"))
    return ReportSection(title, figures=[confusion_figure(matrix, names, title=f"{key} at step {step}")],
                         captions=[f"rows: true class, columns: predicted ({sum(map(sum, matrix))} held-out samples; "
                                   f"reports/{key}/{folder.name}/confusion.csv)"],
                         table=[{k: row.get(k) for k in ("class", "precision", "recall", "f1", "support")}
                                for row in classes if isinstance(row, dict)])


def read_confusion(path: Path) -> tuple[list[str], list[list[int]]]:
    """Class names and counts of a ``confusion.csv`` (a header row of predicted names, then one row a true class)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    names = rows[0][1:]
    return names, [[int(v) for v in row[1:]] for row in rows[1:]]
