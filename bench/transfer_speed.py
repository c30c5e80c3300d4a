"""What handing a batch from a data-loader worker to the training process costs: torch's shared
memory for every tensor against ``selfsup.engine.transfer.ByValue`` (small tensors pickled through
the worker's pipe), by batch size and for a batch shaped like the digits recipes'.

Two workers, persistent, prefetching; before each ``next`` the main process sleeps ``--slack``
seconds, so the batch is ready and what is timed is its transfer alone (receiving, unpickling,
mapping shared memory). The batch is made of zeros: no augmentation work. Median of ``--batches``
batches per cell, the two ways alternating per size. The sizes past the thresholds
(``TENSOR_BYTES``, ``BATCH_BYTES``) are measured with every tensor forced by value, to show where
the pipe stops paying.

    nice -n 10 .venv/bin/python bench/transfer_speed.py   # defaults: --batches 40 --slack 0.03
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

import torch
from machine import machine  # bench/machine.py
from torch.utils.data import DataLoader, Dataset, default_collate

from selfsup.engine import transfer


class Zeros(Dataset):
    """Sample ``i``: ``make()``, the same for every index."""

    def __init__(self, make: Callable[[], Any]):
        self.make = make

    def __len__(self) -> int:
        return 10**6

    def __getitem__(self, index: int) -> Any:
        return self.make()


def digits_sample() -> dict[str, Any]:
    """One sample of simclr-digits after its augmentation: two 8 x 8 views, the image, label, index."""
    return {"views": torch.zeros(2, 1, 8, 8), "image": torch.zeros(1, 8, 8), "label": 3, "index": 7}


def median_ms(make: Callable[[], Any], batch_size: int, by_value: bool, batches: int, slack: float) -> float:
    collate = transfer.ByValue(default_collate) if by_value else default_collate
    loader = DataLoader(Zeros(make), batch_size=batch_size, num_workers=2, collate_fn=collate,
                        persistent_workers=True)
    it = iter(loader)
    next(it)
    times = []
    for _ in range(batches):
        time.sleep(slack)
        start = time.perf_counter()
        next(it)
        times.append(time.perf_counter() - start)
    it._shutdown_workers()
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--slack", type=float, default=0.03)
    args = parser.parse_args()
    print(machine(), flush=True)
    print(f"\nmedian ms per batch of {args.batches}\n\n| batch | bytes | shared memory | by value | ratio |\n"
          "| --- | ---: | ---: | ---: | ---: |")
    limits = transfer.TENSOR_BYTES, transfer.BATCH_BYTES
    cells = [("digits, 256 samples (4 tensors)", digits_sample, 256)]
    cells += [(f"one float32 tensor of {size >> 10} KB", lambda size=size: torch.zeros(size // 4 // 64), 64)
              for size in (16 << 10, 128 << 10, 512 << 10, 2 << 20, 8 << 20)]
    for name, make, batch_size in cells:
        nbytes = sum(t.nbytes for t in _tensors(default_collate([make() for _ in range(batch_size)])))
        transfer.TENSOR_BYTES = transfer.BATCH_BYTES = max(nbytes, limits[1])  # force by value past the limits
        try:
            shm = median_ms(make, batch_size, False, args.batches, args.slack)
            value = median_ms(make, batch_size, True, args.batches, args.slack)
        finally:
            transfer.TENSOR_BYTES, transfer.BATCH_BYTES = limits
        print(f"| {name} | {nbytes:,} | {shm:.2f} | {value:.2f} | {shm / value:.2f}× |", flush=True)


def _tensors(batch: Any) -> list[torch.Tensor]:
    if isinstance(batch, torch.Tensor):
        return [batch]
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else []
    return [t for v in values for t in _tensors(v)]


if __name__ == "__main__":
    main()
