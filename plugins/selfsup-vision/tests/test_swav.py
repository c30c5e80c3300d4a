"""SwAV: Sinkhorn-Knopp marginals and agreement with lightly (also under DDP and with a queue),
the swapped-prediction loss against lightly's SwaVLoss, queue and prototype freezing,
conformance, and a shortened quickstart that learns."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from selfsup.components import BuildContext
from selfsup.testing import TaskConformance, train_against_random_init
from selfsup_vision.backbones.options import SmallCNNOptions
from selfsup_vision.backbones.small_cnn import build_small_cnn
from selfsup_vision.tasks.options import SwAVOptions
from selfsup_vision.tasks.swav import build, sinkhorn, swav_loss


def cosine_scores(n: int, k: int, d: int = 16, seed: int = 0) -> torch.Tensor:
    """``[n, k]`` similarities of unit vectors to unit prototypes, like SwAV's scores."""
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=1) @ F.normalize(torch.randn(k, d, generator=g), dim=1).T


# ------------------------------------------------------------------------------ sinkhorn


def test_sinkhorn_marginals():
    scores = cosine_scores(64, 8)
    for iterations, tolerance in [(3, 0.3), (100, 1e-3)]:
        q = sinkhorn(scores, 0.05, iterations)  # [B, K]
        torch.testing.assert_close(q.sum(dim=1), torch.ones(64), rtol=0, atol=1e-5)  # each sample's code sums to 1
        usage = q.sum(dim=0) / (64 / 8)  # each prototype's mass relative to an equal share
        assert (usage - 1).abs().max() < tolerance, (iterations, usage)
    assert (q >= 0).all()


def test_sinkhorn_is_stable_for_small_epsilon():
    scores = cosine_scores(32, 6)
    q = sinkhorn(scores, 0.005, 3)  # exp(200) overflows float32 without the shift, exp(-400) underflows it
    assert torch.isfinite(q).all() and q.dtype == scores.dtype
    torch.testing.assert_close(q.sum(dim=1), torch.ones(32), rtol=0, atol=1e-5)


