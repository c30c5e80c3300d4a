"""DINO: the loss against a direct formula and lightly's DINOLoss (centring and teacher-temperature
warm-up included), the head against lightly's, the centre over DDP ranks and micro-batches,
last-layer freezing, schedules that count optimizer steps, the checkpointed state, conformance, and
a shortened quickstart that learns."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from selfsup.components import BuildContext
from selfsup.lib.teacher import cosine_momentum
from selfsup.testing import TaskConformance, train_against_random_init
from selfsup_vision.backbones.options import SmallCNNOptions
from selfsup_vision.backbones.small_cnn import build_small_cnn
from selfsup_vision.tasks.dino import DINOHead, build, dino_loss, teacher_temperature
from selfsup_vision.tasks.options import DINOOptions


def dino_loss_direct(teacher, student, center, tau_t, tau_s) -> torch.Tensor:
    """The paper's Algorithm 1 written out pair by pair and sample by sample:
    ``-sum_k P_t[k] log P_s[k]`` with ``P_t = softmax((t - C) / tau_t)``, ``P_s = softmax(s / tau_s)``,
    averaged over the samples, summed over the pairs of different views, divided by their number."""
    total, pairs = 0.0, 0
    for t in range(teacher.shape[0]):
        for s in range(student.shape[0]):
            if s == t:
                continue
            per_sample = []
            for i in range(teacher.shape[1]):
                p_t = torch.exp((teacher[t, i] - center) / tau_t)
                p_t = p_t / p_t.sum()
                log_p_s = student[s, i] / tau_s - torch.logsumexp(student[s, i] / tau_s, 0)
                per_sample.append(-(p_t * log_p_s).sum())
            total += torch.stack(per_sample).mean()
            pairs += 1
    return total / pairs


def _outputs(views: int, b: int = 5, k: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(views, b, k, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("locals_", [0, 3])
def test_loss_matches_the_direct_formula(locals_):
    teacher, student = _outputs(2, seed=1), _outputs(2 + locals_, seed=2)
    center = _outputs(1, b=1, seed=3)[0, 0] * 0.3  # [K]
    loss, p_t = dino_loss(teacher.float(), student.float(), center.float(), 0.05, 0.1)  # float32, as trained
    torch.testing.assert_close(loss.double(), dino_loss_direct(teacher, student, center, 0.05, 0.1), rtol=1e-5,
                               atol=1e-5)
    torch.testing.assert_close(p_t.sum(-1), torch.ones(2, 5))


def test_teacher_temperature_schedule():
    steps = [teacher_temperature(s, 0.04, 0.07, 4) for s in range(6)]
    torch.testing.assert_close(torch.tensor(steps), torch.tensor([0.04, 0.05, 0.06, 0.07, 0.07, 0.07]))
    assert teacher_temperature(0, 0.04, 0.07, 0) == 0.07 and teacher_temperature(0, 0.04, 0.07, 1) == 0.04


def test_head_matches_lightly():
    heads = pytest.importorskip("lightly.models.modules.heads")
    for norm_last_layer in (True, False):
        torch.manual_seed(0)
        ours = DINOHead(16, 32, 8, 20, 3, batch_norm=False, norm_last_layer=norm_last_layer)
        theirs = heads.DINOProjectionHead(16, 32, 8, 20, batch_norm=False, norm_last_layer=norm_last_layer)
        linears = [m for m in theirs.layers if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            for a, b in zip([m for m in ours.mlp if isinstance(m, torch.nn.Linear)], linears, strict=True):
                b.weight.copy_(a.weight), b.bias.copy_(a.bias)
            theirs.last_layer.weight_v.copy_(ours.last_layer.weight_v)
            if not norm_last_layer:
                ours.last_layer.weight_g.mul_(1.5)
                theirs.last_layer.weight_g.copy_(ours.last_layer.weight_g[:, None])
        x = torch.randn(6, 16)
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-6)
        trainable = {n for n, p in ours.named_parameters() if p.requires_grad}
        assert ("last_layer.weight_g" in trainable) == (not norm_last_layer)


def _backbone(norm: str = "batch"):
    return build_small_cnn(SmallCNNOptions(widths=[8, 16], norm=norm), BuildContext("cnn"))


def _task(seed: int = 0, norm: str = "batch", **options):
    torch.manual_seed(seed)
    backbone = _backbone(norm)
    o = DINOOptions(**{"output_dim": 12, "hidden_dim": 16, "bottleneck_dim": 8, **options})
    return build(o, BuildContext("dino", backbone=backbone)), backbone


def _batch(b: int = 6, locals_: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"global_views": torch.rand(b, 2, 1, 8, 8, generator=g),
            "local_views": torch.rand(b, locals_, 1, 6, 6, generator=g)}


def test_task_matches_lightly_with_centring_and_warmup():
    """Four optimizer steps of the task against lightly's DINOLoss fed view by view (no BatchNorm,
    so batching does not matter): the same loss at every step while the teacher temperature warms up
    (lightly: ``epoch=step``) and the centre moves, the same centre after each step."""
    lightly_loss = pytest.importorskip("lightly.loss")
    task, backbone = _task(norm="none", warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_steps=3,
                           student_temp=0.1, center_momentum=0.9)
    reference = lightly_loss.DINOLoss(output_dim=12, warmup_teacher_temp=0.04, teacher_temp=0.07,
                                      warmup_teacher_temp_epochs=3, student_temp=0.1, center_momentum=0.9)
    opt = torch.optim.SGD([*task.parameters(), *backbone.parameters()], lr=0.5)
    for step in range(4):
        batch = _batch(seed=step)
        task.on_step(step)
        out = task(batch, backbone)
        views = list(batch["global_views"].unbind(1)) + list(batch["local_views"].unbind(1))
        with torch.no_grad():
            teacher = [task.teacher.module(v) for v in views[:2]]
            student = [task.head(backbone(v)) for v in views]
            expected = reference(teacher, student, epoch=step)
        torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)
        lightly_temp = float(reference.teacher_temp_schedule[step]) if step < 3 else reference.teacher_temp
        assert out.metrics["teacher_temp"].item() == pytest.approx(lightly_temp)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        task.after_step(step + 1, 4)
        torch.testing.assert_close(task.center, reference.center.flatten())
    assert task.center.abs().sum() > 0


def test_centre_uses_every_micro_batch_of_a_step():
    """grad_accum = 2 with half batches moves the centre exactly as one full batch does."""
    full, backbone_full = _task(norm="none")
    half, backbone_half = _task(norm="none")  # same seed: same weights
    batch = _batch(b=8)
    full(batch, backbone_full)
    full.after_step(1, 10)
    for part in (slice(0, 4), slice(4, 8)):
        half({k: v[part] for k, v in batch.items()}, backbone_half)
    torch.testing.assert_close(half.center, torch.zeros(12))  # nothing moves before the step ends
    half.after_step(1, 10)
    torch.testing.assert_close(half.center, full.center)
    assert full.center.abs().sum() > 0


def test_no_centre_update_in_eval_mode():
    task, backbone = _task()
    task.eval(), backbone.eval()
    task(_batch(), backbone)
    task.after_step(1, 10)
    torch.testing.assert_close(task.center, torch.zeros(12))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _centre_worker(rank: int, world: int, port: int, batch: dict, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        task, backbone = _task(norm="none")
        b = batch["global_views"].shape[0] // world
        task({k: v[rank * b : (rank + 1) * b] for k, v in batch.items()}, backbone)
        task.after_step(1, 10)
        out[rank] = task.center.clone()
    finally:
        dist.destroy_process_group()


def test_centre_across_processes_matches_one_process():
    batch = _batch(b=8, seed=5)
    out = mp.Manager().dict()
    mp.spawn(_centre_worker, args=(2, _free_port(), batch, out), nprocs=2, join=True)
    task, backbone = _task(norm="none")
    task(batch, backbone)
    task.after_step(1, 10)
    torch.testing.assert_close(out[0], task.center)
    torch.testing.assert_close(out[1], task.center)


# ------------------------------------------------------------------------------ schedules and state


def test_last_layer_frozen_for_the_first_steps_then_trains():
    task, backbone = _task(freeze_last_layer_steps=2)
    assert task.find_unused_parameters  # DDP must allow the unused last layer
    opt = torch.optim.AdamW([*task.parameters(), *backbone.parameters()], lr=0.05, weight_decay=0.1)
    for step in range(4):
        opt.zero_grad(set_to_none=True)
        before = task.head.last_layer.weight().detach().clone()  # the effective (normalised) weight
        task.on_step(step)
        for micro in range(2):  # grad_accum = 2: freezing counts optimizer steps, not forward passes
            task(_batch(seed=10 * step + micro), backbone).loss.backward()
        frozen = step < 2
        assert (task.head.last_layer.weight_v.grad is None) == frozen, step  # no gradient at all, as the reference
        assert task.head.mlp[0].weight.grad.abs().sum() > 0  # the rest trains from the first step
        opt.step()
        task.after_step(step + 1, 4)
        moved = (task.head.last_layer.weight().detach() - before).abs().max()
        assert (moved == 0) if frozen else (moved > 1e-4), (step, moved)
    assert not _task(freeze_last_layer_steps=0)[0].find_unused_parameters


def test_teacher_follows_the_student_once_per_optimizer_step():
    task, backbone = _task(base_momentum=0.5, momentum_schedule="constant")
    task(_batch(), backbone)  # the first use copies the student
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(1.0)
    teacher_conv = next(task.teacher.module.backbone.parameters())
    before = teacher_conv.detach().clone()
    task.after_step(1, 10)
    torch.testing.assert_close(teacher_conv, 0.5 * before + 0.5 * next(backbone.parameters()))
    after = teacher_conv.detach().clone()
    task.after_step(1, 10)  # the same step again (a resumed run): nothing moves
    torch.testing.assert_close(teacher_conv, after)
    assert float(task.teacher.momentum) == 0.5


def test_state_holds_centre_steps_and_teacher_without_duplicating_the_backbone():
    task, backbone = _task()
    task.on_step(3)
    state = task.state_dict()
    assert {"center", "steps", "teacher.step", "teacher.momentum"} <= set(state)
    assert int(state["steps"]) == 3
    assert any(k.startswith("teacher.module.backbone.") for k in state)  # the teacher's own copy
    assert any(k.startswith("teacher.module.head.") for k in state)
    assert not any(k.startswith("backbone.") for k in state)  # the student's backbone belongs to the run
    assert all(not p.requires_grad for p in task.teacher.parameters())


def _metrics(run_dir) -> list[dict]:
    with open(run_dir / "metrics.jsonl") as f:
        return [r for r in map(json.loads, f) if r.get("kind") == "train"]


def test_schedules_follow_optimizer_steps_under_grad_accum(tmp_path, one_thread, monkeypatch):
    """The training loop with grad_accum = 2 logs the same teacher temperature and momentum per
    optimizer step as with grad_accum = 1 (and the same as the formulas)."""
    from selfsup.api import train

    monkeypatch.setenv("SELFSUP_MLFLOW", "0")  # an installed run logger costs seconds per run
    logged = {}
    for accum in (1, 2):
        run_dir = tmp_path / f"accum{accum}"
        train("dino-digits", overrides=[
            f'output_dir="{run_dir}"', "train.tensorboard=false", "train.epochs=", "train.max_steps=4",
            "train.warmup_steps=1", "train.log_every=1", "train.health.enabled=false",
            "train.batch_size=16", f"train.grad_accum={accum}", "train.workers=0", "train.precision=fp32",
            "data.train.options.limit=64", "tasks.dino.options.warmup_teacher_temp_steps=3",
            "tasks.dino.options.teacher_temp=0.06", "tasks.dino.options.output_dim=64",
            "tasks.dino.options.hidden_dim=32", "evaluators.knn=", "evaluators.linear_probe=",
            "augmentations.crops.options.local_crops=1",
        ])
        logged[accum] = [(r["step"], r["dino/teacher_temp"], r["dino/momentum"]) for r in _metrics(run_dir)]
    assert [s for s, _, _ in logged[1]] == [1, 2, 3, 4]
    for (s1, t1, m1), (s2, t2, m2) in zip(logged[1], logged[2], strict=True):
        assert s1 == s2 and t1 == pytest.approx(t2) and m1 == pytest.approx(m2)
        assert t1 == pytest.approx(teacher_temperature(s1 - 1, 0.04, 0.06, 3))
        # the momentum of the last teacher update (after step s1 - 1; the base before the first)
        assert m1 == pytest.approx(0.99 if s1 == 1 else cosine_momentum(s1 - 2, 4, 0.99))


# ------------------------------------------------------------------------------ conformance


class TestDINOConformance(TaskConformance):
    task = "dino"
    task_options = {"output_dim": 12, "hidden_dim": 16, "bottleneck_dim": 8, "warmup_teacher_temp": 0.04,
                    "teacher_temp": 0.07, "warmup_teacher_temp_steps": 2, "freeze_last_layer_steps": 1}
    data = ("digits", {"limit": 64})
    augment = [("multi_crop", {"global_size": 8, "local_size": 6, "local_crops": 2, "flip": 0.0})]
    backbone = ("small_cnn", {"widths": [8, 16]})
    bad_options = [{"output_dim": 1}, {"student_temp": 0.0}, {"teacher_temp": -0.1}, {"center_momentum": 1.0},
                   {"base_momentum": 1.5}, {"head_layers": 0}, {"momentum_schedule": "linear"}]
    option_variants = {"freeze_last_layer_steps": 0}
    inert_options = {
        "center_momentum": "the centre moves in after_step, which the suite does not call; tested above",
        "final_momentum": "the teacher moves in after_step, which the suite does not call; tested above",
        "momentum_schedule": "the teacher moves in after_step, which the suite does not call; tested above",
    }


# ------------------------------------------------------------------------------ learning


def test_shortened_quickstart_beats_random_init(tmp_path, one_thread, monkeypatch):
    """dino-digits shortened to 8 epochs at batch 128 (88 steps): kNN (k=200, t=0.1) on held-out digits
    must beat the same backbone at random init by 2 points (measured: 0.877 at random init, 0.911 trained)."""
    monkeypatch.setenv("SELFSUP_MLFLOW", "0")
    shortened = ["train.epochs=8", "train.batch_size=128", "train.warmup_steps=10"]
    trained, random_init = train_against_random_init("dino-digits", tmp_path / "run", shortened, evaluators=["knn"])
    print(f"kNN accuracy: random init {random_init['knn/accuracy']:.4f}, trained {trained['knn/accuracy']:.4f}")
    assert trained["knn/accuracy"] > random_init["knn/accuracy"] + 0.02, (trained, random_init)
