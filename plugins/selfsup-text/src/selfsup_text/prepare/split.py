"""Step 4 of ``selfsup prepare``: deterministic shuffle and train/val/test split."""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")


def parse_fractions(spec: str) -> tuple[float, float, float]:
    """``"0.9,0.05,0.05"`` (or ``"0.9,0.1"``: no test split) as three fractions summing to 1."""
    try:
        values = [float(x) for x in spec.split(",")]
    except ValueError:
        raise ValueError(f"--split must be comma-separated numbers, got {spec!r}") from None
    if len(values) == 2:
        values.append(0.0)
    if len(values) != 3 or any(v < 0 for v in values) or abs(sum(values) - 1) > 1e-6 or values[0] <= 0:
        raise ValueError(f"--split needs 2 or 3 non-negative fractions summing to 1 with train > 0, got {spec!r}")
    return values[0], values[1], values[2]


def split_documents(n: int, fractions: tuple[float, float, float], seed: int) -> dict[str, np.ndarray]:
    """Indices of each split after a seeded permutation of ``range(n)``: ``val`` and ``test`` get
    ``round(n * fraction)`` documents each, ``train`` the rest (each keeps the shuffled order)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = int(round(n * fractions[1])), int(round(n * fractions[2]))
    n_train = n - n_val - n_test
    if n_train < 1 and n > 0:
        raise ValueError(f"{n} documents are too few for the split {fractions}")
    return {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
