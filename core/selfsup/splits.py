"""Deterministic train/validation splits, stratified when labels are known."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def split_indices(
    n: int,
    split: str,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    labels: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Sorted indices of ``split`` ("all", "train" or "val") among ``n`` items.

    With ``labels``, each class keeps the same validation fraction (stratified, like scikit-learn's
    ``train_test_split(stratify=...)``); the split depends only on ``seed``, never on global RNG.
    """
    if split == "all":
        return np.arange(n)
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'all', 'train' or 'val', got {split!r}")
    rng = np.random.default_rng(seed)
    if labels is None:
        groups = [np.arange(n)]
    else:
        labels = np.asarray(labels)
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    val = []
    for group in groups:
        perm = rng.permutation(group)
        val.append(perm[: int(round(len(group) * val_fraction))])
    val_idx = np.sort(np.concatenate(val)) if val else np.array([], dtype=np.int64)
    if split == "val":
        return val_idx
    mask = np.ones(n, dtype=bool)
    mask[val_idx] = False
    return np.flatnonzero(mask)
