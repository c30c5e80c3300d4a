"""How a data-loader worker hands a batch to the training process: small tensors by value.

torch's data-loader workers send every tensor of a batch through shared memory: the worker creates
a shared-memory segment per tensor and passes its file descriptor, the training process maps it.
That costs 1.5 to 2 ms per batch of a few small tensors on the 2-core development machine
(``bench/transfer_speed.py``, docs/benchmarks.md), a step's whole data wait for the small batches of
the digits recipes. Copying small tensors' bytes through the worker's pipe costs less (0.8 ms for
16 KB, 1.3 ms for 128 KB), and more than shared memory from about half a megabyte on (2.1 against
1.6 ms for 512 KB, 6.1 against 1.9 ms for 2 MB). So :class:`ByValue` wraps the collate function of a
loader with workers: a batch's plain CPU tensors of at most ``TENSOR_BYTES`` each, ``BATCH_BYTES``
in all, travel pickled by value; larger ones (images at full size), and tensors inside objects other
than dicts, lists and tuples, take torch's shared-memory path as before.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

TENSOR_BYTES = 256 << 10  # one tensor up to this size goes by value...
BATCH_BYTES = 512 << 10  # ...while the batch's tensors sent by value stay within this


class ByValue:
    """``collate`` whose batches pickle their small tensors by value (see the module's docstring)."""

    def __init__(self, collate: Callable[[list[Any]], Any]):
        self.collate = collate

    def __call__(self, samples: list[Any]) -> Any:
        return _Batch(self.collate(samples))


class _Batch:
    """A collated batch leaving a worker; unpickled, it is the batch itself."""

    def __init__(self, batch: Any):
        self.batch = batch

    def __reduce__(self) -> tuple[Any, tuple[Any]]:
        return _same, (_inline(self.batch, [BATCH_BYTES]),)


class _Inline:
    """A tensor pickled as ``(dtype, shape, bytes)``."""

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        t = self.tensor.contiguous()
        raw = bytearray(t.reshape(-1).view(torch.uint8).numpy()) if t.numel() else bytearray()
        return _tensor, (t.dtype, tuple(t.shape), raw)


def _inline(x: Any, budget: list[int]) -> Any:
    """``x`` with its small tensors wrapped in :class:`_Inline` while ``budget[0]`` bytes remain."""
    if isinstance(x, torch.Tensor):
        small = (x.layout == torch.strided and x.device.type == "cpu" and not x.requires_grad
                 and not x.is_quantized and x.nbytes <= min(TENSOR_BYTES, budget[0]))
        if not small:
            return x
        budget[0] -= x.nbytes
        return _Inline(x)
    if type(x) is dict:
        return {key: _inline(value, budget) for key, value in x.items()}
    if type(x) in (list, tuple):
        return type(x)(_inline(value, budget) for value in x)
    return x


def _same(batch: Any) -> Any:
    return batch


def _tensor(dtype: torch.dtype, shape: tuple[int, ...], raw: bytearray) -> torch.Tensor:
    if not raw:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(raw, dtype=torch.uint8).view(dtype).reshape(shape)  # shares raw's memory
