"""k-means on frozen features scored against labels (NMI, ARI).

(The weighted kNN and linear-probe evaluators are the core's ``knn`` and ``linear_probe``.)"""

from __future__ import annotations

from typing import Any

import torch

from selfsup.components import BuildContext, EvalContext
from selfsup.lib import kmeans


class KMeansNMI:
    """k-means (k = number of classes unless set) on L2-normalised features of ``data``; NMI and
    ARI between clusters and labels (scikit-learn's definitions)."""

    def __init__(self, o: Any):
        self.o = o

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

        feats, labels = context.features(context.data)
        if labels is None:
            raise ValueError(f"evaluator {context.name!r}: kmeans_nmi needs a data source with labels")
        k = self.o.clusters or int(labels.unique().numel())
        found = kmeans(torch.nn.functional.normalize(feats, dim=1), k, seed=self.o.seed).assignments
        y, c = labels.numpy(), found.numpy()
        return {"nmi": float(normalized_mutual_info_score(y, c)), "ari": float(adjusted_rand_score(y, c))}


def build_kmeans_nmi(o: Any, context: BuildContext) -> KMeansNMI:
    return KMeansNMI(o)
