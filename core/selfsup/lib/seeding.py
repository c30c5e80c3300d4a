"""Explicit, seeded randomness: one splitmix64-based scheme for per-sample and per-batch generators.

Randomness in selfsup never comes from global RNG state. A sample's augmentations draw from a
generator seeded by its coordinates ``(run seed, stream, epoch, sample index)``
(:func:`sample_generator`); a batch's random choices made in ``collate`` or ``forward`` (masks,
distractors, noise) draw from a generator seeded by ``(run seed, stream, step or epoch, the
batch's sample indices in order)`` (:func:`batch_generator`). A resumed run therefore draws what
an uninterrupted one draws, and DDP ranks (which hold different samples) draw differently.

All seeds are SplitMix64 (Steele, Lea and Flood, Fast Splittable Pseudorandom Number Generators,
OOPSLA 2014) chains: well mixed, so neighbouring coordinates give unrelated seeds. A ``stream``
separates users of the same coordinates: an int, or a name (hashed by :func:`stream_id`).
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_BATCH_DOMAIN = 0xD1B54A32D192ED03  # keeps batch seeds apart from sample seeds of the same coordinates


def splitmix64(x: int) -> int:
    """SplitMix64's output function: a well-mixed 64-bit hash of the integer ``x``."""
    x = (x + _GOLDEN) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _splitmix64_array(x: np.ndarray) -> np.ndarray:
    """``splitmix64`` on a uint64 array (numpy's uint64 arithmetic wraps modulo 2**64)."""
    x = x + np.uint64(_GOLDEN)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def stream_id(name: str) -> int:
    """A stable integer stream for a name (CRC-32 of its UTF-8 bytes), e.g. a task's recipe key."""
    return zlib.crc32(name.encode("utf-8"))


def _stream(stream: int | str) -> int:
    return stream_id(stream) if isinstance(stream, str) else int(stream) & _MASK64


def _epoch_key(seed: int, stream: int, epoch: int) -> int:
    return splitmix64(splitmix64(splitmix64(seed & _MASK64) ^ stream) ^ (epoch & _MASK64))


def sample_seed(seed: int, stream: int | str, epoch: int, index: int) -> int:
    """A well-mixed 63-bit seed from a sample's coordinates (a few µs)."""
    return splitmix64(_epoch_key(seed, _stream(stream), epoch) ^ (index & _MASK64)) >> 1


def sample_seeds(seed: int, stream: int | str, epoch: int, indices: Sequence[int]) -> list[int]:
    """:func:`sample_seed` for many indices of one epoch at once (a batch: about 0.1 µs per sample)."""
    key = np.uint64(_epoch_key(seed, _stream(stream), epoch))
    h = _splitmix64_array(np.asarray(indices, dtype=np.uint64) ^ key)
    return (h >> np.uint64(1)).tolist()


def sample_generator(seed: int, stream: int | str, epoch: int, index: int,
                     generator: torch.Generator | None = None) -> torch.Generator:
    """A CPU generator seeded from a sample's coordinates; ``generator`` is reseeded and reused if given."""
    import torch

    return (generator or torch.Generator()).manual_seed(sample_seed(seed, stream, epoch, index))


def _as_uint64(indices: Any) -> np.ndarray:
    if hasattr(indices, "detach"):  # a tensor
        indices = indices.detach().cpu().numpy()
    return np.asarray(indices, dtype=np.int64).reshape(-1).view(np.uint64)


def batch_seed(seed: int, stream: int | str, step: int, indices: Sequence[int] | Any) -> int:
    """A well-mixed 63-bit seed from a batch's coordinates: ``(seed, stream, step, indices)``.

    ``indices`` are the batch's sample indices (ints, an int array or tensor) in batch order; every
    one of them and its position count, so two batches with different indices (or the same indices
    in another order) get unrelated seeds, collisions being as rare as between random 63-bit numbers.
    ``step`` is the optimizer step, the epoch, or 0 when the indices alone should decide."""
    key = _epoch_key(seed, _stream(stream), step) ^ _BATCH_DOMAIN
    values = _as_uint64(indices)
    per_sample = _splitmix64_array(values ^ np.uint64(key))  # [B]
    positions = np.arange(values.size, dtype=np.uint64) * np.uint64(_GOLDEN)  # [B]: order matters
    total = int(_splitmix64_array(per_sample + positions).sum(dtype=np.uint64))  # wraps modulo 2**64
    return splitmix64(splitmix64(total ^ key) ^ values.size) >> 1


def batch_generator(seed: int, stream: int | str, step: int, indices: Sequence[int] | Any,
                    device: Any = "cpu") -> torch.Generator:
    """A generator (on ``device``) seeded by :func:`batch_seed`: a batch's own random draws."""
    import torch

    return torch.Generator(device=device).manual_seed(batch_seed(seed, stream, step, indices))
