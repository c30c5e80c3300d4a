"""Embedding association tests: WEAT (Caliskan et al. 2017) on sentence embeddings (SEAT, May et al. 2019).

Caliskan, Bryson and Narayanan, "Semantics derived automatically from language corpora contain
human-like biases" (Science 356, 2017); May, Wang, Bordia, Bowman and Rudinger, "On Measuring
Social Biases in Sentence Encoders" (NAACL 2019, https://arxiv.org/abs/1903.10561).

With targets X, Y and attributes A, B (embeddings, compared by cosine):

* association of one item: ``s(w, A, B) = mean_{a in A} cos(w, a) - mean_{b in B} cos(w, b)``;
* test statistic: ``S(X, Y, A, B) = sum_{x in X} s(x, A, B) - sum_{y in Y} s(y, A, B)``;
* effect size: ``d = (mean_{x in X} s(x, A, B) - mean_{y in Y} s(y, A, B)) / std_{w in X u Y} s(w, A, B)``,
  the standard deviation with ``n - 1`` (as SEAT's code); d > 0: X goes with A and Y with B;
* one-sided permutation p-value: the share of the partitions ``(X_i, Y_i)`` of ``X u Y`` into sets of
  the sizes of X and Y with ``S(X_i, Y_i, A, B) >= S(X, Y, A, B)`` (the observed partition counts;
  Caliskan et al. write ``>``, which differs only by ties and that one partition). The unit that is
  permuted is the *word*: with SEAT a word moves between X and Y with all its template sentences
  (SEAT's code permutes sentences, which treats a word's sentences as independent and gives smaller
  p-values); 8 + 8 words make 12,870 partitions, few enough to enumerate. All partitions are enumerated when there
  are at most ``exact_limit`` of them (exact); otherwise ``permutations`` random partitions are drawn
  from a seeded generator and ``p = (1 + #{S_i >= S}) / (1 + permutations)`` (Phipson and Smyth 2010:
  never 0). The two-sided p-value uses ``|S_i - E| >= |S - E|`` around the permutation mean ``E``.
* bootstrap interval of d: words are resampled with replacement inside each of X, Y, A and B (a word
  brings all its template sentences, which are not independent), d recomputed; percentile interval.
  A resample whose targets all have the same association (std 0) has no d: it is counted
  (``bootstrap_undefined``) and left out.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

import numpy as np


def normalize(z: np.ndarray) -> np.ndarray:
    """Rows of ``z [N, D]`` scaled to unit length (float64)."""
    z = np.asarray(z, dtype=np.float64)
    return z / np.clip(np.linalg.norm(z, axis=1, keepdims=True), 1e-12, None)


def associations(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``s(w, A, B)`` of every row of ``w [N, D]`` against ``a [Na, D]`` and ``b [Nb, D]``: ``[N]``."""
    w, a, b = normalize(w), normalize(a), normalize(b)
    return (w @ a.T).mean(axis=1) - (w @ b.T).mean(axis=1)


def effect_size(sx: np.ndarray, sy: np.ndarray) -> float:
    """Caliskan's d from the associations of X (``sx [Nx]``) and Y (``sy [Ny]``); nan when they do not vary."""
    joint = np.concatenate([sx, sy])
    std = joint.std(ddof=1)
    if not std > 1e-15:
        return math.nan
    return float((sx.mean() - sy.mean()) / std)


def test_statistic(sx: np.ndarray, sy: np.ndarray) -> float:
    return float(sx.sum() - sy.sum())


def partitions(n: int, k: int) -> int:
    return math.comb(n, k)


