"""Resume with a changed recipe: safe changes (lr, schedule, weight decay, length) take effect and are
printed; unsafe ones (model shapes, optimizer, fp16 precision, data layout) are refused in one
message listing each; --resume-weights-only starts a fresh optimizer from the checkpoint's weights."""

from __future__ import annotations

import math

import pytest
from conftest import cli, write_toy_recipe

from selfsup.engine import checkpoint as ckpt
from selfsup.engine.metrics import read_metrics
from selfsup.engine.optim import lr_factor


@pytest.fixture()
def trained(tmp_path):
    recipe = write_toy_recipe(tmp_path, max_steps=20, checkpoint_every=10, log_every=1)
    res = cli("train", str(recipe))
    assert res.returncode == 0, res.stderr
    return recipe


def _lr_at(run_dir, step):
    return next(r["lr"] for r in read_metrics(run_dir) if r["kind"] == "train" and r["step"] == step)


def test_changed_lr_schedule_and_length_take_effect(trained, tmp_path):
    res = cli("train", str(trained), "--resume", "--set", "train.lr=3e-2", "--set", "train.max_steps=30",
              "--set", "train.weight_decay=0.05", "--set", "train.schedule=\"linear\"")
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    for line in ("train.lr: 0.003 -> 0.03 (applied)", "train.max_steps: 20 -> 30 (applied)",
                 "train.weight_decay: 0.0 -> 0.05 (applied)", "train.schedule: 'cosine' -> 'linear' (applied)"):
        assert line in out
    # the lr logged at step 25 is the new schedule's (the lr used for the update of step 25 = index 24)
    expected = 3e-2 * lr_factor(24, total=30, warmup=5, schedule="linear", min_ratio=0.0)
    assert math.isclose(_lr_at(tmp_path / "run", 25), expected, rel_tol=1e-6)
    state = ckpt.load_state(ckpt.latest_checkpoint(tmp_path / "run"))
    groups = state["optimizer"]["param_groups"]
    assert groups[0]["weight_decay"] == 0.05 and groups[-1]["weight_decay"] == 0.0  # 1-D params never decay
    assert ckpt.latest_checkpoint(tmp_path / "run").name == "step-00000030"


def test_unsafe_changes_are_refused_in_one_message(trained, tmp_path):
    res = cli("train", str(trained), "--resume", "--set", "train.optimizer=\"sgd\"",
              "--set", "backbones.mlp.options.hidden_dims=[128]", "--set", "train.precision=\"fp16\"",
              "--set", "train.batch_size=32")
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and "Error(s) in loading state_dict" not in res.stderr
    for field in ("train.optimizer", "backbones.mlp.options.hidden_dims", "train.precision", "train.batch_size"):
        assert field in res.stderr
    assert "--resume-weights-only" in res.stderr
    assert ckpt.latest_checkpoint(tmp_path / "run").name == "step-00000020", "nothing written"


def test_weights_only_resume_allows_a_new_optimizer_and_precision(trained, tmp_path):
    res = cli("train", str(trained), "--resume-weights-only", "--set", "train.optimizer=\"sgd\"",
              "--set", "train.max_steps=26", "--set", "train.precision=\"bf16\"")
    assert res.returncode == 0, res.stderr
    state = ckpt.load_state(ckpt.latest_checkpoint(tmp_path / "run"))
    assert state["step"] == 26
    assert "momentum" in state["optimizer"]["param_groups"][0]  # SGD's state, not AdamW's


def test_weights_only_resume_still_refuses_changed_shapes(trained, tmp_path):
    res = cli("train", str(trained), "--resume-weights-only", "--set", "backbones.mlp.options.hidden_dims=[128]")
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert "cannot resume from" in res.stderr
