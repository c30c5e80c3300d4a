"""Measuring frozen features: a linear probe and a weighted k-nearest-neighbour classifier.

The core's ``linear_probe`` and ``knn`` evaluators are these functions on ``context.features``;
plugins call them for evaluators of their own (on pooled layers, on a subset, beside a baseline).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def standardize_features(fit: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``fit [N, D]`` and every tensor of ``others`` (``[M, D]``) as float32, standardised with the fit
    set's per-dimension mean and standard deviation (floored at 1e-6): statistics of the fit set only,
    so nothing of an evaluated set leaks into its features."""
    fit = fit.float()
    mean, std = fit.mean(0), fit.std(0).clamp_min(1e-6)
    return ((fit - mean) / std, *((x.float() - mean) / std for x in others))


def fit_linear_probe(
    x: torch.Tensor,  # [N, D]
    y: torch.Tensor,  # [N] int64
    *,
    num_classes: int,
    weight_decay: float,
    max_iter: int,
) -> torch.nn.Linear:
    """Multinomial logistic regression on ``x``, fitted with full-batch L-BFGS from zero (no randomness).

    The objective is the mean cross entropy plus ``weight_decay * ||W||^2``; returns the fitted
    ``Linear(D, num_classes)`` on ``x``'s device. Standardise ``x`` first for a well-conditioned fit."""
    head = torch.nn.Linear(x.shape[1], num_classes).to(x.device)
    with torch.no_grad():  # the problem is convex: start from zero, no RNG involved
        head.weight.zero_()
        head.bias.zero_()
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(head(x), y) + weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return head


def weighted_knn_predict(
    bank: torch.Tensor,  # [N, D] fit features
    bank_labels: torch.Tensor,  # [N] int64
    queries: torch.Tensor,  # [M, D]
    *,
    k: int,
    temperature: float,
    num_classes: int | None = None,
    chunk: int = 1024,
) -> torch.Tensor:
    """Predicted class per query ``[M]``: the ``k`` most cosine-similar bank items vote with weight ``exp(s / t)``.

    Wu et al., Unsupervised Feature Learning via Non-Parametric Instance Discrimination, CVPR 2018
    (the protocol DINO and solo-learn report)."""
    num_classes = num_classes or int(bank_labels.max()) + 1
    bank = F.normalize(bank.float(), dim=1)
    queries = F.normalize(queries.float(), dim=1)
    k = min(k, bank.shape[0])
    preds = []
    for start in range(0, queries.shape[0], chunk):
        sim = queries[start : start + chunk] @ bank.T  # [m, N]
        top_sim, top_idx = sim.topk(k, dim=1)  # [m, k]
        weights = (top_sim / temperature).exp()  # [m, k]
        votes = torch.zeros(sim.shape[0], num_classes, device=sim.device)
        votes.scatter_add_(1, bank_labels[top_idx], weights)  # [m, C]
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)
