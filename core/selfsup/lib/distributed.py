"""Distributed helpers for components: which process this is, and an all-gather that keeps gradients.

Every function works without a process group too (one process: rank 0 of 1), so a component calls
them unconditionally. Processes are started by ``selfsup train --nproc N`` (or ``torchrun``); the
core joins the process group before building components.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


class DeviceUnavailable(ValueError):
    """The requested device does not exist on this machine (e.g. ``cuda`` without a GPU)."""


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes in the run (1 without a process group)."""
    return dist.get_world_size() if _active() else 1


def rank() -> int:
    """This process's rank, 0 to ``world_size() - 1`` (0 without a process group)."""
    return dist.get_rank() if _active() else 0


def barrier() -> None:
    """Wait until every process gets here (nothing without a process group)."""
    if _active():
        dist.barrier()


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sends each rank the summed gradient of its own slice.

    Every rank computes a loss on the gathered tensor, so the gradient of the total loss with
    respect to this rank's input is the sum, over ranks, of the gradients of their gathered copies
    (all-reduce), sliced at this rank. (Works with gloo, which lacks reduce-scatter.)
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # x: [B, ...]
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack(grads)  # [W, B, ...]
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        return stacked[dist.get_rank()]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x [B, ...]`` from all ranks into ``[W*B, ...]``, keeping gradients.

    Use it in contrastive losses so negatives come from the whole global batch. Returns ``x``
    itself when not distributed. Rows are ordered by rank, so the local rows of rank r are
    ``[r*B, (r+1)*B)`` (see :func:`local_offset`); every rank must pass the same ``B``.
    """
    if world_size() == 1:
        return x
    return torch.cat(_GatherWithGrad.apply(x), dim=0)


def local_offset(batch_size: int) -> int:
    """Index of this rank's first row in a tensor returned by :func:`gather_with_grad`."""
    return rank() * batch_size


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` -> this rank's CUDA device if there is one, else the CPU; ``"cuda"`` -> ``cuda:<local_rank>``.

    Raises :class:`DeviceUnavailable` (a ``ValueError``) when CUDA is asked for but not available."""
    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"{name!r} requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device
