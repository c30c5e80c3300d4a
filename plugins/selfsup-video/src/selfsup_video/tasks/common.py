"""Helpers the video pretext tasks share: per-batch seeded generators, balanced binary labels,
frame features from a backbone, and a small classifier head.

Imports torch: use it from task and evaluator modules (which the factories import), not from
``options`` modules or the plugin's ``__init__``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from selfsup.lib import seeding


def batch_generator(seed: int, stream: str, step: int, batch: dict[str, Any]) -> torch.Generator:
    """A CPU generator seeded from (run seed, ``stream``, optimizer ``step``, the batch's sample
    ``index`` values in order) (:func:`selfsup.lib.batch_generator`): a resumed run draws the same
    permutations and masks, DDP ranks (other samples) draw differently. A batch without ``index``
    (a streaming source) is keyed by a hash of its clips' content instead."""
    index = batch.get("index")
    if index is not None:
        keys = torch.as_tensor(index).long().flatten().cpu()
    else:
        video = batch["video"] if "video" in batch else batch["clips"]
        flat = (video.detach().float().flatten(1).cpu() * 255).round().long()  # [B, N]
        keys = torch.tensor([seeding.batch_seed(0, "content", 0, row) for row in flat], dtype=torch.long)
    return seeding.batch_generator(seed, stream, step, keys)


def balanced_labels(n: int, generator: torch.Generator) -> torch.Tensor:
    """``[n]`` int64 of ``ceil(n/2)`` ones and ``floor(n/2)`` zeros in a random order (an exact balance
    in every batch; a batch of one gets a random label)."""
    if n == 1:
        return torch.randint(0, 2, (1,), generator=generator)
    labels = (torch.arange(n) < (n + 1) // 2).long()
    return labels[torch.randperm(n, generator=generator)]


def video_of(batch: dict[str, Any], task: str) -> torch.Tensor:
    """``batch["video"]`` checked to be ``[B, T, C, H, W]``."""
    video = batch.get("video")
    if video is None or video.dim() != 5:
        got = "no 'video'" if video is None else f"'video' of shape {tuple(video.shape)}"
        raise ValueError(f"{task} needs batch['video'] of shape [B, T, C, H, W] (the data contract), got {got}")
    return video


def frame_features(backbone: Any, frames: torch.Tensor, task: str) -> torch.Tensor:
    """``frames [B, n, C, H, W]`` (the frames in the order the task presents them) -> ``[B, n, F]``
    through ``backbone.frame_features``."""
    fn = getattr(backbone, "frame_features", None)
    if not callable(fn):
        raise ValueError(f"{task} fuses per-frame features: its backbone needs frame_features(video) -> [B, T, F] "
                         f"('framewise' or 'r2plus1d'); {type(backbone).__name__} has none")
    out = fn(frames)
    if out.dim() != 3 or out.shape[:2] != frames.shape[:2]:
        raise ValueError(f"{task}: frame_features of {tuple(frames.shape)} gave {tuple(out.shape)}; expected "
                         f"[B, {frames.shape[1]}, F]")
    return out


class FrameNorm(nn.Module):
    """Standardises each frame feature over the batch and the presented frames (``BatchNorm1d`` without
    affine weights, one set of statistics shared by every frame position, so the presentation order
    changes nothing but the order): ``[B, n, F] -> [B, n, F]``; the identity when ``enabled`` is False.

    Why the order tasks need it: the frames of one clip differ by a digit moved a few pixels, so their
    features differ from one another by a small fraction of their shared magnitude (what every frame of
    every clip has in common dominates them). A classifier on the raw features starts from inputs whose
    informative part is tiny and stays at chance (measured: Shuffle and Learn on Moving MNIST, 800 steps
    at 0.50 with a timm CNN per frame, 0.87 with this standardisation; docs/video.md)."""

    def __init__(self, dim: int, enabled: bool = True):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False) if enabled else nn.Identity()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.norm(feats.flatten(0, 1)).view_as(feats)


def mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """``Linear - ReLU - Linear`` (a linear map when ``hidden_dim`` is 0)."""
    if hidden_dim == 0:
        return nn.Sequential(nn.Linear(in_dim, out_dim))
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim))


def sorted_positions(b: int, length: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """``[b, n]`` int64: ``n`` distinct frame positions of ``range(length)`` per sample, increasing."""
    if length < n:
        raise ValueError(f"the task picks {n} distinct frames; the clips have {length}")
    noise = torch.rand(b, length, generator=generator)  # [b, length]
    return noise.argsort(dim=1)[:, :n].sort(dim=1).values


class StepCounter(nn.Module):
    """Base of tasks whose random draws are seeded by the optimizer step (``on_step``): the step is a
    buffer, so a checkpoint carries it and a resumed run reseeds as the uninterrupted one."""

    def __init__(self, seed: int, name: str):
        super().__init__()
        self.seed, self.stream = int(seed), name
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def on_step(self, step: int) -> None:
        self.updates.fill_(step)

    def generator(self, batch: dict[str, Any]) -> torch.Generator:
        return batch_generator(self.seed, self.stream, int(self.updates), batch)
