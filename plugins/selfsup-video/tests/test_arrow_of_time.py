"""Arrow of time: balanced forward/reversed clips, the loss against its formula, refusal of an
order-blind backbone, conformance, and learnability: the task learns the direction of a
time-asymmetric process (a spreading blob) and stays at chance on time-symmetric clips."""

from __future__ import annotations

import math

import pytest
import torch

from selfsup.components import BuildContext
from selfsup.testing import TaskConformance
from selfsup_video.tasks.arrow_of_time import make_clips

CLIPS = ("moving_mnist", {"split": "val", "n": 4, "frames": 4, "size": 16, "digit_size": 8})


def test_half_the_clips_are_reversed():
    video = torch.rand(10, 5, 1, 4, 4)
    clips, labels = make_clips(video, torch.Generator().manual_seed(0))
    assert int(labels.sum()) == 5
    for i in range(10):
        assert torch.equal(clips[i], video[i] if labels[i] else video[i].flip(0))


def _task(backbone_name="r2plus1d", backbone_options=None, **options):
    torch.manual_seed(0)
    context = BuildContext(name="aot", seed=1)
    backbone = context.build("backbones", backbone_name, backbone_options or {"widths": [4, 8]})
    return context.build("tasks", "arrow_of_time", {"hidden_dim": 8, **options}, backbone=backbone), backbone


def test_loss_is_the_cross_entropy_of_the_clip_embedding():
    task, backbone = _task()
    batch = {"video": torch.rand(4, 4, 1, 16, 16), "index": torch.arange(4)}
    out = task(batch, backbone)
    clips, labels = make_clips(batch["video"], task.generator(batch))
    with torch.no_grad():
        logits = task.head(backbone(clips))  # [B, 2]
    expected = -sum(logits[i, labels[i]] - math.log(math.exp(logits[i, 0]) + math.exp(logits[i, 1]))
                    for i in range(4)) / 4
    assert out.loss.item() == pytest.approx(float(expected), rel=1e-5)


def test_refuses_an_order_blind_backbone():
    with pytest.raises(ValueError, match="order-blind"):
        _task("framewise", {"name": "test_convnext", "fusion": "mean"})


class TestArrowOfTimeConformance(TaskConformance):
    task = "arrow_of_time"
    task_options = {"hidden_dim": 8}
    data = CLIPS
    backbone = ("r2plus1d", {"widths": [4, 8]})
    bad_options = [{"hidden_dim": -1}]


def spreading_blobs(n: int, generator: torch.Generator, frames: int = 6, size: int = 12) -> torch.Tensor:
    """A time-asymmetric process: a Gaussian blob at a random place whose width grows every frame
    (diffusion; it never contracts by itself). ``[n, frames, 1, size, size]``."""
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    centre = torch.rand(n, 2, generator=generator) * (size - 4) + 2  # [n, 2]
    start = 0.8 + torch.rand(n, generator=generator)  # [n] initial width
    sigma = start[:, None] + 0.5 * torch.arange(frames)[None]  # [n, frames]
    d2 = (ys - centre[:, 0, None, None]) ** 2 + (xs - centre[:, 1, None, None]) ** 2  # [n, size, size]
    blobs = torch.exp(-d2[:, None] / (2 * sigma[:, :, None, None] ** 2))  # [n, frames, size, size]
    return blobs[:, :, None]


def _train_accuracy(make, steps=40):
    task, backbone = _task(backbone_options={"widths": [8, 16], "norm": "group"}, hidden_dim=16)
    opt = torch.optim.Adam([*task.parameters(), *backbone.parameters()], lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for step in range(steps):
        task.on_step(step)
        out = task({"video": make(32, g), "index": torch.arange(32) + 32 * step}, backbone)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    task.on_step(10_000)
    with torch.no_grad():  # held-out clips
        return float(task({"video": make(128, g), "index": torch.arange(128)}, backbone).metrics["accuracy"])


def test_learns_the_direction_of_an_irreversible_process_and_not_of_a_symmetric_one(one_thread):
    assert _train_accuracy(spreading_blobs) > 0.9
    # the same blobs shown in a random direction (a time-symmetric world): nothing to learn
    def symmetric(n, g):
        clips = spreading_blobs(n, g)
        flip = torch.rand(n, generator=g) < 0.5
        return torch.where(flip[:, None, None, None, None], clips.flip(1), clips)

    assert _train_accuracy(symmetric) < 0.65