def permutation_p(sx: np.ndarray, sy: np.ndarray, *, permutations: int = 100_000, seed: int = 0,
                  exact_limit: int = 200_000, chunk: int = 10_000) -> dict[str, Any]:
    """One- and two-sided permutation p-values of ``S(X, Y, A, B)`` (see the module docstring):
    ``{"p", "p_two_sided", "exact", "partitions", "samples"}``."""
    joint = np.concatenate([sx, sy]).astype(np.float64)
    n, k = len(joint), len(sx)
    total = joint.sum()
    observed = float(sx.sum())  # S = 2 * sum(X_i) - total, so sums of X_i order partitions like S
    mean_sum = k * total / n  # the permutation mean of sum(X_i)
    tol = 1e-9 * max(1.0, float(np.abs(joint).sum()))
    count = partitions(n, k)
    ge = two = 0
    if count <= exact_limit:
        combos = itertools.combinations(range(n), k)
        while True:
            block = np.array(list(itertools.islice(combos, chunk)), dtype=np.int64)
            if block.size == 0:
                break
            sums = joint[block].sum(axis=1)
            ge += int((sums >= observed - tol).sum())
            two += int((np.abs(sums - mean_sum) >= abs(observed - mean_sum) - tol).sum())
        return {"p": ge / count, "p_two_sided": two / count, "exact": True, "partitions": count, "samples": count}
    rng = np.random.default_rng(seed)
    done = 0
    while done < permutations:
        size = min(chunk, permutations - done)
        order = rng.permuted(np.tile(np.arange(n), (size, 1)), axis=1)[:, :k]  # [size, k] a random X_i each
        sums = joint[order].sum(axis=1)
        ge += int((sums >= observed - tol).sum())
        two += int((np.abs(sums - mean_sum) >= abs(observed - mean_sum) - tol).sum())
        done += size
    return {"p": (1 + ge) / (1 + permutations), "p_two_sided": (1 + two) / (1 + permutations), "exact": False,
            "partitions": count, "samples": permutations}


def weat(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray, *,
         owners: dict[str, Sequence[int]] | None = None, bootstrap: int = 2000, seed: int = 0,
         confidence: float = 0.95, permutations: int = 100_000, exact_limit: int = 200_000) -> dict[str, Any]:
    """The whole test on embeddings ``x [Nx, D]``, ``y``, ``a``, ``b``: effect size, statistic, permutation
    p-values and the bootstrap interval of the effect size. ``owners[k][i]`` is the word that row i of
    set k was made from (SEAT: a word's sentences); default: each row its own word."""
    rows = {"X": normalize(x), "Y": normalize(y), "A": normalize(a), "B": normalize(b)}
    owners = {k: np.asarray(owners[k]) if owners else np.arange(len(rows[k])) for k in rows}
    ta = rows["X"] @ rows["A"].T, rows["Y"] @ rows["A"].T  # [Nx, Na], [Ny, Na]
    tb = rows["X"] @ rows["B"].T, rows["Y"] @ rows["B"].T  # [Nx, Nb], [Ny, Nb]
    sx = ta[0].mean(axis=1) - tb[0].mean(axis=1)  # [Nx]
    sy = ta[1].mean(axis=1) - tb[1].mean(axis=1)  # [Ny]
    d = effect_size(sx, sy)
    groups = {k: [np.flatnonzero(owners[k] == w) for w in np.unique(owners[k])] for k in rows}
    # the permutation unit is the word: a word moves between X and Y with all its sentences
    cx = np.array([sx[g].sum() for g in groups["X"]])  # [words of X]
    cy = np.array([sy[g].sum() for g in groups["Y"]])  # [words of Y]
    test = permutation_p(cx, cy, permutations=permutations, seed=seed, exact_limit=exact_limit)

    rng = np.random.default_rng(seed + 1)
    boot, undefined = [], 0
    for _ in range(bootstrap):
        pick = {k: np.concatenate([groups[k][i] for i in rng.integers(0, len(groups[k]), len(groups[k]))])
                for k in rows}
        bx = ta[0][np.ix_(pick["X"], pick["A"])].mean(1) - tb[0][np.ix_(pick["X"], pick["B"])].mean(1)
        by = ta[1][np.ix_(pick["Y"], pick["A"])].mean(1) - tb[1][np.ix_(pick["Y"], pick["B"])].mean(1)
        value = effect_size(bx, by)
        if math.isnan(value):
            undefined += 1
        else:
            boot.append(value)
    tail = 100 * (1 - confidence) / 2
    ci = [float(v) for v in np.percentile(boot, [tail, 100 - tail])] if boot else [math.nan, math.nan]
    return {
        "effect_size": d, "effect_size_ci": ci, "statistic": test_statistic(sx, sy),
        "p": test["p"], "p_two_sided": test["p_two_sided"], "exact": test["exact"],
        "partitions": test["partitions"], "permutation_samples": test["samples"],
        "sizes": {k: int(len(groups[k])) for k in rows}, "items": {k: int(len(rows[k])) for k in rows},
        "bootstrap": bootstrap, "bootstrap_undefined": undefined, "seed": seed, "confidence": confidence,
    }
