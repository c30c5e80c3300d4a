"""Weighted k-nearest-neighbour accuracy on frozen features.

Wu et al., Unsupervised Feature Learning via Non-Parametric Instance Discrimination, CVPR 2018
(the protocol DINO and solo-learn report): cosine similarity, the k nearest fit samples vote for
their class with weight exp(similarity / temperature): :func:`selfsup.lib.weighted_knn_predict`.
"""

from __future__ import annotations

from selfsup.builtins.options import KNNOptions
from selfsup.components import EvalContext
from selfsup.lib.probes import weighted_knn_predict  # noqa: F401 - the function is public (selfsup.lib)


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
