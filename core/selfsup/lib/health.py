"""Training-health diagnostics of embeddings: collapse, effective rank, alignment, uniformity and
the usage of codes and clusters. Pure functions of tensors (no state, no gradients needed); the
training loop logs them as ``health/<task>/<metric>`` ([train.health], docs/health.md).

* ``embedding_std``: the per-dimension standard deviation of L2-normalised embeddings, the collapse
  measure of SimSiam (Chen and He, Exploring Simple Siamese Representation Learning, CVPR 2021,
  section 4.1), scaled by sqrt(D) so that 1.0 is an isotropic spread and 0.0 a single point.
* ``rankme``: the effective rank of the embeddings, exp of the entropy of their normalised singular
  values (Garrido, Balestriero, Najman and LeCun, RankMe: Assessing the Downstream Performance of
  Pretrained Self-Supervised Representations by Their Rank, ICML 2023; Roy and Vetterli 2007).
* ``alignment`` and ``uniformity``: Wang and Isola, Understanding Contrastive Representation Learning
  through Alignment and Uniformity on the Hypersphere, ICML 2020.
* ``code_perplexity``: exp of the entropy of the average code usage per codebook group, the
  codebook diversity measure of wav2vec 2.0 (Baevski et al., NeurIPS 2020).
* ``cluster_entropy``: the entropy of the cluster sizes, normalised by log k (1.0: equal clusters,
  0.0: one cluster holds everything), the failure DeepCluster (Caron et al. 2018) and SwAV's
  equipartition (Caron et al. 2020) guard against.

``collapse_warnings`` compares them with :class:`HealthThresholds`. Importing this module does not
import torch (the functions import it when called).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # pragma: no cover
    import torch


class CollapseWarning(UserWarning):
    """A task's embeddings, codes or clusters crossed a collapse threshold (:class:`HealthThresholds`)."""


@dataclass(frozen=True)
class HealthThresholds:
    """Below these values a run counts as collapsed (docs/health.md gives the measurements behind them).

    * ``std``: ``embedding_std`` (1.0 isotropic): healthy vision runs measure 0.8 at their end and
      dip to 0.047 in their first steps; a backbone collapsed to a point gives 0.0.
    * ``rankme``, ``rankme_fraction``: ``rankme`` below ``max(rankme, rankme_fraction * min(N, D))``
      (at most 1.28 with 256 probe samples): healthy runs measure 1.8 (multimodal-quickstart's
      shared-trunk SimCLR in its first steps) to 79, a collapse to a point or a line 1.0.
    * ``code_perplexity``: per codebook group (K at uniform use, 1 when one code takes everything):
      a healthy wav2vec2-quickstart measures 6, its random init 3.5.
    * ``cluster_entropy``: normalised entropy of the cluster sizes (1.0 equal sizes, 0.0 one cluster):
      a healthy swav-digits measures 0.65-0.88 after 20 steps.
    """

    std: float = 0.01
    rankme: float = 1.2
    rankme_fraction: float = 0.005
    code_perplexity: float = 1.5
    cluster_entropy: float = 0.1

    def rankme_limit(self, dim: int) -> float:
        """The rankme threshold for ``dim = min(N, D)`` (the largest rank the probe can show)."""
        return max(self.rankme, self.rankme_fraction * dim)


