"""The EMA teacher (selfsup.lib.teacher): the update against its formula, the schedules, tied weights,
idempotence, the first-use copy; and in the loop: one update per optimizer step whatever grad_accum is,
resume after a kill gives the uninterrupted run's teacher, two DDP or FSDP processes give one process's."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import write_plugin
from safetensors.torch import load_file
from torch import nn

from selfsup.lib import EMATeacher, cosine_momentum, linear_momentum
from selfsup.lib.runs import latest_checkpoint

# ------------------------------------------------------------------------------------------ unit


def test_schedules_against_their_formulas():
    assert cosine_momentum(0, 100, 0.99) == pytest.approx(0.99)
    assert cosine_momentum(100, 100, 0.99) == pytest.approx(1.0)
    assert cosine_momentum(250, 100, 0.99) == pytest.approx(1.0)  # clamped past the end
    for k in (1, 37, 50, 99):
        expected = 1 - (1 - 0.99) * (math.cos(math.pi * k / 100) + 1) / 2
        assert cosine_momentum(k, 100, 0.99) == pytest.approx(expected)
    assert cosine_momentum(50, 100, 0.99) == pytest.approx(0.995)
    assert linear_momentum(0, 10, 0.999, 0.9999) == pytest.approx(0.999)
    assert linear_momentum(5, 10, 0.999, 0.9999) == pytest.approx(0.99945)
    assert linear_momentum(20, 10, 0.999, 0.9999) == pytest.approx(0.9999)


def _student() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def test_update_is_the_ema_formula_for_parameters_and_buffers():
    student = _student()
    teacher = EMATeacher(student, base_momentum=0.9, schedule="constant")
    teacher(torch.randn(5, 4))  # first use: an exact copy of the student
    before = {k: v.clone() for k, v in teacher.module.state_dict().items()}
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    student.train()
    student(torch.randn(16, 4))  # moves the BatchNorm running statistics and num_batches_tracked
    m = teacher.update(1, 10)
    assert m == 0.9 and float(teacher.momentum) == pytest.approx(0.9) and int(teacher.step) == 1
    after, current = teacher.module.state_dict(), student.state_dict()
    for k, v in after.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.9 * before[k] + 0.1 * current[k])
        else:  # num_batches_tracked is copied
            assert torch.equal(v, current[k]), k
    assert not any(p.requires_grad for p in teacher.module.parameters())


def test_scheduled_momentum_follows_the_step_passed():
    teacher = EMATeacher(_student(), base_momentum=0.99)
    assert teacher.update(1, 100) == pytest.approx(cosine_momentum(0, 100, 0.99))
    assert teacher.update(51, 100) == pytest.approx(cosine_momentum(50, 100, 0.99))
    ramped = EMATeacher(_student(), base_momentum=0.999, final_momentum=0.9999, schedule="linear", ramp_steps=10)
    assert ramped.update(6, 1000) == pytest.approx(linear_momentum(5, 10, 0.999, 0.9999))
    assert ramped.update(7, 1000, momentum=0.5) == 0.5  # an explicit momentum wins


def test_an_update_for_a_step_already_absorbed_changes_nothing():
    student = _student()
    teacher = EMATeacher(student, base_momentum=0.5, schedule="constant")
    teacher.update(3, 10)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    snapshot = {k: v.clone() for k, v in teacher.state_dict().items()}
    for step in (3, 2):  # a resumed run calling after_step again for the restored step, or an older one
        teacher.update(step, 10)
        assert all(torch.equal(v, snapshot[k]) for k, v in teacher.state_dict().items())
    teacher.update(4, 10)
    assert not torch.equal(teacher.module[0].weight, snapshot["module.0.weight"])


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(6, 4)
        self.out = nn.Linear(4, 6, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, ids):
        return self.out(self.embed(ids))


def test_tied_weights_stay_tied_and_are_averaged_once():
    student = Tied()
    teacher = EMATeacher(student, base_momentum=0.5, schedule="constant")
    teacher.sync()
    before = teacher.module.embed.weight.clone()
    with torch.no_grad():
        student.embed.weight.add_(2.0)
    teacher.update(1, 10)
    assert teacher.module.out.weight is teacher.module.embed.weight
    torch.testing.assert_close(teacher.module.embed.weight, 0.5 * before + 0.5 * student.embed.weight.detach())
    assert teacher.module.embed.weight.data_ptr() != student.embed.weight.data_ptr()  # no sharing with the student


def test_first_use_copies_weights_loaded_into_the_student_after_the_teacher_was_built():
    student = _student()
    teacher = EMATeacher(student)
    with torch.no_grad():  # what [backbones.X.init] does after the task (and its teacher) was built
        student[0].weight.fill_(0.25)
    teacher(torch.randn(2, 4))
    assert torch.equal(teacher.module[0].weight, student[0].weight)
    # a teacher restored from a checkpoint (step >= 0) is not overwritten by the student
    restored = EMATeacher(student)
    restored.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        student[0].weight.fill_(-1.0)
    restored(torch.randn(2, 4))
    assert float(restored.module[0].weight[0, 0]) == 0.25


def test_the_student_is_referenced_not_registered():
    student = _student()
    teacher = EMATeacher(student)
    keys = set(teacher.state_dict())
    assert keys == {f"module.{k}" for k in student.state_dict()} | {"step", "momentum"}
    assert sum(p.numel() for p in teacher.parameters()) == sum(p.numel() for p in student.parameters())
    with pytest.raises(ValueError, match="momentum must lie"):
        EMATeacher(student, base_momentum=1.5)


def test_forward_does_not_record_gradients():
    teacher = EMATeacher(_student())
    out = teacher(torch.randn(3, 4))
    assert not out.requires_grad


# ------------------------------------------------------------------------------------------ in the loop

PLUGIN = """
import os

