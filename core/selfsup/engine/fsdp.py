"""``train.strategy = "fsdp"``: fully sharded data parallel through PyTorch's FSDP2 (``fully_shard``).

Every parameter, gradient and optimizer state is split across the processes; a block's full weights
exist only while it runs (gathered before its forward and backward, freed after when
``reshard_after_forward``). The sharding units are the backbones' repeated blocks (a backbone's own
``fsdp_units()`` if it defines one, else the modules of its largest ``ModuleList``/``Sequential`` of
blocks, the groups fine-tuning's layer-wise decay uses), then the whole model (task heads and the rest).

What runs on one process only (evaluators, training-health probes, ``export``) never runs a forward on
the sharded model, which would wait for the other ranks: those read a full copy on rank 0 (a
``replica`` on the CPU), refreshed from the shards by :meth:`Sharding.gather` (a collective every rank
calls) when they are due.

Checkpoints (engine/checkpoint.py, ``sharded/``): the model and optimizer state as written by
``torch.distributed.checkpoint`` (DCP), one file per rank plus its metadata, which load into any number
of processes (re-sharding 2 -> 1 or 1 -> 4). Rank 0 also writes the gathered full weights as
``model.safetensors``, so ``selfsup eval``, ``export``, ``finetune`` and ``serve`` read an FSDP run
as any other.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfsup.lib.modules import _largest_blocks

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The modules sharded as their own FSDP units: each block of each backbone."""
    units: list[nn.Module] = []
    for backbone in getattr(model, "backbones", {}).values():
        own = getattr(backbone, "fsdp_units", None)
        if callable(own):
            units.extend(own())
            continue
        units.extend(_largest_blocks(backbone) or [])
    return units


def ensure_process_group(info: Any) -> None:
    """FSDP shards over a process group: a run of one process gets a group of one (its shards are the
    whole tensors), so the same code and the same sharded checkpoints serve every world size."""
    import torch.distributed as dist

    if not dist.is_initialized() and info.world_size == 1:
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)


class Sharding:
    """The sharded training model and, on rank 0, its full replica for one-process work."""

    def __init__(self, model: nn.Module, spec: Any, precision: str, *, is_main: bool):
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        self.model = model
        self.replica = copy.deepcopy(model) if is_main else None  # before sharding: plain tensors
        self.units = shard_units(model)
        mp = MixedPrecisionPolicy(
            param_dtype=_DTYPES[precision] if spec.mixed_precision and precision != "fp32" else None,
            reduce_dtype=torch.float32,
        )
        if spec.activation_checkpointing and self.units:
            from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import (
                apply_activation_checkpointing,
            )

            chosen = {id(u) for u in self.units}
            apply_activation_checkpointing(model, check_fn=lambda m: id(m) in chosen)
        if mp.param_dtype is not None:  # BatchNorm keeps float32 parameters: its running statistics are float32
            keep = MixedPrecisionPolicy(reduce_dtype=torch.float32)
            norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]
            for module in norms:
                fully_shard(module, mp_policy=keep, reshard_after_forward=spec.reshard_after_forward)
            self.units = [u for u in self.units if all(u is not m for m in norms)]
        for unit in self.units:
            fully_shard(unit, mp_policy=mp, reshard_after_forward=spec.reshard_after_forward)
        fully_shard(model, mp_policy=mp, reshard_after_forward=spec.reshard_after_forward)

    # ------------------------------------------------------------------ full weights

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The full weights on rank 0 (CPU), an empty dict elsewhere; every rank must call it."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def gather(self) -> None:
        """Refresh rank 0's replica from the shards (a collective: every rank calls it)."""
        full = self.full_state_dict()
        if self.replica is not None:
            self.replica.load_state_dict(full)

    def load_full(self, state: dict[str, torch.Tensor]) -> None:
        """Load full weights (read by every rank, e.g. the best checkpoint's) into the shards."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(self.model, state, options=StateDictOptions(full_state_dict=True))
        if self.replica is not None:
            self.replica.load_state_dict(state)

    # ------------------------------------------------------------------ sharded checkpoints (DCP)

    def save(self, directory: Path, optimizer: torch.optim.Optimizer) -> None:
        """Every rank writes its shard of the model and optimizer state into ``directory``."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optim_state = get_state_dict(self.model, optimizer)
        dcp.save({"model": model_state, "optimizer": optim_state}, checkpoint_id=str(directory))

    def load(self, directory: Path, optimizer: torch.optim.Optimizer) -> None:
        """Load a sharded checkpoint written by any number of processes into this run's shards (DCP
        re-shards on load), model and optimizer state both, then refresh rank 0's replica."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        model_state, optim_state = get_state_dict(self.model, optimizer)
        state = {"model": model_state, "optimizer": optim_state}
        dcp.load(state, checkpoint_id=str(directory))
        set_state_dict(self.model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
        self.gather()
