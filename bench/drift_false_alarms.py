"""Drift detection on real data: false-alarm and detection rates of ``selfsup.lib.drift`` on scikit-learn's
digits (1797 8x8 images, shipped with scikit-learn), for several window sizes and seeds.

Setup, per seed: a seeded split of the images into 1200 training and 597 held-out images; the
"embeddings" are the pixels standardised by the training split and projected by a fixed random
``64 x 32`` matrix. The reference is ``DriftReference.fit`` on the training embeddings (defaults:
32 projections, 10 bins, false_alarm 0.01, fit / calibration / test split 0.4 / 0.4 / 0.2) for the
window size. Streams are made of the held-out images: unchanged (the false-alarm rate), and shifted:
inverted (16 - x), Gaussian pixel noise (sd 2, clipped to 0..16), rotated 90 degrees, only digits 0
and 1; and harder ones: 10% of the images inverted or rotated, only digits 0-4, only digits 0-6. Each
rate is the share of ``--draws`` windows of the stream that cross the threshold for their size; a
window is drawn without replacement from the stream's held-out images (with replacement where they
are fewer than a window: the class subsets), then shifted (the noise and which 10% of the images
are drawn afresh for every window). Printed: Markdown tables, mean +- sd over the seeds, in percent;
the threshold, the false-alarm rate the fit measured on its own test part (absent when that part is
smaller than the window), the fit time and the cost of a single-row ``DriftMonitor.add``.
``--mmd`` adds the same table for a kernel-MMD baseline scored on the same windows (RBF kernel,
median bandwidth, 500 reference rows, threshold from bootstrap windows of the same calibration rows).

    .venv/bin/python bench/drift_false_alarms.py                     # seeds 0 1 2, windows 64 128 256
    .venv/bin/python bench/drift_false_alarms.py --seeds 0 --windows 256 --draws 200 --mmd
    .venv/bin/python bench/drift_false_alarms.py --weights 1 0 0 --windows 64 256 --draws 300  # ablation
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np

from selfsup.lib.drift import DriftMonitor, DriftReference

TRAIN = 1200


def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    return images.astype(np.float64), labels


def rotated(images: np.ndarray) -> np.ndarray:
    return np.rot90(images.reshape(-1, 8, 8), axes=(1, 2)).reshape(-1, 64)


def mix(images: np.ndarray, shifted: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """``images`` with a random ``share`` of them replaced by their ``shifted`` version."""
    out = images.copy()
    pick = rng.random(len(images)) < share
    out[pick] = shifted[pick]
    return out


Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def streams(held: np.ndarray, labels: np.ndarray) -> dict[str, tuple[np.ndarray, Transform]]:
    """Stream name -> (the held-out images its windows are drawn from, the shift applied to each window)."""
    same: Transform = lambda x, rng: x  # noqa: E731
    return {
        "in distribution (false alarms)": (held, same),
        "inverted": (held, lambda x, rng: 16.0 - x),
        "pixel noise sd 2": (held, lambda x, rng: np.clip(x + rng.normal(0.0, 2.0, x.shape), 0.0, 16.0)),
        "rotated 90": (held, lambda x, rng: rotated(x)),
        "only digits 0, 1": (held[labels <= 1], same),
        "10% inverted": (held, lambda x, rng: mix(x, 16.0 - x, 0.1, rng)),
        "10% rotated": (held, lambda x, rng: mix(x, rotated(x), 0.1, rng)),
        "only digits 0-4": (held[labels <= 4], same),
        "only digits 0-6": (held[labels <= 6], same),
    }


def windows(pool: np.ndarray, shift: Transform, window: int, draws: int, rng: np.random.Generator):
    """``draws`` windows of ``window`` images of ``pool`` (without replacement when it holds enough), shifted."""
    for _ in range(draws):
        yield shift(pool[rng.choice(len(pool), size=window, replace=len(pool) < window)], rng)


class MMD:
    """Baseline: squared MMD (unbiased within the window) with an RBF kernel against ``m`` reference rows,
    threshold from bootstrap windows of the calibration rows, as the drift reference's."""

    def __init__(self, fit_rows: np.ndarray, cal_rows: np.ndarray, window: int, n_windows: int,
                 rng: np.random.Generator, m: int = 500, false_alarm: float = 0.01):
        self.ref = fit_rows[rng.choice(len(fit_rows), size=min(m, len(fit_rows)), replace=False)]
        d2 = self._sq(self.ref, self.ref)
        self.gamma = 1.0 / float(np.median(d2[d2 > 0]))
        self.k_rr = float(np.exp(-self.gamma * d2).mean())
        null = [self.score(cal_rows[rng.integers(0, len(cal_rows), window)]) for _ in range(n_windows)]
        self.threshold = float(np.quantile(null, 1.0 - false_alarm, method="higher"))

    @staticmethod
    def _sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.maximum((a ** 2).sum(1)[:, None] - 2.0 * a @ b.T + (b ** 2).sum(1)[None, :], 0.0)

    def score(self, z: np.ndarray) -> float:
        n = len(z)
        k_zz = np.exp(-self.gamma * self._sq(z, z))
        k_zr = np.exp(-self.gamma * self._sq(z, self.ref)).mean()
        return float((k_zz.sum() - n) / (n * (n - 1)) + self.k_rr - 2.0 * k_zr)


