"""Span masking of frame sequences, as in wav2vec 2.0 and HuBERT.

Baevski, Zhou, Mohamed, Auli, wav2vec 2.0: A Framework for Self-Supervised Learning of Speech
Representations, NeurIPS 2020 (section 3.1 / 4.2: "sample p = 0.065 of all time-steps to be
starting indices and mask the subsequent M = 10 time-steps"; fairseq's ``compute_mask_indices``
phrases it as ``mask_prob * T / M`` spans with ``mask_prob = 0.65``).

Per utterance with ``T`` valid frames: ``n = floor(mask_prob * T / span + u)``, ``u ~ U[0, 1)``
(random rounding, so E[n] = mask_prob * T / span), at least ``min_masks``; ``n`` distinct start
frames are drawn uniformly among those where a whole span fits, and ``span`` frames from each are
masked. Spans may overlap, so the masked fraction is below ``mask_prob`` (about 49% of frames for
0.65 and 10, as the paper notes). Padding frames are never masked.

Differences from fairseq: a span always lies inside the valid frames (fairseq draws starts in
``[0, T - span)`` and clips), the number of spans is capped by the number of such starts instead
of shortening the spans, and masks are not trimmed to the same count across the batch (losses here
index masked frames per utterance, so equal counts are not needed).
"""

from __future__ import annotations

import torch

from selfsup.lib import seeding


def compute_span_mask(
    shape: tuple[int, int],
    mask_prob: float,
    span_length: int,
    generator: torch.Generator,
    padding_mask: torch.Tensor | None = None,  # [B, T] bool, True = padding
    min_masks: int = 0,
) -> torch.Tensor:
    """``[B, T]`` bool, True = masked. Randomness only from ``generator`` (a CPU generator; the
    mask is built on the CPU and returned there: move it to the frames' device)."""
    batch, frames = shape
    if not 0 < mask_prob < 1:
        raise ValueError(f"mask_prob must be in (0, 1), got {mask_prob}")
    if span_length < 1:
        raise ValueError(f"span_length must be >= 1, got {span_length}")
    if padding_mask is not None:
        if tuple(padding_mask.shape) != (batch, frames):
            raise ValueError(f"padding_mask has shape {tuple(padding_mask.shape)}, expected {(batch, frames)}")
        valid = (~padding_mask.bool()).sum(dim=1).cpu().tolist()  # padding sits at the end
    else:
        valid = [frames] * batch
    mask = torch.zeros(batch, frames, dtype=torch.bool)
    for i, length in enumerate(valid):
        if length <= 0:
            continue
        rounding = float(torch.rand((), generator=generator))
        count = max(min_masks, int(mask_prob * length / span_length + rounding))
        span = min(span_length, length)
        starts_available = length - span + 1
        count = min(count, starts_available)
        if count <= 0:
            continue
        starts = torch.randperm(starts_available, generator=generator)[:count]  # [n]
        positions = (starts[:, None] + torch.arange(span)[None]).flatten()  # [n * span]
        mask[i, positions] = True
    if padding_mask is not None:
        mask &= ~padding_mask.bool().cpu()  # (only matters if padding were not at the end)
    return mask


def batch_generator(seed: int, step: int, batch: dict, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for one training batch's random draws (masks, distractors, Gumbel noise),
    seeded from the run seed, the task's step counter (a checkpointed buffer) and the batch's
    sample indices in order (:func:`selfsup.lib.batch_generator`), so a resumed run draws the same,
    DDP ranks draw differently, and so do any two batches of different samples."""
    index = batch.get("index")
    indices = [] if index is None else torch.as_tensor(index).long().flatten().cpu()
    return seeding.batch_generator(seed, "speech_masking", step, indices, device=device)