import torch
import torch.nn.functional as F
from torch import nn

import selfsup
from selfsup.components import TaskOutput
from selfsup.lib import EMATeacher
from selfsup.options import Options


class TeacherOptions(Options):
    base_momentum: float = 0.9


class Distill(nn.Module):
    # predict the teacher's features of the input from the student's: the shape of BYOL, on blobs
    def __init__(self, options, backbone):
        super().__init__()
        self.predictor = nn.Linear(backbone.output_dim, backbone.output_dim)
        self.teacher = EMATeacher(backbone, base_momentum=options.base_momentum)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def forward(self, batch, backbone):
        x = batch["input"]  # [B, D]
        target = self.teacher(x)  # [B, F]
        loss = F.mse_loss(self.predictor(backbone(x)), target)
        return TaskOutput(loss=loss, metrics={"momentum": float(self.teacher.momentum)})

    def on_step(self, step):
        kill = os.environ.get("TT_KILL_STEP")
        if kill and step == int(kill):
            os._exit(9)

    def after_step(self, step, total_steps):
        self.teacher.update(step, total_steps)
        self.updates += 1


@selfsup.hookimpl
def register_pretext_tasks(register):
    register("distill", lambda options, context: Distill(options, context.backbone), options=TeacherOptions,
             summary="EMA-teacher test task.", consumes={"input": "float32[D]"})
