"""torchrun DDP helpers: process-group setup and an all-gather that keeps gradients.

Launch with ``selfsup train --nproc N recipe.toml`` or ``torchrun --nproc-per-node N -m selfsup
train recipe.toml``. The backend is gloo on CPU and nccl on CUDA; only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_type: str) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op for one process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


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
    ``[r*B, (r+1)*B)`` (see :func:`local_offset`).
    """
    if world_size() == 1:
        return x
    return torch.cat(_GatherWithGrad.apply(x), dim=0)


def local_offset(batch_size: int) -> int:
    """Index of this rank's first row in a tensor returned by :func:`gather_with_grad`."""
    return rank() * batch_size
