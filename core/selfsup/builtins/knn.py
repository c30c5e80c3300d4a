"""Weighted k-nearest-neighbour accuracy on frozen features.

Wu et al., Unsupervised Feature Learning via Non-Parametric Instance Discrimination, CVPR 2018
(the protocol DINO and solo-learn report): cosine similarity, the k nearest fit samples vote for
their class with weight exp(similarity / temperature).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.builtins.options import KNNOptions
from selfsup.components import EvalContext


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
    """Predicted class per query, ``[M]``."""
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


class KNNEvaluator:
    needs_fit_data = True

    def __init__(self, options: KNNOptions):
        self.k = options.k
        self.temperature = options.temperature
        self.raw_baseline = options.raw_baseline

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        bank, bank_labels = context.features(context.fit_data)
        queries, labels = context.features(context.data)
        if bank_labels is None or labels is None:
            raise ValueError(f"evaluator {context.name!r}: kNN needs data sources that give a 'label'")
        pred = weighted_knn_predict(bank, bank_labels, queries, k=self.k, temperature=self.temperature)
        metrics = {"accuracy": (pred == labels).float().mean().item()}
        if self.raw_baseline:
            raw_bank, _ = context.inputs(context.fit_data, self.raw_baseline)
            raw_queries, _ = context.inputs(context.data, self.raw_baseline)
            raw = weighted_knn_predict(raw_bank, bank_labels, raw_queries, k=self.k, temperature=self.temperature)
            metrics["raw_accuracy"] = (raw == labels).float().mean().item()
        return metrics