"""

RECIPE = """
seed = 0
output_dir = "{output_dir}"
[data.train]
type = "blobs"
options = {{ n = 256, dim = 8 }}
[backbones.mlp]
type = "mlp"
options = {{ in_dim = 8, hidden_dims = [32], out_dim = 16, norm = false }}
[tasks.distill]
type = "distill"
data = "train"
backbone = "mlp"
[train]
optimizer = "sgd"
lr = 0.1
batch_size = 32
max_steps = 8
log_every = 1
checkpoint_every = 3
deterministic = true
tensorboard = false
"""


@pytest.fixture
def plugins(tmp_path):
    write_plugin(tmp_path / "plugins", "tt", PLUGIN)
    return tmp_path / "plugins"


def train_cli(tmp_path: Path, plugins: Path, name: str, *args: str, env: dict[str, str] | None = None,
              write: bool = True) -> subprocess.CompletedProcess:
    recipe = tmp_path / f"{name}.toml"
    if write:
        recipe.write_text(RECIPE.format(output_dir=tmp_path / name))
    full = {**os.environ, "SELFSUP_PLUGINS_DIR": str(plugins), "PYTHONUNBUFFERED": "1", "SELFSUP_MLFLOW": "0",
            **(env or {})}
    return subprocess.run([sys.executable, "-m", "selfsup", "train", str(recipe), "--no-progress", *args],
                          env=full, capture_output=True, text=True, timeout=600)


def final(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(run_dir) / "model.safetensors"))


def teacher_of(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if ".teacher." in k}


def test_one_teacher_update_per_optimizer_step_whatever_grad_accum_is(tmp_path, plugins):
    one = train_cli(tmp_path, plugins, "one")
    assert one.returncode == 0, one.stderr
    accum = train_cli(tmp_path, plugins, "accum", "--set", "train.grad_accum=4")
    assert accum.returncode == 0, accum.stderr
    a, b = final(tmp_path / "one"), final(tmp_path / "accum")
    assert int(a["tasks.distill.updates"]) == int(b["tasks.distill.updates"]) == 8
    assert int(a["tasks.distill.teacher.step"]) == int(b["tasks.distill.teacher.step"]) == 8
    assert float(b["tasks.distill.teacher.momentum"]) == pytest.approx(cosine_momentum(7, 8, 0.9))
    teacher = teacher_of(a)
    assert teacher and all(k.replace("tasks.distill.teacher.module.", "backbones.mlp.") in a
                           for k in teacher if ".module." in k)
    # the same global batch in 4 micro-batches: the same gradients, so the same teacher (float32 rounding)
    for k in teacher:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6)
    # the teacher moved with the student but is not it
    w_teacher, w_student = a["tasks.distill.teacher.module.net.0.weight"], a["backbones.mlp.net.0.weight"]
    assert not torch.equal(w_teacher, w_student)


def test_resume_after_a_kill_gives_the_uninterrupted_teacher(tmp_path, plugins):
    straight = train_cli(tmp_path, plugins, "straight")
    assert straight.returncode == 0, straight.stderr
    killed = train_cli(tmp_path, plugins, "killed", env={"TT_KILL_STEP": "5"})  # last checkpoint: step 3
    assert killed.returncode != 0
    assert latest_checkpoint(tmp_path / "killed").name.endswith("3")
    resumed = train_cli(tmp_path, plugins, "killed", "--resume", write=False)
    assert resumed.returncode == 0, resumed.stderr
    a, b = final(tmp_path / "straight"), final(tmp_path / "killed")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_two_ddp_or_fsdp_processes_keep_one_processs_teacher(tmp_path, plugins):
    one = train_cli(tmp_path, plugins, "single", "--set", "train.max_steps=4")
    assert one.returncode == 0, one.stderr
    two = train_cli(tmp_path, plugins, "double", "--set", "train.max_steps=4", "--nproc", "2")
    assert two.returncode == 0, two.stderr
    # under FSDP the teacher is sharded with the root unit and updated shard by shard, outside any forward
    sharded = train_cli(tmp_path, plugins, "sharded", "--set", "train.max_steps=4", "--nproc", "2",
                        "--set", "train.strategy=fsdp")
    assert sharded.returncode == 0, sharded.stderr
    a = final(tmp_path / "single")
    for other in ("double", "sharded"):
        b = final(tmp_path / other)
        assert int(b["tasks.distill.teacher.step"]) == 4
        for k in teacher_of(a):
            torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6)
