"""k-means: recovers separated clusters, is seeded, never leaves a cluster empty."""

from __future__ import annotations

import pytest
import torch

from selfsup.cluster import kmeans


def blobs(n_per=50, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, 5, generator=g) * 10
    x = torch.cat([c + torch.randn(n_per, 5, generator=g) for c in centres])
    return x, torch.arange(k).repeat_interleave(n_per)


def test_recovers_well_separated_clusters():
    x, y = blobs()
    res = kmeans(x, 4, seed=0)
    # each true cluster maps to exactly one found cluster
    for c in range(4):
        assert res.assignments[y == c].unique().numel() == 1
    assert res.assignments.unique().numel() == 4
    # inertia equals the definition
    assert res.inertia == pytest.approx(float(((x - res.centroids[res.assignments]) ** 2).sum()), rel=1e-4)


def test_seeded():
    x, _ = blobs(seed=1)
    a, b = kmeans(x, 6, seed=3), kmeans(x, 6, seed=3)
    assert torch.equal(a.assignments, b.assignments)


def test_empty_clusters_are_reassigned():
    # 3 distinct points and many duplicates: k=5 forces empty clusters during Lloyd iterations
    x = torch.cat([torch.zeros(30, 2), torch.ones(30, 2), torch.full((3, 2), 5.0)])
    res = kmeans(x, 5, seed=0, iters=10)
    assert torch.bincount(res.assignments, minlength=5).min() >= 1
    assert res.empty_reassigned >= 1


def test_spherical_and_bad_k():
    x, y = blobs()
    res = kmeans(x, 4, spherical=True)
    assert torch.allclose(res.centroids.norm(dim=1), torch.ones(4), atol=1e-5)
    with pytest.raises(ValueError, match="1 <= k <= N"):
        kmeans(x[:3], 5)


def test_runs_lloyd_iterations_until_converged():
    """Regression: the convergence test compared with the initial inertia ``inf`` (``inf - x <= tol * inf``
    is true), so every call stopped after one iteration and ``iters`` changed nothing."""
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    one, many = kmeans(x, 8, seed=0, iters=1), kmeans(x, 8, seed=0, iters=100)
    assert many.inertia < one.inertia
    assert not torch.equal(one.assignments, many.assignments)
    # converged: every point is assigned to its nearest final centroid
    nearest = torch.cdist(x, many.centroids).argmin(dim=1)
    assert torch.equal(nearest, many.assignments)
