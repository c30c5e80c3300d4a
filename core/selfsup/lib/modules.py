"""Small building blocks for backbones, tasks and evaluators: freezing a module, pooling over
valid positions, position encodings, a backbone's layers in order. Importing this module does not
import torch."""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # pragma: no cover
    import torch


@contextlib.contextmanager
def frozen(*modules: Any) -> Iterator[None]:
    """Eval mode and no gradients inside the block; each module's training flag is restored after it.

    ``with frozen(backbone): features = backbone.embed(batch)`` replaces the
    ``was_training = m.training; m.eval(); try: ... finally: m.train(was_training)`` pattern."""
    import torch

    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        with torch.no_grad():
            yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


def masked_mean(x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
    """``x [B, T, D]`` averaged over the positions where ``padding_mask [B, T]`` is False -> ``[B, D]``."""
    keep = (~padding_mask).to(x.dtype).unsqueeze(-1)  # [B, T, 1]
    return (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)


def sinusoidal_positions(length: int, dim: int, device: Any = None) -> torch.Tensor:
    """Sinusoidal position encodings ``[length, dim]`` (Vaswani et al., Attention Is All You Need, 2017)."""
    import torch

    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]  # [T, 1]
    steps = torch.arange(0, dim, 2, device=device, dtype=torch.float32)  # [dim/2]
    rates = torch.exp(steps * (-math.log(10000.0) / dim))  # [dim/2]
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(position * rates)
    table[:, 1::2] = torch.cos(position * rates[: dim // 2])
    return table


def _largest_blocks(module: Any) -> list[Any] | None:
    """The parameterised children of the largest ``nn.ModuleList`` / ``nn.Sequential`` inside ``module``
    with two or more of them (by parameter count: a transformer's blocks, a CNN's stages), or ``None``.
    Not in the public API: :func:`layer_groups` and FSDP's sharding units (engine/fsdp.py) share it."""
    import torch

    best, best_size = None, 0
    for child in module.modules():
        if isinstance(child, (torch.nn.ModuleList, torch.nn.Sequential)):
            blocks = [m for m in child if any(True for _ in m.parameters())]
            size = sum(p.numel() for p in child.parameters())
            if len(blocks) >= 2 and size > best_size:
                best, best_size = blocks, size
    return best


def layer_groups(backbone: Any) -> list[list[torch.nn.Parameter]]:
    """A backbone's parameters by layer, input side first: what layer-wise learning-rate decay scales
    and partial unfreezing unfreezes from the top. Every parameter appears once.

    ``backbone.layer_groups()`` is used when the backbone defines it. Otherwise the largest
    ``nn.ModuleList`` / ``nn.Sequential`` with two or more parameterised children (by parameter count:
    a transformer's blocks, a CNN's stages) gives one group per child, with one group before it (what
    comes first in ``named_parameters``: embeddings, stem) and one after (final norm, pooler). A
    backbone without such a list is one group."""

    own = getattr(backbone, "layer_groups", None)
    params = list({id(p): p for p in backbone.parameters()}.values())
    if callable(own):
        groups = [list({id(p): p for p in g}.values()) for g in own()]
        seen = {id(p) for g in groups for p in g}
        missing = [p for p in params if id(p) not in seen]
        if missing:
            raise ValueError(f"{type(backbone).__name__}.layer_groups() leaves out {len(missing)} parameter(s)")
        return [g for g in groups if g]
    best = _largest_blocks(backbone)
    if best is None:
        return [params]
    block_of = {id(p): i for i, block in enumerate(best) for p in block.parameters()}
    first = min(i for i, p in enumerate(params) if id(p) in block_of)
    before = [p for p in params[:first] if id(p) not in block_of]
    after = [p for p in params[first:] if id(p) not in block_of]
    blocks = [list({id(p): p for p in block.parameters()}.values()) for block in best]
    return [g for g in (before, *blocks, after) if g]
