"""torchrun DDP helpers: process-group setup and an all-gather that keeps gradients.

Launch with ``selfsup train --nproc N recipe.toml`` or ``torchrun --nproc-per-node N -m selfsup
train recipe.toml``. The backend is gloo on CPU and nccl on CUDA; only rank 0 writes files.
The helpers components use (rank, world size, ``gather_with_grad``) are public, in
:mod:`selfsup.lib.distributed`; they are re-exported here for the core's own imports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch.distributed as dist

from selfsup.lib.distributed import (  # noqa: F401 - the implementations live in the public API
    barrier,
    gather_with_grad,
    local_offset,
    rank,
    world_size,
)


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
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    if processes <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
        if restart > 0:
            # torchrun restarted the workers (--max-restarts): the rendezvous store still holds the failed
            # group's addresses, which a new rank can read before its peer overwrites them (gloo then
            # connects to a dead port). Each restart's group keeps its keys under its own prefix.
            rank_ = int(os.environ["RANK"])
            agent_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
            store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), processes,
                                  is_master=rank_ == 0 and not agent_store)
            dist.init_process_group(backend=backend, store=dist.PrefixStore(f"selfsup/restart-{restart}", store),
                                    rank=rank_, world_size=processes)
        else:
            dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
