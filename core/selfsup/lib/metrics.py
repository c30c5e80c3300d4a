"""Task metrics for fine-tuned heads: accuracy, precision / recall / F1 (macro, micro, weighted, per
class), the confusion matrix and the expected calibration error. Plain torch, on any device; the
definitions are scikit-learn's (``precision_recall_fscore_support``, ``confusion_matrix``), against
which they are tested, with ``zero_division = 0``: a class never predicted has precision 0, a class
absent from the targets recall 0, and such a class still counts in the macro mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def confusion_matrix(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[C, C]`` int64 counts: row = true class, column = predicted class."""
    index = targets.long() * num_classes + predictions.long()  # [N]
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass
class ClassReport:
    """Per-class precision, recall, F1 and support ``[C]``, plus the averages."""

    precision: torch.Tensor
    recall: torch.Tensor
    f1: torch.Tensor
    support: torch.Tensor
    confusion: torch.Tensor  # [C, C]

    def averages(self) -> dict[str, float]:
        """``accuracy`` and ``{precision,recall,f1}_{macro,micro,weighted}``."""
        support = self.support.double()
        total = support.sum().clamp_min(1)
        tp = self.confusion.diagonal().double().sum()
        out = {"accuracy": float(tp / total)}
        for name, values in (("precision", self.precision), ("recall", self.recall), ("f1", self.f1)):
            out[f"{name}_macro"] = float(values.double().mean())
            out[f"{name}_weighted"] = float((values.double() * support).sum() / total)
            out[f"{name}_micro"] = float(tp / total)  # single-label: micro P = micro R = micro F1 = accuracy
        return out


def class_report(targets: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> ClassReport:
    """Precision, recall and F1 of every class from single-label ``targets`` and ``predictions`` ``[N]``."""
    cm = confusion_matrix(targets, predictions, num_classes).double()  # [C, C]
    tp = cm.diagonal()
    predicted, support = cm.sum(0), cm.sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp_min(1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-12), torch.zeros_like(tp))
    return ClassReport(precision=precision, recall=recall, f1=f1, support=support.long(), confusion=cm.long())


def multilabel_report(targets: torch.Tensor, predictions: torch.Tensor) -> dict[str, float]:
    """Multi-label (``[N, C]`` 0/1) precision / recall / F1, macro (mean over labels), micro (pooled
    counts) and weighted (by each label's support), and the exact-match ratio (``subset_accuracy``)."""
    t, p = targets.bool(), predictions.bool()
    tp = (t & p).sum(0).double()  # [C]
    predicted, support = p.sum(0).double(), t.sum(0).double()
    out = {"subset_accuracy": float((t == p).all(1).double().mean())}
    prec = torch.where(predicted > 0, tp / predicted.clamp_min(1), torch.zeros_like(tp))
    rec = torch.where(support > 0, tp / support.clamp_min(1), torch.zeros_like(tp))
    f1 = torch.where(prec + rec > 0, 2 * prec * rec / (prec + rec).clamp_min(1e-12), torch.zeros_like(tp))
    weight = support / support.sum().clamp_min(1)
    for name, values in (("precision", prec), ("recall", rec), ("f1", f1)):
        out[f"{name}_macro"] = float(values.mean())
        out[f"{name}_weighted"] = float((values * weight).sum())
    micro_p = float(tp.sum() / predicted.sum()) if predicted.sum() > 0 else 0.0
    micro_r = float(tp.sum() / support.sum()) if support.sum() > 0 else 0.0
    out["precision_micro"], out["recall_micro"] = micro_p, micro_r
    out["f1_micro"] = 2 * micro_p * micro_r / (micro_p + micro_r) if micro_p + micro_r > 0 else 0.0
    return out


def expected_calibration_error(probabilities: torch.Tensor, targets: torch.Tensor, bins: int = 15) -> float:
    """ECE of the top-class confidence (Guo et al., On Calibration of Modern Neural Networks, ICML 2017):
    samples binned by confidence into ``bins`` equal-width bins on (0, 1]; the support-weighted mean
    of |accuracy - mean confidence| per bin."""
    confidence, predicted = probabilities.max(1)  # [N], [N]
    correct = (predicted == targets).double()
    # bin b holds confidences in (b/bins, (b+1)/bins]
    which = (confidence.double() * bins).ceil().clamp(1, bins).long() - 1  # [N]
    total = torch.zeros(bins, dtype=torch.float64, device=confidence.device)
    gap = total.index_add(0, which, correct) - total.index_add(0, which, confidence.double())  # sum(acc - conf)
    return float(gap.abs().sum() / max(1, confidence.numel()))


def regression_report(targets: torch.Tensor, predictions: torch.Tensor) -> dict[str, float]:
    """Mean squared and absolute errors and R^2 (1 - SSE / SST) of values ``[N]`` or ``[N, K]``
    (averaged over outputs, as scikit-learn's ``r2_score`` with ``uniform_average``)."""
    t, p = targets.double().reshape(len(targets), -1), predictions.double().reshape(len(predictions), -1)
    sse = (t - p).pow(2).sum(0)
    sst = (t - t.mean(0)).pow(2).sum(0)
    r2 = torch.where(sst > 0, 1 - sse / sst.clamp_min(1e-300), torch.where(sse > 0, 0.0, 1.0))
    return {"mse": float((t - p).pow(2).mean()), "mae": float((t - p).abs().mean()), "r2": float(r2.mean())}
