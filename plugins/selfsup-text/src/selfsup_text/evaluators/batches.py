"""Held-out samples in order, in batches: what the text evaluators iterate over."""

from __future__ import annotations

from typing import Any, Iterator

from selfsup.lib import ordered


def samples_of(source: Any, seed: int) -> Iterator[dict[str, Any]]:
    """A source's samples in order (a streaming source's epoch 0 on one rank), each with ``index``."""
    return ordered(source, seed=seed, index=True)


def sample_batches(source: Any, batch_size: int, seed: int,
                   max_batches: int | None = None) -> Iterator[list[dict[str, Any]]]:
    """Lists of up to ``batch_size`` samples; at most ``max_batches`` of them."""
    chunk: list[dict[str, Any]] = []
    produced = 0
    for sample in samples_of(source, seed):
        chunk.append(sample)
        if len(chunk) == batch_size:
            yield chunk
            chunk, produced = [], produced + 1
            if max_batches is not None and produced >= max_batches:
                return
    if chunk:
        yield chunk
