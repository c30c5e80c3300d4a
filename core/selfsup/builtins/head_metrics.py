"""Task metrics of a fine-tuned head on held-out data (``classification`` and ``regression``).

``classification`` (single-label, token and multi-label heads): accuracy; precision, recall and F1,
macro / micro / weighted (:mod:`selfsup.lib.metrics`); the expected calibration error and the
held-out loss. With ``report`` it writes, under ``<run>/reports/<evaluator>/step-XXXXXXXX/``, the
per-class table (``classes.json``, ``classes.csv``), the confusion matrix (``confusion.csv`` and
``confusion.png``; the picture needs matplotlib, ``pip install selfsup[plots]``).
``regression``: mean squared and absolute error and R^2, in the targets' units.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Any

import torch

from selfsup.builtins.options import HeadMetricsOptions
from selfsup.components import EvalContext
from selfsup.lib.data import to_device
from selfsup.lib.metrics import class_report, expected_calibration_error, multilabel_report, regression_report
from selfsup.lib.modules import frozen


def finetune_task(context: EvalContext, wanted: str | None) -> Any:
    """The task whose head is measured: ``wanted``, or the only task with a ``head``."""
    tasks = dict(context.tasks or {})
    with_head = [n for n, t in tasks.items() if hasattr(t, "head") and hasattr(t, "outputs")]
    if wanted is not None:
        if wanted not in with_head:
            raise ValueError(f"no finetune task {wanted!r} in the run (tasks with a head: {with_head or 'none'})")
        return tasks[wanted]
    if len(with_head) != 1:
        raise ValueError(f"set options.task: the run has {len(with_head)} tasks with a head ({with_head})")
    return tasks[with_head[0]]


def collect(context: EvalContext, task: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The head's outputs and the targets over ``context.data``, in order, on the CPU."""
    outputs, targets = [], []
    with frozen(context.backbone, task):
        for batch in context.batches(context.data):
            if task.head.target not in batch:
                raise ValueError(f"the data has no {task.head.target!r} (the head's target)")
            batch = to_device(batch, context.device)
            outputs.append(task.outputs(batch, context.backbone).float().cpu())
            targets.append(torch.as_tensor(batch[task.head.target]).cpu())
    if not outputs:
        raise ValueError("cannot evaluate on an empty data source")
    if task.head.problem == "token":  # positions padded to each batch's longest: flatten first
        flat = [(o.reshape(-1, o.shape[-1]), t.reshape(-1)) for o, t in zip(outputs, targets)]
        return torch.cat([o for o, _ in flat]), torch.cat([t for _, t in flat])
    return torch.cat(outputs), torch.cat(targets)


class Classification:
    def __init__(self, options: HeadMetricsOptions):
        self.options = options

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        task = finetune_task(context, self.options.task)
        head = task.head
        if head.problem not in ("single_label", "token", "multi_label"):
            raise ValueError(f"'classification' measures classification heads; this head solves {head.problem!r} "
                             f"(use the 'regression' evaluator)")
        outputs, targets = collect(context, task)
        with torch.no_grad():
            loss = float(head.loss(outputs, targets))
            predicted = head.predict(outputs)
        if head.problem == "multi_label":
            return {**multilabel_report(targets, predicted), "loss": loss}
        keep = targets.long() != -100  # token heads: positions without a label
        targets, predicted, outputs = targets.long()[keep], predicted[keep], outputs[keep]
        num_classes = outputs.shape[-1]
        report = class_report(targets, predicted, num_classes)
        probabilities = outputs.softmax(-1)
        metrics = {**report.averages(), "ece": expected_calibration_error(probabilities, targets,
                                                                          self.options.ece_bins), "loss": loss}
        if self.options.report:
            names = class_names(context.data, num_classes)
            write_report(context.run_dir / "reports" / context.name / f"step-{context.step:08d}", report, names,
                         metrics)
        return metrics


class Regression:
    def __init__(self, options: HeadMetricsOptions):
        self.options = options

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        task = finetune_task(context, self.options.task)
        if task.head.problem != "regression":
            raise ValueError(f"'regression' measures regression heads; this head solves {task.head.problem!r}")
        outputs, targets = collect(context, task)
        with torch.no_grad():
            loss = float(task.head.loss(outputs, targets))
            predicted = task.head.predict(outputs)
        return {**regression_report(targets.float().reshape(predicted.shape), predicted), "loss": loss}


def class_names(source: Any, num_classes: int) -> list[str]:
    """The source's ``classes`` (names by label) when it has them, else the label numbers."""
    names = getattr(source, "classes", None)
    if isinstance(names, (list, tuple)) and len(names) == num_classes:
        return [str(n) for n in names]
    return [str(i) for i in range(num_classes)]


def write_report(folder: Path, report: Any, names: list[str], metrics: dict[str, float]) -> None:
    """Per-class table (JSON, CSV), confusion matrix (CSV, PNG when matplotlib is installed)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"class": name, "precision": float(report.precision[i]), "recall": float(report.recall[i]),
             "f1": float(report.f1[i]), "support": int(report.support[i])} for i, name in enumerate(names)]
    (folder / "classes.json").write_text(json.dumps({"metrics": metrics, "classes": rows}, indent=2))
    with open(folder / "classes.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    confusion = report.confusion.tolist()
    with open(folder / "confusion.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["true \\ predicted", *names])
        writer.writerows([name, *row] for name, row in zip(names, confusion))
    try:
        plot_confusion(folder / "confusion.png", confusion, names)
    except ImportError:
        warnings.warn("confusion.png not written: matplotlib is not installed (pip install 'selfsup[plots]'); "
                      f"the matrix is in {folder / 'confusion.csv'}", stacklevel=2)


def plot_confusion(path: Path, confusion: list[list[int]], names: list[str]) -> None:
    from selfsup.builtins.confusion import confusion_figure

    confusion_figure(confusion, names).savefig(path, dpi=100)