def test_sinkhorn_matches_lightly():
    lightly_swav = pytest.importorskip("lightly.loss.swav_loss")
    scores, queue = cosine_scores(32, 10, seed=1), cosine_scores(48, 10, seed=2)
    for iterations in (1, 3, 10):
        expected = lightly_swav.sinkhorn(scores, iterations=iterations, epsilon=0.05)
        torch.testing.assert_close(sinkhorn(scores, 0.05, iterations), expected, rtol=1e-4, atol=1e-6)
    # shared rows (the queue) take part in the normalisation, their codes are dropped
    expected = lightly_swav.sinkhorn(torch.cat([scores, queue]), iterations=3, epsilon=0.05)[:32]
    torch.testing.assert_close(sinkhorn(scores, 0.05, 3, shared=queue), expected, rtol=1e-4, atol=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sinkhorn_worker(rank: int, world: int, port: int, scores: torch.Tensor, queue: torch.Tensor, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        b = scores.shape[0] // world
        local = scores[rank * b : (rank + 1) * b]
        out[rank] = (sinkhorn(local, 0.05, 3), sinkhorn(local, 0.05, 3, shared=queue))
    finally:
        dist.destroy_process_group()


def test_sinkhorn_across_processes_matches_one_process():
    world = 2
    scores, queue = cosine_scores(16, 5, seed=3), cosine_scores(6, 5, seed=4)
    out = mp.Manager().dict()
    mp.spawn(_sinkhorn_worker, args=(world, _free_port(), scores, queue, out), nprocs=world, join=True)
    full, full_queue = sinkhorn(scores, 0.05, 3), sinkhorn(scores, 0.05, 3, shared=queue)
    torch.testing.assert_close(torch.cat([out[r][0] for r in range(world)]), full, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.cat([out[r][1] for r in range(world)]), full_queue, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ loss


@pytest.mark.parametrize("locals_", [0, 4])
def test_swav_loss_matches_lightly(locals_):
    lightly_loss = pytest.importorskip("lightly.loss")
    high = [cosine_scores(16, 12, seed=10 + i) for i in range(2)]
    low = [cosine_scores(16, 12, seed=20 + i) for i in range(locals_)]
    queue = [cosine_scores(32, 12, seed=30 + i) for i in range(2)]
    expected = lightly_loss.SwaVLoss(temperature=0.1, sinkhorn_iterations=3, sinkhorn_epsilon=0.05)
    codes = [sinkhorn(h, 0.05, 3) for h in high]
    torch.testing.assert_close(swav_loss(high + low, codes, 0.1), expected(high, low).squeeze(), rtol=1e-5, atol=1e-6)
    codes = [sinkhorn(h, 0.05, 3, shared=q) for h, q in zip(high, queue)]
    torch.testing.assert_close(swav_loss(high + low, codes, 0.1), expected(high, low, queue).squeeze(), rtol=1e-5,
                               atol=1e-6)


def _task(seed: int = 0, **options):
    torch.manual_seed(seed)
    backbone = build_small_cnn(SmallCNNOptions(widths=[8, 16]), BuildContext("cnn"))
    o = SwAVOptions(projection_hidden_dim=32, projection_dim=16, prototypes=10, **options)
    return build(o, BuildContext("swav", backbone=backbone)), backbone


def _batch(b: int = 8, locals_: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"global_views": torch.rand(b, 2, 1, 8, 8, generator=g),
            "local_views": torch.rand(b, locals_, 1, 6, 6, generator=g)}


def _scores(task, backbone, batch) -> list[torch.Tensor]:
    """Scores of each view computed view by view (global views first), as lightly's examples do."""
    views = list(batch["global_views"].unbind(1)) + list(batch["local_views"].unbind(1))
    return [F.normalize(task.head(backbone(v)), dim=1) @ task.prototypes.weight.T for v in views]


def test_task_loss_matches_lightly_view_by_view():
    lightly_loss = pytest.importorskip("lightly.loss")
    task, backbone = _task()
    task.eval(), backbone.eval()  # BatchNorm from running statistics: batching does not matter
    batch = _batch()
    out = task(batch, backbone)
    scores = _scores(task, backbone, batch)
    expected = lightly_loss.SwaVLoss(temperature=0.1, sinkhorn_iterations=3,
                                     sinkhorn_epsilon=0.05)(scores[:2], scores[2:])
    torch.testing.assert_close(out.loss, expected.squeeze(), rtol=1e-5, atol=1e-6)
    assert 0 < out.metrics["prototypes_used"] <= 1


def test_prototypes_are_normalised_before_each_forward():
    task, backbone = _task()
    with torch.no_grad():
        task.prototypes.weight.mul_(3.0)
    task(_batch(), backbone)
    torch.testing.assert_close(task.prototypes.weight.norm(dim=1), torch.ones(10))


# ------------------------------------------------------------------------------ freezing and queue


def test_prototypes_frozen_for_the_first_steps():
    task, backbone = _task(freeze_prototypes_steps=2)
    opt = torch.optim.AdamW([*task.parameters(), *backbone.parameters()], lr=0.1, weight_decay=0.1)
    directions = []
    for step in range(3):
        opt.zero_grad()
        before = task.prototypes.weight.detach().clone()
        task.on_step(step)
        for micro in range(2):  # grad_accum = 2: freezing counts optimizer steps, not forward passes
            task(_batch(seed=10 * step + micro), backbone).loss.backward()
        grad = task.prototypes.weight.grad
        assert grad is not None  # a (zero) gradient, so DDP sees every parameter used
        assert (grad.abs().sum() == 0) == (step < 2), step
        assert task.head[0].weight.grad.abs().sum() > 0  # the rest trains from the first step
        opt.step()
        directions.append(F.normalize(task.prototypes.weight.detach(), dim=1) - F.normalize(before, dim=1))
    assert directions[0].abs().max() < 1e-6 and directions[1].abs().max() < 1e-6  # unchanged up to scale
    assert directions[2].abs().max() > 1e-4
    assert int(task.state_dict()["steps"]) == 2  # the step it was told, in a buffer: checkpointed


def test_no_steps_counted_in_eval_mode():
    task, backbone = _task(freeze_prototypes_steps=2)
    task.eval()
    task(_batch(), backbone)
    assert int(task.steps) == 0


def test_queue_fills_newest_first():
    task, backbone = _task(queue_length=12)
    assert task.queue.shape == (2, 12, 16) and int(task.queue_filled) == 0
    task(_batch(b=8, seed=0), backbone)
    assert int(task.queue_filled) == 8
    first = task.queue[:, :8].clone()
    assert torch.allclose(first.norm(dim=2), torch.ones(2, 8))  # L2-normalised projections
    task(_batch(b=8, seed=1), backbone)
    assert int(task.queue_filled) == 12
    torch.testing.assert_close(task.queue[:, 8:12], first[:, :4])  # older rows move back, the oldest drop out
    assert {"queue", "queue_filled", "steps"} <= set(task.state_dict())


def test_queue_used_for_codes_from_the_start_step():
    lightly_loss = pytest.importorskip("lightly.loss")
    with_queue, backbone = _task(queue_length=16, queue_start_step=1)
    without, backbone0 = _task(queue_length=0)  # same seed: same weights
    a, b = _batch(seed=0), _batch(seed=1)
    # step 0: the queue is filled but not used yet
    torch.testing.assert_close(with_queue(a, backbone).loss, without(a, backbone0).loss)
    # step 1: codes are computed over the batch and the queue (scored with the current prototypes)
    with_queue.on_step(1)
    for module in (with_queue, backbone):
        module.eval()  # fixed BatchNorm, nothing pushed, so we can recompute the same numbers
    loss = with_queue(b, backbone).loss
    scores = _scores(with_queue, backbone, b)
    queue = [with_queue.queue[i, :8] @ with_queue.prototypes.weight.T for i in range(2)]  # 8 rows filled
    expected = lightly_loss.SwaVLoss(temperature=0.1, sinkhorn_iterations=3,
                                     sinkhorn_epsilon=0.05)(scores[:2], scores[2:], queue)
    torch.testing.assert_close(loss, expected.squeeze(), rtol=1e-5, atol=1e-6)
    without.eval(), backbone0.eval()
    assert not torch.allclose(loss, without(b, backbone0).loss)


def test_too_few_global_views_is_an_error():
    task, backbone = _task(assign_views=3)
    with pytest.raises(ValueError, match="assign_views"):
        task(_batch(), backbone)


# ------------------------------------------------------------------------------ conformance


class TestSwAVConformance(TaskConformance):
    task = "swav"
    task_options = {"projection_hidden_dim": 32, "projection_dim": 16, "prototypes": 10}
    data = ("digits", {"limit": 64})
    augment = [("multi_crop", {"global_size": 8, "local_size": 6, "local_crops": 2, "flip": 0.0})]
    backbone = ("small_cnn", {"widths": [8, 16]})
    bad_options = [{"temperature": 0.0}, {"prototypes": 1}, {"sinkhorn_iterations": 0}, {"assign_views": 0},
                   {"queue_length": -1}]
    inert_options = {"queue_start_step": "no queue here (queue_length = 0); TestSwAVWithQueueConformance varies it"}


class TestSwAVWithQueueConformance(TestSwAVConformance):
    task_options = {**TestSwAVConformance.task_options, "queue_length": 8, "freeze_prototypes_steps": 5}
    # the check runs steps 0 and 1: unfrozen prototypes, and a queue that starts after step 1
    option_variants = {"freeze_prototypes_steps": 0, "queue_start_step": 5}
    inert_options = {}
    augment = [("multi_crop", {"global_size": 8, "local_size": 6, "local_crops": 0, "flip": 0.0})]


# ------------------------------------------------------------------------------ learning


def test_shortened_quickstart_beats_random_init(tmp_path):
    """swav-digits shortened to 12 epochs: kNN (k=200, t=0.1) on held-out digits must beat the same
    backbone at random init by 3 points (measured: about 0.87 at random init, 0.93 trained)."""
    trained, random_init = train_against_random_init("swav-digits", tmp_path / "run", ["train.epochs=12"],
                                                     evaluators=["knn"])
    print(f"kNN accuracy: random init {random_init['knn/accuracy']:.4f}, trained {trained['knn/accuracy']:.4f}")
    assert trained["knn/accuracy"] > random_init["knn/accuracy"] + 0.03, (trained, random_init)