def _normalize(z: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    return F.normalize(z.float(), dim=-1)


def embedding_std(z: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``z [N, D]`` -> the standard deviation over the N samples of each dimension of the
    L2-normalised embeddings, times ``sqrt(D)``: ``"mean"`` (``[]``, the collapse measure), ``"min"``
    (``[]``, the least used dimension) or ``"none"`` (``[D]``).

    Embeddings spread isotropically on the sphere give ~1.0 per dimension, a collapse to one point
    0.0; a dimension near 0 while the mean is not is a dead (unused) dimension."""
    x = _normalize(z)  # [N, D]
    std = x.std(dim=0, unbiased=False) * math.sqrt(x.shape[1])  # [D]
    if reduction == "none":
        return std
    if reduction == "mean":
        return std.mean()
    if reduction == "min":
        return std.min()
    raise ValueError(f"reduction must be 'mean', 'min' or 'none', got {reduction!r}")


def rankme(z: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """``z [N, D]`` (raw, not normalised, as the paper) -> ``[]``: RankMe, ``exp(-sum_k p_k log p_k)``
    with ``p_k = sigma_k / ||sigma||_1 + eps`` over the singular values ``sigma [min(N, D)]``.

    From 1 (every embedding on one line) to ``min(N, D)`` (all singular values equal: orthonormal
    embeddings give exactly D); 0 for all-zero embeddings."""
    import torch

    sigma = torch.linalg.svdvals(z.double())  # [min(N, D)], descending
    total = sigma.sum()
    if total <= 0:
        return torch.zeros((), dtype=torch.float32, device=z.device)
    p = sigma / total + eps  # [min(N, D)]
    return torch.exp(-(p * torch.log(p)).sum()).float()


def alignment(z1: torch.Tensor, z2: torch.Tensor, alpha: float = 2) -> torch.Tensor:
    """``z1, z2 [N, D]`` (row i: two views of sample i) -> ``[]``: ``E ||f(x) - f(y)||^alpha`` over the
    positive pairs, on L2-normalised embeddings (Wang and Isola's ``align_loss``). 0: the views agree
    exactly; 4 (alpha 2): opposite. Lower is better aligned."""
    return (_normalize(z1) - _normalize(z2)).norm(p=2, dim=1).pow(alpha).mean()


def uniformity(z: torch.Tensor, t: float = 2) -> torch.Tensor:
    """``z [N, D]`` -> ``[]``: ``log E_{i != j} exp(-t ||f(x_i) - f(x_j)||^2)`` on L2-normalised
    embeddings (Wang and Isola's ``uniform_loss``, over the N(N-1)/2 pairs of ``torch.pdist``).
    0: every embedding the same point; lower (more negative) is more uniform, down to about -4
    (t = 2) for uniformly spread high-dimensional embeddings."""
    import torch

    x = _normalize(z)  # [N, D]
    if x.shape[0] < 2:
        raise ValueError("uniformity needs at least 2 embeddings")
    sq = torch.pdist(x, p=2).pow(2)  # [N(N-1)/2]
    return torch.logsumexp(-t * sq, dim=0) - math.log(sq.numel())  # log of the mean, without underflow


def _usage(probs_or_codes: torch.Tensor, num_codes: int) -> torch.Tensor:
    """Average code usage ``[G, K]`` (each row sums to 1) of codes or code probabilities."""
    import torch.nn.functional as F

    x = probs_or_codes
    if not x.is_floating_point():  # codes [N] or [N, G]
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= num_codes):
            raise ValueError(f"codes must lie in [0, {num_codes}), got [{int(x.min())}, {int(x.max())}]")
        x = F.one_hot(x.long(), num_codes).double()  # [N, K] or [N, G, K]
    elif x.shape[-1] != num_codes:
        raise ValueError(f"probabilities have {x.shape[-1]} entries in the last dimension, expected {num_codes}")
    x = x.double()
    if x.dim() == 2:
        x = x.unsqueeze(1)  # [N, 1, K]
    if x.dim() != 3 or x.shape[0] == 0:
        raise ValueError(f"expected codes [N] / [N, G] or probabilities [N, K] / [N, G, K] with N > 0, got "
                         f"{tuple(probs_or_codes.shape)}")
    usage = x.mean(dim=0)  # [G, K]
    return usage / usage.sum(dim=-1, keepdim=True).clamp_min(1e-300)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each row of ``p [..., K]``, with 0 log 0 = 0."""
    import torch

    return -torch.where(p > 0, p * torch.log(p.clamp_min(1e-300)), torch.zeros_like(p)).sum(dim=-1)


def code_perplexity(probs_or_codes: torch.Tensor, num_codes: int) -> torch.Tensor:
    """Codes ``[N]`` / ``[N, G]`` (ints in ``[0, num_codes)``) or code probabilities ``[N, K]`` /
    ``[N, G, K]`` -> ``[]``: exp of the entropy of the average code usage of each of the G codebook
    groups, averaged over the groups. ``num_codes`` when every code is used equally often, 1 when
    one code takes everything (wav2vec 2.0's codebook perplexity, per group)."""
    return _entropy(_usage(probs_or_codes, num_codes)).exp().mean().float()


def cluster_entropy(assignments: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster ids ``[N]`` in ``[0, k)`` -> ``(entropy, perplexity)``, both ``[]``: the entropy of the
    cluster sizes divided by ``log k`` (1.0: all k clusters equal; 0.0: one cluster holds every
    sample; 1.0 when k = 1) and its exp before normalising (the number of equally used clusters it
    is worth, from 1 to k)."""
    if assignments.is_floating_point() or assignments.dim() != 1:
        raise ValueError(f"cluster_entropy needs integer cluster ids [N], got {assignments.dtype} "
                         f"{tuple(assignments.shape)}")
    h = _entropy(_usage(assignments, k))[0]  # [] nats
    normalised = h / math.log(k) if k > 1 else h * 0 + 1.0
    return normalised.float(), h.exp().float()


_WHAT = {
    "std": "the embeddings collapsed to (nearly) a single point",
    "rankme": "the embeddings span (nearly) a single direction",
    "code_perplexity": "(nearly) one code of each codebook is used",
    "cluster_entropy": "(nearly) every sample falls into one cluster",
}


def collapse_warnings(metrics: Mapping[str, Any], dim: int, thresholds: HealthThresholds | None = None) -> list[str]:
    """Messages for the metrics (``std``, ``rankme``, ``code_perplexity``, ``cluster_entropy``; floats
    or 0-dim tensors; missing ones are skipped) below their threshold; ``dim``: ``min(N, D)`` of the
    embeddings, which sets the rankme threshold. An empty list: no collapse. NaN never warns."""
    t = thresholds or HealthThresholds()
    limits = {"std": t.std, "rankme": t.rankme_limit(dim), "code_perplexity": t.code_perplexity,
              "cluster_entropy": t.cluster_entropy}
    out = []
    for key, limit in limits.items():
        if key in metrics and float(metrics[key]) < limit:
            out.append(f"{key} = {float(metrics[key]):.4g} < {limit:.4g}: {_WHAT[key]}")
    return out