def table(title: str, results: dict[str, dict[int, list[float]]], windows: list[int]) -> str:
    lines = [f"**{title}**", "", "| stream | " + " | ".join(f"window {w}" for w in windows) + " |",
             "|---|" + "---:|" * len(windows)]
    for name, by_window in results.items():
        cells = []
        for w in windows:
            values = [100.0 * v for v in by_window[w]]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.fmean(values):.1f} ± {sd:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--windows", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--draws", type=int, default=500, help="windows drawn per stream, seed and size")
    parser.add_argument("--mmd", action="store_true", help="also the kernel-MMD baseline")
    parser.add_argument("--weights", type=float, nargs=3, default=None, metavar=("PROJ", "RADIAL", "CELLS"),
                        help="DriftReference.fit weights (ablations; default: the library's)")
    parser.add_argument("--smoothing", type=float, default=None, help="DriftReference.fit smoothing (ablations)")
    args = parser.parse_args()

    options = {k: v for k, v in (("weights", args.weights), ("smoothing", args.smoothing)) if v is not None}
    images, labels = digits()
    matrix = np.random.default_rng(1234).standard_normal((64, 32)) / 8.0
    ours: dict[str, dict[int, list[float]]] = {}
    base: dict[str, dict[int, list[float]]] = {}
    info: dict[int, dict[str, list[float]]] = {w: {} for w in args.windows}
    for seed in args.seeds:
        order = np.random.default_rng(seed).permutation(len(images))
        train, held = order[:TRAIN], order[TRAIN:]
        mean, std = images[train].mean(0), images[train].std(0)
        std = np.where(std > 1e-6, std, 1.0)

        def features(x: np.ndarray) -> np.ndarray:
            return ((x - mean) / std) @ matrix

        ref_rows = features(images[train])
        for window in args.windows:
            rng = np.random.default_rng([seed, window])
            start = time.perf_counter()
            ref = DriftReference.fit(ref_rows, window=window, min_window=min(64, window), seed=seed, **options)
            fit_s = time.perf_counter() - start
            measured = ref.calibration["measured_false_alarm"][str(window)]
            for key, value in (("threshold", ref.threshold), ("fit s", fit_s),
                               ("fit's test-part false alarms %", None if measured is None else 100 * measured)):
                if value is not None:
                    info[window].setdefault(key, []).append(value)
            mmd = None
            if args.mmd:  # the same fit / calibration rows as the reference's (its seeded split)
                perm = np.random.default_rng(seed).permutation(len(ref_rows))
                n_fit, n_cal = ref.calibration["n_fit"], ref.calibration["n_calibration"]
                mmd = MMD(ref_rows[perm[:n_fit]], ref_rows[perm[n_fit:n_fit + n_cal]], window, 1000,
                          np.random.default_rng([seed, window, 1]))
            for name, (pool, shift) in streams(images[held], labels[held]).items():
                hits, mmd_hits = 0, 0
                for x in windows(pool, shift, window, args.draws, rng):
                    z = features(x)
                    hits += ref.score(z) > ref.threshold_for(window)
                    if mmd is not None:
                        mmd_hits += mmd.score(z) > mmd.threshold
                ours.setdefault(name, {}).setdefault(window, []).append(hits / args.draws)
                if mmd is not None:
                    base.setdefault(name, {}).setdefault(window, []).append(mmd_hits / args.draws)
            if seed == args.seeds[0]:  # the per-request cost of a monitor
                monitor = DriftMonitor(ref, every=32)
                rows = features(images[held])
                start = time.perf_counter()
                for _ in range(20):
                    for i in range(len(rows)):
                        monitor.add(rows[i])
                info[window]["monitor add, µs per single-row call"] = [
                    1e6 * (time.perf_counter() - start) / (20 * len(rows))]

    print(f"digits, {TRAIN} training / {len(images) - TRAIN} held-out images, seeds {args.seeds}, "
          f"{args.draws} windows per stream; % of windows over the threshold (mean ± sd over seeds)"
          + (f"; fit options {options}" if options else "") + "\n")
    print(table("selfsup.lib.drift (PSI of projections, radial statistics and k-means cells)", ours, args.windows))
    if args.mmd:
        print()
        print(table("baseline: kernel MMD (RBF, median bandwidth, 500 reference rows)", base, args.windows))
    print()
    for window in args.windows:
        parts = [f"{key} {statistics.fmean(values):.4g}" for key, values in info[window].items()]
        print(f"window {window}: " + ", ".join(parts))


if __name__ == "__main__":
    main()
