"""``moving_mnist``: generated Moving MNIST-style sequences.

Srivastava, Mansimov and Salakhutdinov, "Unsupervised Learning of Video Representations using
LSTMs", ICML 2015: handwritten digits bouncing inside a canvas. Here the digits are scikit-learn's
1,797 8x8 digits (shipped with scikit-learn, so nothing is downloaded), upscaled to ``digit_size``
and moved with seeded straight-line trajectories that reflect at the canvas edges (or wrap), at a
constant speed or, with ``friction``, slowing down by a constant factor every frame (the one
option under which a sequence played backwards is not another valid sequence).

Each sample carries two labels: ``digit`` (the first digit's class: appearance) and ``motion`` (the
direction class of the first digit's initial velocity, ``k`` of ``directions`` evenly spaced angles,
0 = right, counter-clockwise: motion). The ``label`` option picks which is copied into ``"label"``,
so one recipe can probe appearance and motion with two evaluation data entries.

Generation is vectorised numpy (a few thousand 16-frame 32x32 sequences in about a second) and
cached in memory per process (keyed by the options that change pixels), sequences held as uint8
``[N, T, size, size]``. The draws depend on ``n`` (sequence ``i`` of ``n = 2000`` is not that of
``n = 500``); ``frames`` only lengthens the same trajectories.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from selfsup.components import BuildContext
from selfsup.lib import splitmix64, stream_id

SPLITS = ("train", "val", "test")
SPLIT_SHARES = (0.6, 0.2, 0.2)  # of each class of the 1,797 digit images


@lru_cache(maxsize=1)
def _digit_pool() -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """The 8x8 digits as float ``[1797, 8, 8]`` in [0, 1], their labels, and each split's image indices
    (a fixed stratified 60/20/20 split of every class)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images / 16.0).astype(np.float32)  # pixel values 0..16
    rng = np.random.default_rng(0)
    parts: list[list[np.ndarray]] = [[], [], []]
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(d.target == c))
        a = int(round(len(idx) * SPLIT_SHARES[0]))
        b = a + int(round(len(idx) * SPLIT_SHARES[1]))
        for part, chunk in zip(parts, (idx[:a], idx[a:b], idx[b:])):
            part.append(chunk)
    return images, d.target.astype(np.int64), tuple(np.sort(np.concatenate(p)) for p in parts)


@lru_cache(maxsize=8)
def _upscaled(digit_size: int) -> np.ndarray:
    """Every digit upscaled to ``digit_size`` (bilinear, antialiased) as uint8 ``[1797, d, d]``."""
    import torch.nn.functional as F

    images, _, _ = _digit_pool()
    x = torch.from_numpy(images)[:, None]  # [1797, 1, 8, 8]
    x = F.interpolate(x, size=(digit_size, digit_size), mode="bilinear", antialias=True, align_corners=False)
    return (x[:, 0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _reflect(p: np.ndarray, limit: float) -> np.ndarray:
    """Positions of a point moving freely, folded into [0, limit] by reflection at both ends."""
    if limit <= 0:
        return np.zeros_like(p)
    return limit - np.abs(np.mod(p, 2 * limit) - limit)


@lru_cache(maxsize=8)
def generate(split: str, n: int, frames: int, size: int, digit_size: int, digits: int, seed: int, directions: int,
             angle_jitter: float, speed: tuple[float, float], boundary: str,
             friction: float = 0.0) -> tuple[np.ndarray, ...]:
    """``(videos uint8 [n, frames, size, size], digit [n], motion [n], velocity float [n, 2] (dx, dy) of the
    first digit, position float [n, frames, 2] (x, y) of the first digit's top-left corner)``."""
    _, labels, parts = _digit_pool()
    pool = parts[SPLITS.index(split)]
    sprites = _upscaled(digit_size)
    rng = np.random.default_rng(splitmix64(splitmix64(seed) ^ stream_id(f"moving_mnist:{split}")))
    which = pool[rng.integers(len(pool), size=(n, digits))]  # [n, digits] digit image indices
    motion = rng.integers(directions, size=n)  # [n]
    angle = np.empty((n, digits))
    angle[:, 0] = 2 * math.pi * motion / directions + np.radians(rng.uniform(-angle_jitter, angle_jitter, size=n))
    angle[:, 1:] = rng.uniform(0, 2 * math.pi, size=(n, digits - 1))  # other digits: any direction
    v = rng.uniform(speed[0], speed[1], size=(n, digits))
    vel = np.stack([v * np.cos(angle), -v * np.sin(angle)], axis=-1)  # [n, digits, 2] (dx, dy); image y points down
    limit = size - digit_size
    start = rng.uniform(0, limit, size=(n, digits, 2))  # top-left corner (x, y)
    t = np.arange(frames, dtype=np.float64)[None, :, None, None]  # [1, T, 1, 1]
    # distance covered by frame t at a speed multiplied by (1 - friction) each frame: sum of r^k, k < t
    r = 1.0 - friction
    travelled = t if friction == 0 else (1 - r ** t) / (1 - r)  # [1, T, 1, 1]
    free = start[:, None] + vel[:, None] * travelled  # [n, T, digits, 2]
    pos = _reflect(free, limit) if boundary == "bounce" else np.mod(free, size)
    corner = np.rint(pos).astype(np.int64)  # [n, T, digits, 2]
    videos = np.zeros((n, frames, size, size), dtype=np.uint8)
    ar = np.arange(digit_size)
    ni = np.arange(n)[:, None, None, None]
    ti = np.arange(frames)[None, :, None, None]
    for j in range(digits):
        rows = (corner[:, :, j, 1, None] + ar) % size  # [n, T, d] (wrap; a no-op when bouncing)
        cols = (corner[:, :, j, 0, None] + ar) % size
        index = (ni, ti, rows[..., :, None], cols[..., None, :])  # broadcast to [n, T, d, d]
        videos[index] = np.maximum(videos[index], sprites[which[:, j]][:, None])  # overlapping digits: max
    return videos, labels[which[:, 0]], motion, vel[:, 0], pos[:, :, 0]


class MovingMNIST:
    """Samples ``{"video": float32 [T, C, size, size] in [0, 1], "label", "digit", "motion": int64}``."""

    def __init__(self, o: Any):
        self.options = o
        videos, digit, motion, self.velocity, self.position = generate(
            o.split, o.n, o.frames, o.size, o.digit_size, o.digits, o.seed, o.directions, o.angle_jitter,
            tuple(o.speed), o.boundary, o.friction)
        self.videos = torch.from_numpy(videos)  # [N, T, S, S] uint8, shared with the cache: never written
        self.digit = torch.as_tensor(digit, dtype=torch.long)
        self.motion = torch.as_tensor(motion, dtype=torch.long)
        self.labels = self.digit if o.label == "digit" else self.motion
        self.num_classes = 10 if o.label == "digit" else o.directions
        self.channels = o.channels

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict[str, Any]:
        x = self.videos[i].unsqueeze(1).float().div_(255)  # [T, 1, S, S]
        if self.channels == 3:
            x = x.repeat(1, 3, 1, 1)  # [T, 3, S, S]
        return {"video": x, "label": self.labels[i], "digit": self.digit[i], "motion": self.motion[i]}

    def targets(self, key: str) -> list[int] | None:
        """Labels without building samples (``selfsup.lib.scan_targets``)."""
        table = {"label": self.labels, "digit": self.digit, "motion": self.motion}
        return table[key].tolist() if key in table else None


def build(options: Any, context: BuildContext) -> MovingMNIST:
    return MovingMNIST(options)
