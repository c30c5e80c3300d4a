"""Held-out samples in order, in batches: what the text evaluators iterate over."""

from __future__ import annotations

from typing import Any, Iterator

from selfsup.train.data import is_iterable_source


def samples_of(source: Any, seed: int) -> Iterator[dict[str, Any]]:
    """A source's samples in order (a streaming source's epoch 0 on one rank), each with ``index``."""
    if is_iterable_source(source):
        for i, sample in enumerate(source.iterate(epoch=0, rank=0, world_size=1, seed=seed)):
            yield {"index": i, **sample}
    else:
        for i in range(len(source)):
            yield {"index": i, **source[i]}


def sample_batches(source: Any, batch_size: int, seed: int, max_batches: int | None = None) -> Iterator[list[dict[str, Any]]]:
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
