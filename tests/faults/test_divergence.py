"""Divergence: a checkpoint is only ever written for finite weights and optimizer state; a run never
exits 0 with non-finite weights; the advice fits the run's precision and the advice works."""

from __future__ import annotations

import pytest
from conftest import cli, write_blobs_recipe, write_plugin, write_toy_recipe
from safetensors.torch import load_file

from selfsup.engine import checkpoint as ckpt

# A task whose loss stays finite while its gradient becomes NaN from step `bad_from` on: the update,
# not the loss, makes the weights non-finite (what lr = 1e30 or an overflow in backward does).
NAN_GRAD_TASK = """
import selfsup
from selfsup.options import Options

class Opts(Options):
    bad_from: int = 5

def build(options, context):
    import torch
    from selfsup.components import TaskOutput

    class NanGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad * float("nan")

    class Task(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.step = 0

        def on_step(self, step):
            self.step = step

        def forward(self, batch, backbone):
            out = backbone(batch["input"])
            if self.step >= options.bad_from:
                out = NanGrad.apply(out)
            return TaskOutput(loss=out.pow(2).mean())

    return Task()

@selfsup.hookimpl
def register_pretext_tasks(register):
    register("nan_grad", build, options=Opts, summary="Finite loss, NaN gradient from a chosen step.")
"""


def _recipe(tmp_path, *, bad_from: int, max_steps: int, every: int, precision: str = "fp32"):
    return write_blobs_recipe(tmp_path, "nan_grad", f"{{ bad_from = {bad_from} }}", max_steps=max_steps,
                              checkpoint_every=every, log_every=1, precision=precision)


def _finite(path):
    return all(v.isfinite().all() for v in load_file(str(path / "model.safetensors")).values())


def test_nonfinite_weights_at_the_final_step_never_exit_0(tmp_path):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "nangrad", NAN_GRAD_TASK)
    recipe = _recipe(tmp_path, bad_from=9, max_steps=10, every=5)  # the last step's update is NaN
    res = cli("--plugins-dir", str(plugins), "train", str(recipe))
    assert res.returncode == 3, res.stderr
    assert "Traceback" not in res.stderr
    assert "non-finite weights after step 10" in res.stderr
    assert "step-00000005" in res.stderr
    saved = ckpt.list_checkpoints(tmp_path / "run")
    assert [p.name for p in saved] == ["step-00000005"], "no checkpoint of the non-finite state"
    assert _finite(saved[-1])
    assert not (tmp_path / "run" / "export").exists() or not any((tmp_path / "run" / "export").iterdir())


def test_nonfinite_weights_before_a_periodic_checkpoint_keep_the_last_finite_one(tmp_path):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "nangrad", NAN_GRAD_TASK)
    recipe = _recipe(tmp_path, bad_from=6, max_steps=40, every=3)  # NaN weights after step 7: next loss NaN
    res = cli("--plugins-dir", str(plugins), "train", str(recipe))
    assert res.returncode == 3, res.stderr
    names = [p.name for p in ckpt.list_checkpoints(tmp_path / "run")]
    assert names == ["step-00000003", "step-00000006"]
    assert all(_finite(p) for p in ckpt.list_checkpoints(tmp_path / "run"))
    assert "the last good checkpoint is" in res.stderr and "step-00000006" in res.stderr


@pytest.mark.parametrize("precision, says, never", [
    ("fp32", "lower train.lr", "use precision 'fp32'"),
    ("bf16", "use precision 'fp32'", "fp16 overflows"),
])
def test_advice_fits_the_precision(tmp_path, precision, says, never):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "nangrad", NAN_GRAD_TASK)
    recipe = _recipe(tmp_path, bad_from=4, max_steps=20, every=2, precision=precision)
    res = cli("--plugins-dir", str(plugins), "train", str(recipe))
    assert res.returncode == 3, res.stderr
    assert says in res.stderr and never not in res.stderr
    assert "--resume" in res.stderr


def test_huge_lr_diverges_without_saving_nan_and_the_advice_works(tmp_path):
    recipe = write_toy_recipe(tmp_path, max_steps=30, checkpoint_every=5, log_every=1)
    first = cli("train", str(recipe), "--set", "train.max_steps=10")
    assert first.returncode == 0, first.stderr
    # continue the same run at an absurd lr: the weights blow up; no NaN checkpoint is ever written
    res = cli("train", str(recipe), "--resume", "--set", "train.lr=1e30")
    assert res.returncode == 3, res.stderr
    assert "Traceback" not in res.stderr
    assert all(_finite(p) for p in ckpt.list_checkpoints(tmp_path / "run"))
    assert ckpt.latest_checkpoint(tmp_path / "run").name == "step-00000010"
    # following the advice (--resume with a lower lr) trains on from the last good checkpoint
    ok = cli("train", str(recipe), "--resume", "--set", "train.lr=1e-3")
    assert ok.returncode == 0, ok.stderr
    assert "train.lr: 0.003 -> 0.001 (applied)" in ok.stderr + ok.stdout
    assert ckpt.latest_checkpoint(tmp_path / "run").name == "step-00000030"
