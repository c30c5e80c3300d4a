"""Small building blocks for backbones, tasks and evaluators: freezing a module, pooling over
valid positions, position encodings. Importing this module does not import torch."""

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
