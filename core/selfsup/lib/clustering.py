"""k-means in torch (CPU or GPU), shared by clustering tasks (DeepCluster, HuBERT targets) and
evaluators. Deterministic for a seed; empty clusters are re-seeded, never left empty."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class KMeansResult:
    """What :func:`kmeans` returns: centroids, each point's cluster, the inertia and re-seeded empties."""

    centroids: torch.Tensor  # [K, D]
    assignments: torch.Tensor  # [N] int64
    inertia: float  # sum of squared distances to the assigned centroid
    empty_reassigned: int  # empty clusters re-seeded over all iterations


def _sq_distances(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2, [N, K]
    return (x.pow(2).sum(1, keepdim=True) - 2 * x @ c.T + c.pow(2).sum(1)[None]).clamp_min_(0)


def _assign(x: torch.Tensor, c: torch.Tensor, chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    ids, dists = [], []
    for start in range(0, x.shape[0], chunk):
        d = _sq_distances(x[start : start + chunk], c)
        best, idx = d.min(dim=1)
        ids.append(idx)
        dists.append(best)
    return torch.cat(ids), torch.cat(dists)


def _plus_plus(x: torch.Tensor, k: int, g: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur and Vassilvitskii 2007): ``[k, D]`` centroids drawn from ``x``."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=g))
    centroids = [x[first]]
    closest = _sq_distances(x, x[first : first + 1]).squeeze(1)
    for _ in range(1, k):
        probs = closest / closest.sum() if closest.sum() > 0 else torch.full_like(closest, 1.0 / n)
        nxt = int(torch.multinomial(probs.cpu(), 1, generator=g))
        centroids.append(x[nxt])
        closest = torch.minimum(closest, _sq_distances(x, x[nxt : nxt + 1]).squeeze(1))
    return torch.stack(centroids)


def kmeans(
    x: torch.Tensor,  # [N, D]
    k: int,
    *,
    iters: int = 30,
    seed: int = 0,
    spherical: bool = False,
    tol: float = 1e-6,
    init: torch.Tensor | None = None,
) -> KMeansResult:
    """Lloyd's algorithm with k-means++ initialisation.

    ``spherical`` clusters L2-normalised points by cosine similarity (centroids renormalised).
    An empty cluster takes the point farthest from its centroid in the largest cluster (as in
    DeepCluster's and faiss' handling), so every cluster keeps at least one point. ``init``
    (``[k, D]``) starts Lloyd's iterations from these centroids instead of k-means++ (a previous
    clustering refined: cluster ``j`` keeps its id); ``seed`` is then unused.
    """
    if k < 1 or k > x.shape[0]:
        raise ValueError(f"k-means needs 1 <= k <= N, got k={k} for N={x.shape[0]}")
    x = x.float()
    if spherical:
        x = torch.nn.functional.normalize(x, dim=1)
    if init is not None:
        if tuple(init.shape) != (k, x.shape[1]):
            raise ValueError(f"init must be [k, D] = [{k}, {x.shape[1]}], got {list(init.shape)}")
        c = init.to(device=x.device, dtype=x.dtype)
        if spherical:
            c = torch.nn.functional.normalize(c, dim=1)
    else:
        c = _plus_plus(x, k, torch.Generator(device="cpu").manual_seed(seed))
    reassigned = 0
    prev = float("inf")
    for _ in range(iters):
        assign, dist = _assign(x, c)
        counts = torch.bincount(assign, minlength=k)
        for empty in torch.nonzero(counts == 0).flatten().tolist():
            # the point farthest from its centroid in the largest cluster founds the empty one
            largest = int(counts.argmax())
            members = torch.nonzero(assign == largest).flatten()
            far = members[dist[members].argmax()]
            assign[far], dist[far] = empty, 0.0
            counts[largest] -= 1
            counts[empty] += 1
            reassigned += 1
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        c = sums / counts[:, None].to(x.dtype)  # every count >= 1 now
        if spherical:
            c = torch.nn.functional.normalize(c, dim=1)
        inertia = float(dist.sum())
        if prev != float("inf") and abs(prev - inertia) <= tol * max(prev, 1e-12):  # (inf - x <= inf: not converged)
            break
        prev = inertia
    inertia = float(((x - c[assign]) ** 2).sum())
    return KMeansResult(centroids=c, assignments=assign, inertia=inertia, empty_reassigned=reassigned)


def normalized_mutual_info(a: torch.Tensor, b: torch.Tensor) -> float:
    """NMI of two labelings ``[N]`` (non-negative ids), with the arithmetic-mean normalisation of
    scikit-learn's default: ``I(a; b) / ((H(a) + H(b)) / 2)``; 1.0 when both are constant."""
    a, b = a.long().cpu(), b.long().cpu()
    ka, kb = int(a.max()) + 1, int(b.max()) + 1
    joint = torch.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb).double() / a.numel()  # [Ka, Kb]
    pa, pb = joint.sum(1), joint.sum(0)  # [Ka], [Kb]
    nz = joint > 0
    mi = (joint[nz] * (joint[nz] / (pa[:, None] * pb[None])[nz]).log()).sum()
    ha = -(pa[pa > 0] * pa[pa > 0].log()).sum()
    hb = -(pb[pb > 0] * pb[pb > 0].log()).sum()
    denom = (ha + hb) / 2
    return 1.0 if denom <= 0 else float((mi / denom).clamp(0, 1))


def purity(clusters: torch.Tensor, labels: torch.Tensor) -> float:
    """The share of samples ``[N]`` whose cluster's most frequent label is their own."""
    clusters, labels = clusters.long().cpu(), labels.long().cpu()
    kc, kl = int(clusters.max()) + 1, int(labels.max()) + 1
    counts = torch.bincount(clusters * kl + labels, minlength=kc * kl).reshape(kc, kl)  # [Kc, Kl]
    return float(counts.max(1).values.sum()) / clusters.numel()
