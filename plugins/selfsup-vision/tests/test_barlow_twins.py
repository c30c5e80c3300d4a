"""Barlow Twins: the loss against an entry-by-entry formula and lightly, conformance, and a shortened
quickstart that learns."""

from __future__ import annotations

import pytest
import torch

from selfsup.testing import TaskConformance, train_against_random_init
from selfsup_vision.tasks.barlow_twins import barlow_twins_loss


def barlow_twins_direct(z1: torch.Tensor, z2: torch.Tensor, lam: float) -> torch.Tensor:
    """The paper's equations, entry by entry: standardise each dimension over the batch (biased
    variance, as BatchNorm), C_ij = sum_b a_bi c_bj / N, loss = sum_i (1 - C_ii)^2 + lam sum_{i != j} C_ij^2."""
    z1, z2 = z1.double(), z2.double()
    n, p = z1.shape
    a = (z1 - z1.mean(0)) / (z1.var(0, unbiased=False) + 1e-5).sqrt()
    c = (z2 - z2.mean(0)) / (z2.var(0, unbiased=False) + 1e-5).sqrt()
    total = torch.zeros((), dtype=torch.float64)
    for i in range(p):
        for j in range(p):
            cij = sum(a[b, i] * c[b, j] for b in range(n)) / n
            total = total + ((1 - cij) ** 2 if i == j else lam * cij**2)
    return total


@pytest.mark.parametrize("lam", [5e-3, 0.5])
def test_loss_matches_the_direct_formula(lam):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    loss, c = barlow_twins_loss(z1, z2, lam)
    torch.testing.assert_close(loss.double(), barlow_twins_direct(z1, z2, lam), rtol=1e-5, atol=1e-6)
    assert c.shape == (5, 5)


@pytest.mark.parametrize("lam", [5e-3, 0.0051, 0.1])
def test_loss_matches_lightly(lam):
    lightly_loss = pytest.importorskip("lightly.loss")
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(32, 16, generator=g), torch.randn(32, 16, generator=g)
    expected = lightly_loss.BarlowTwinsLoss(lambda_param=lam)(z1, z2)
    torch.testing.assert_close(barlow_twins_loss(z1, z2, lam)[0], expected, rtol=1e-5, atol=1e-5)


def test_identical_decorrelated_views_give_zero_loss():
    z = torch.linalg.qr(torch.randn(64, 8))[0] * 8  # orthogonal columns: C = I after standardisation
    z = z - z.mean(0)
    loss, _ = barlow_twins_loss(z, z, 5e-3)
    assert loss.item() < 0.05


class TestBarlowTwinsConformance(TaskConformance):
    task = "barlow_twins"
    task_options = {"projection_hidden_dim": 32, "projection_dim": 16, "projection_layers": 2}
    data = ("digits", {"limit": 64})
    augment = [("multi_view", {"size": 8, "flip": 0.0})]
    backbone = ("small_cnn", {"widths": [8, 16]})
    batch_sizes = (2, 4)  # a cross-correlation over one sample is undefined
    bad_options = [{"off_diagonal_weight": -1.0}, {"projection_layers": 0}, {"projection_dim": 0}]
    inert_options = {"gather_distributed": "one process: there are no other ranks' embeddings to gather"}


@pytest.mark.slow
def test_shortened_quickstart_beats_random_init(tmp_path, one_thread):
    """barlow-twins-digits as shipped (20 epochs, 100 steps): held-out kNN must beat random init by 1.5
    points (measured, seed 0: 0.877 at random init, 0.916 trained). A 12-epoch run measured 0.903 when
    the test was written, but 0.880 after the environment was rebuilt (same code, same seed): too close
    to random init to test, so the test trains the recipe's full length."""
    trained, random_init = train_against_random_init(
        "barlow-twins-digits", tmp_path / "run", ["train.epochs=20", "train.warmup_steps=5"], evaluators=["knn"]
    )
    print(f"kNN accuracy: random init {random_init['knn/accuracy']:.4f}, trained {trained['knn/accuracy']:.4f}")
    assert trained["knn/accuracy"] > random_init["knn/accuracy"] + 0.015, (trained, random_init)
