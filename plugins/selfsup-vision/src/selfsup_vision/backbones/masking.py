"""Block-wise masking of image patches, as in BEiT (and data2vec's vision model).

Bao, Dong, Piao and Wei, BEiT: BERT Pre-Training of Image Transformers, ICLR 2022 (Algorithm 1):
rectangles of patches are added until ``ratio`` of the grid's patches are masked; each rectangle
has an area ``s ~ U[min_block, left]`` patches (``left``: patches still to mask), an aspect ratio
``r`` log-uniform in ``[0.3, 1/0.3]``, height ``round(sqrt(s * r))`` and width ``round(sqrt(s / r))``,
and a uniformly drawn position; a rectangle that would mask nothing new or more than ``left`` is
redrawn (at most 10 tries per rectangle, as in BEiT's code). BEiT masks 40% with blocks of at least
16 of 196 patches; data2vec masks 60%.
"""

from __future__ import annotations

import math

import torch

ASPECT = 0.3  # aspect ratios in [0.3, 1 / 0.3]
TRIES = 10


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _add_block(mask: torch.Tensor, left: int, min_block: int, generator: torch.Generator) -> int:
    """Mask one rectangle of ``mask [H, W]`` in place; returns how many patches it newly masked (0: none fit)."""
    height, width = mask.shape
    for _ in range(TRIES):
        area = _uniform(min(min_block, left), left, generator)
        aspect = math.exp(_uniform(math.log(ASPECT), math.log(1 / ASPECT), generator))
        h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
        if not (0 < h <= height and 0 < w <= width):
            continue
        top = int(torch.randint(0, height - h + 1, (), generator=generator))
        left_col = int(torch.randint(0, width - w + 1, (), generator=generator))
        block = mask[top:top + h, left_col:left_col + w]
        new = h * w - int(block.sum())
        if 0 < new <= left:
            block.fill_(True)
            return new
    return 0


def block_mask(batch: int, grid: tuple[int, int], ratio: float, min_block: int,
               generator: torch.Generator) -> torch.Tensor:
    """``[batch, H * W]`` bool (True = masked, patches in row-major order): about ``ratio`` of each
    image's patches in rectangles of at least ``min_block`` patches (fewer when the grid is small),
    at least one patch per image. Randomness only from ``generator`` (CPU)."""
    if not 0 < ratio < 1:
        raise ValueError(f"the mask ratio must be in (0, 1), got {ratio}")
    height, width = grid
    goal = max(1, round(ratio * height * width))
    out = torch.zeros(batch, height * width, dtype=torch.bool)
    for i in range(batch):
        mask = torch.zeros(height, width, dtype=torch.bool)
        count = 0
        while count < goal:
            new = _add_block(mask, goal - count, min_block, generator)
            if new == 0:
                break
            count += new
        if count == 0:
            mask.view(-1)[int(torch.randint(0, height * width, (), generator=generator))] = True
        out[i] = mask.flatten()
    return out
