"""``sts_spearman``: semantic textual similarity, as in SentEval/SimCSE's STS evaluation.

Conneau and Kiela, SentEval: An Evaluation Toolkit for Universal Sentence Representations, LREC
2018; Gao, Yao and Chen 2021 (SimCSE) report Spearman's correlation on STS. The backbone embeds every
text of the held-out source (``context.features``, i.e. ``backbone.embed`` with its pooling); for
each rated pair ``(i, j)`` of ``data.pairs`` the cosine similarity of the two embeddings is
compared with the human rating ``data.scores`` by Spearman's rank correlation
(``scipy.stats.spearmanr``). Reports ``spearman`` and ``pairs``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from selfsup.components import BuildContext, EvalContext
from selfsup_text.tasks.common import check_data


def pair_cosines(features: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """``[P]`` cosine similarities of ``features [N, D]`` rows ``pairs [P, 2]``."""
    z = F.normalize(features.float(), dim=1)
    return (z[pairs[:, 0]] * z[pairs[:, 1]]).sum(dim=1)


def _rated_pairs(data: Any, who: str) -> tuple[torch.Tensor, torch.Tensor]:
    pairs, scores = getattr(data, "pairs", None), getattr(data, "scores", None)
    if pairs is None or scores is None:
        raise ValueError(f"{who} needs a data source with rated pairs (`pairs` and `scores`, e.g. similarity_pairs)")
    pairs = torch.as_tensor(pairs, dtype=torch.long).reshape(-1, 2)
    scores = torch.as_tensor(scores, dtype=torch.float64).flatten()
    if len(pairs) != len(scores) or len(pairs) < 2:
        raise ValueError(f"{who}: {len(pairs)} pairs and {len(scores)} scores (need the same number, at least 2)")
    return pairs, scores


class STSSpearman:
    def __init__(self, options: Any):
        self.options = options

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        from scipy.stats import spearmanr

        pairs, scores = _rated_pairs(context.data, f"evaluator {context.name!r}")
        features, _ = context.features(context.data)  # [N, D]
        if int(pairs.max()) >= len(features):
            raise ValueError(f"evaluator {context.name!r}: a pair indexes text {int(pairs.max())} of {len(features)}")
        cosines = pair_cosines(features, pairs)
        rho = spearmanr(cosines.numpy(), scores.numpy()).statistic
        return {"spearman": float(rho), "pairs": float(len(pairs))}


def build(options: Any, context: BuildContext) -> STSSpearman:
    who = f"evaluator {context.name!r} (sts_spearman)"
    if context.data is not None:
        _rated_pairs(context.data, who)
        if context.backbone is not None and hasattr(context.backbone, "vocab_size"):
            check_data(context.backbone, context.data, who)
    return STSSpearman(options)
