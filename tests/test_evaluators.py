"""kNN against a brute-force reference; the linear probe on separable and on random labels."""

from __future__ import annotations

import torch

from selfsup.builtins.knn import weighted_knn_predict
from selfsup.builtins.linear_probe import fit_linear_probe


def brute_force_knn(bank, labels, queries, k, t, classes):
    preds = []
    for q in queries:
        sims = torch.nn.functional.cosine_similarity(bank, q[None], dim=1)
        order = sims.argsort(descending=True)[:k]
        votes = torch.zeros(classes)
        for i in order:
            votes[labels[i]] += torch.exp(sims[i] / t)
        preds.append(int(votes.argmax()))
    return torch.tensor(preds)


def test_weighted_knn_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    bank, queries = torch.randn(300, 8, generator=g), torch.randn(50, 8, generator=g)
    labels = torch.randint(0, 5, (300,), generator=g)
    for k, t in [(1, 0.1), (20, 0.07), (200, 0.5)]:
        fast = weighted_knn_predict(bank, labels, queries, k=k, temperature=t, chunk=16)
        assert torch.equal(fast, brute_force_knn(bank, labels, queries, k, t, 5))


def test_k_larger_than_bank_is_clamped():
    bank, labels = torch.eye(3), torch.tensor([0, 1, 2])
    assert weighted_knn_predict(bank, labels, torch.eye(3), k=200, temperature=0.01).tolist() == [0, 1, 2]


def test_linear_probe_separates_separable_and_not_random_labels():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 10, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    head = fit_linear_probe(x[:300], y[:300], num_classes=2, weight_decay=1e-4, max_iter=100)
    assert (head(x[300:]).argmax(1) == y[300:]).float().mean() > 0.95
    noise = torch.randint(0, 2, (400,), generator=g)
    head = fit_linear_probe(x[:300], noise[:300], num_classes=2, weight_decay=1e-4, max_iter=100)
    assert (head(x[300:]).argmax(1) == noise[300:]).float().mean() < 0.65


def test_knn_raw_baseline_reports_input_space_accuracy(tmp_path):
    from selfsup.builtins.knn import KNNEvaluator
    from selfsup.builtins.options import KNNOptions
    from selfsup.components import EvalContext
    from selfsup.engine.evaluation import extract_inputs

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 2
    x = torch.randn(200, 4, generator=g) + 3 * labels[:, None]  # separable in input space
    source = [{"input": x[i], "label": labels[i]} for i in range(200)]
    fit, held = source[:150], source[150:]
    noise = {id(fit): (torch.randn(150, 4, generator=g), labels[:150]),
             id(held): (torch.randn(50, 4, generator=g), labels[150:])}
    ctx = EvalContext(name="knn", step=0, seed=0, device=torch.device("cpu"), backbone=None, data=held, fit_data=fit,
                      run_dir=tmp_path, batch_size=8, features=lambda s: noise[id(s)],
                      inputs=lambda s, key: extract_inputs(s, key, pipeline=[], seed=0))  # a list is a map-style source
    metrics = KNNEvaluator(KNNOptions(k=10, raw_baseline="input")).evaluate(ctx)
    assert metrics["raw_accuracy"] > 0.95 and metrics["accuracy"] < 0.8


def test_standardize_features_uses_the_fit_statistics_only():
    from selfsup.lib import standardize_features

    g = torch.Generator().manual_seed(0)
    fit = torch.randn(500, 4, generator=g, dtype=torch.float64) * torch.tensor([1.0, 5.0, 0.1, 2.0]) + 3.0
    val = torch.randn(7, 4, generator=g) + 100.0  # far from the fit set: it must not move the statistics
    fit_z, val_z = standardize_features(fit, val)
    assert fit_z.dtype == val_z.dtype == torch.float32
    torch.testing.assert_close(fit_z.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(fit_z.std(0), torch.ones(4), atol=1e-5, rtol=0)
    mean, std = fit.float().mean(0), fit.float().std(0)
    torch.testing.assert_close(val_z, (val - mean) / std)
    const = standardize_features(torch.ones(3, 2))[0]  # a constant dimension: std floored, no division by zero
    assert torch.isfinite(const).all() and not const.any()
