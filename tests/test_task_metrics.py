"""Task metrics (selfsup.lib.metrics) against scikit-learn, and the core's heads' losses and decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from selfsup.components import BuildContext
from selfsup.lib.metrics import (
    class_report,
    confusion_matrix,
    expected_calibration_error,
    multilabel_report,
    regression_report,
)

sk = pytest.importorskip("sklearn.metrics")


def _single_label(seed: int, n: int = 300, classes: int = 6):
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, classes - 1, (n,), generator=g)  # the last class never occurs in the targets
    predictions = torch.where(torch.rand(n, generator=g) < 0.6, targets, torch.randint(0, classes, (n,), generator=g))
    predictions[predictions == 2] = 3  # class 2 is never predicted
    return targets, predictions, classes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_class_report_matches_scikit_learn(seed):
    targets, predictions, classes = _single_label(seed)
    report = class_report(targets, predictions, classes)
    labels = list(range(classes))
    p, r, f, s = sk.precision_recall_fscore_support(targets, predictions, labels=labels, zero_division=0)
    assert torch.allclose(report.precision, torch.tensor(p, dtype=torch.float64))
    assert torch.allclose(report.recall, torch.tensor(r, dtype=torch.float64))
    assert torch.allclose(report.f1, torch.tensor(f, dtype=torch.float64))
    assert report.support.tolist() == s.tolist()
    assert report.confusion.tolist() == sk.confusion_matrix(targets, predictions, labels=labels).tolist()
    averages = report.averages()
    assert averages["accuracy"] == pytest.approx(sk.accuracy_score(targets, predictions))
    for average in ("macro", "micro", "weighted"):
        p, r, f, _ = sk.precision_recall_fscore_support(targets, predictions, labels=labels, average=average,
                                                        zero_division=0)
        assert averages[f"precision_{average}"] == pytest.approx(p)
        assert averages[f"recall_{average}"] == pytest.approx(r)
        assert averages[f"f1_{average}"] == pytest.approx(f)


def test_confusion_matrix_rows_are_true_classes():
    cm = confusion_matrix(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 0]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


@pytest.mark.parametrize("seed", [0, 1])
def test_multilabel_report_matches_scikit_learn(seed):
    g = torch.Generator().manual_seed(seed)
    targets = (torch.rand(200, 5, generator=g) < 0.3).long()
    predictions = torch.where(torch.rand(200, 5, generator=g) < 0.7, targets, 1 - targets)
    predictions[:, 4] = 0  # a label never predicted
    out = multilabel_report(targets, predictions)
    assert out["subset_accuracy"] == pytest.approx(sk.accuracy_score(targets, predictions))
    for average in ("macro", "micro", "weighted"):
        p, r, f, _ = sk.precision_recall_fscore_support(targets, predictions, average=average, zero_division=0)
        assert (out[f"precision_{average}"], out[f"recall_{average}"], out[f"f1_{average}"]) == pytest.approx((p, r, f))


def test_regression_report_matches_scikit_learn():
    g = torch.Generator().manual_seed(0)
    targets = torch.randn(100, 3, generator=g)
    predictions = targets + 0.3 * torch.randn(100, 3, generator=g)
    out = regression_report(targets, predictions)
    assert out["mse"] == pytest.approx(sk.mean_squared_error(targets, predictions))
    assert out["mae"] == pytest.approx(sk.mean_absolute_error(targets, predictions))
    assert out["r2"] == pytest.approx(sk.r2_score(targets, predictions))
    constant = torch.ones(10)
    assert regression_report(constant, constant)["r2"] == sk.r2_score(constant, constant) == 1.0


def test_expected_calibration_error_against_its_definition():
    g = torch.Generator().manual_seed(0)
    probabilities = torch.softmax(3 * torch.randn(500, 4, generator=g), dim=1)
    targets = torch.randint(0, 4, (500,), generator=g)
    confidence, predicted = probabilities.max(1)
    expected = 0.0
    for b in range(10):  # bins (b/10, (b+1)/10]
        inside = (confidence > b / 10) & (confidence <= (b + 1) / 10)
        if inside.any():
            gap = (predicted[inside] == targets[inside]).double().mean() - confidence[inside].double().mean()
            expected += inside.sum().item() / 500 * abs(gap.item())
    assert expected_calibration_error(probabilities, targets, bins=10) == pytest.approx(expected)
    perfect = F.one_hot(targets, 4).double()  # confident and right
    assert expected_calibration_error(perfect, targets) == pytest.approx(0.0)


class _Labels:
    """A data source of labels only (what a head scans to size itself)."""

    def __init__(self, labels, key="label"):
        self.rows = [{key: v} for v in labels]

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


class _Backbone:
    output_dim = 8


def _head(name, options, data):
    return BuildContext(name="t", backbone=_Backbone(), data=data).build("heads", name, options)


def test_classification_head_sizes_itself_and_balances_classes():
    from sklearn.utils.class_weight import compute_class_weight

    labels = [0] * 30 + [1] * 10 + [2] * 5
    head = _head("classification", {"class_weights": "balanced"}, _Labels(labels))
    assert head.num_classes == 3 and head(torch.randn(4, 8)).shape == (4, 3)
    expected = compute_class_weight("balanced", classes=np.array([0, 1, 2]), y=np.array(labels))
    assert torch.allclose(head.class_weights.double(), torch.tensor(expected), atol=1e-6)
    logits, targets = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    reference = F.cross_entropy(logits, targets, weight=torch.tensor(expected, dtype=torch.float32))
    assert head.loss(logits, targets) == pytest.approx(reference.item())
    assert head.predict(logits).tolist() == logits.argmax(1).tolist()
    with pytest.raises(ValueError, match="num_classes is 2"):
        _head("classification", {"num_classes": 2, "class_weights": "balanced"}, _Labels(labels))
    with pytest.raises(ValueError, match="3 values for 2 classes"):
        _head("classification", {"num_classes": 2, "class_weights": [1.0, 2.0, 3.0]}, None)


def test_multilabel_and_regression_heads():
    vectors = [torch.tensor([1.0, 0.0, 0.0]), torch.tensor([1.0, 1.0, 0.0]), torch.tensor([1.0, 0.0, 1.0]),
               torch.tensor([0.0, 0.0, 1.0])]
    head = _head("multilabel", {"pos_weight": "balanced"}, _Labels(vectors, "labels"))
    assert head.num_labels == 3 and head.pos_weight.tolist() == pytest.approx([1 / 3, 3.0, 1.0])
    logits = torch.tensor([[3.0, -3.0, 0.1]])
    assert head.predict(logits).tolist() == [[1, 0, 1]]
    targets = torch.tensor([[1.0, 0.0, 0.0]])
    reference = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=head.pos_weight)
    assert head.loss(logits, targets) == pytest.approx(reference.item())

    values = [torch.tensor(v) for v in (10.0, 20.0, 30.0)]
    reg = _head("regression", {}, _Labels(values, "target"))
    assert reg.mean.item() == pytest.approx(20.0) and reg.std.item() == pytest.approx(10.0)
    assert reg.predict(torch.tensor([[1.0]])).item() == pytest.approx(30.0)
    assert reg.loss(torch.tensor([[1.0]]), torch.tensor([30.0])).item() == pytest.approx(0.0)
