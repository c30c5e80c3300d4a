"""Crash safety: kill -9 then --resume matches an uninterrupted run bit for bit; a NaN loss stops
training with the last good checkpoint kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import cli, write_blobs_recipe, write_plugin, write_toy_recipe
from safetensors.torch import load_file

from selfsup.engine import checkpoint as ckpt

SLOW_STEPS = """
import time, selfsup

@selfsup.hookimpl
def on_step_end(run, step, metrics):
    time.sleep(0.03)  # gives the test time to kill the process mid-run
"""

NAN_TASK = """
import selfsup
from selfsup.options import Options

class Opts(Options):
    nan_at: int = 12

def build(options, context):
    import torch
    from selfsup.components import TaskOutput

    class Exploding(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("calls", torch.zeros((), dtype=torch.long))
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, batch, backbone):
            self.calls += 1
            loss = (backbone(batch["input"]) * self.scale).pow(2).mean()
            if int(self.calls) >= options.nan_at:
                loss = loss * float("nan")
            return TaskOutput(loss=loss)

    return Exploding()

@selfsup.hookimpl
def register_pretext_tasks(register):
    register("exploding", build, options=Opts, summary="Becomes NaN at a chosen step.")
"""


def _weights(run_dir):
    return load_file(str(ckpt.latest_checkpoint(run_dir) / "model.safetensors"))


def test_kill_9_then_resume_matches_uninterrupted_run(tmp_path):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "slow", SLOW_STEPS)
    # dropout makes the run consume global RNG, so RNG state must be restored exactly too
    common = dict(max_steps=80, checkpoint_every=10, keep=2, dropout=0.2, log_every=5)
    reference = write_toy_recipe(tmp_path, "ref.toml", output_dir=str(tmp_path / "ref"), **common)
    crashing = write_toy_recipe(tmp_path, "crash.toml", output_dir=str(tmp_path / "crash"), **common)

    assert cli("train", str(reference)).returncode == 0

    env = {**os.environ, "SELFSUP_PLUGINS_DIR": str(plugins)}
    proc = subprocess.Popen([sys.executable, "-m", "selfsup", "train", str(crashing)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        done = ckpt.list_checkpoints(tmp_path / "crash")
        if done and int(done[-1].name.split("-")[1]) >= 30:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = ckpt.latest_checkpoint(tmp_path / "crash")
    assert killed_at is not None and int(killed_at.name.split("-")[1]) < 80, "the run finished before the kill"

    res = cli("train", str(crashing), "--resume")
    assert res.returncode == 0, res.stderr
    a, b = _weights(tmp_path / "ref"), _weights(tmp_path / "crash")
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] == b[key]).all(), f"{key} differs after resume"
    steps = [r["step"] for r in ckpt_metrics(tmp_path / "crash") if r["kind"] == "train"]
    assert steps == list(range(5, 81, 5)), "metrics must continue without repeats"


def ckpt_metrics(run_dir):
    from selfsup.engine.metrics import read_metrics

    return read_metrics(run_dir)


def test_resume_without_checkpoint_starts_fresh(tmp_path):
    res = cli("train", str(write_toy_recipe(tmp_path, max_steps=8)), "--resume")
    assert res.returncode == 0, res.stderr


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "exploding", NAN_TASK)
    recipe = write_blobs_recipe(tmp_path, "exploding", "{ nan_at = 12 }", task="boom", max_steps=50,
                                checkpoint_every=5, log_every=1)
    res = cli("--plugins-dir", str(plugins), "train", str(recipe))
    assert res.returncode == 3, res.stderr
    assert "Traceback" not in res.stderr
    assert "non-finite loss at step 12 (boom=nan" in res.stderr
    assert "the last good checkpoint is" in res.stderr and "step-00000010" in res.stderr
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "run")] == ["step-00000005", "step-00000010"]
    weights = _weights(tmp_path / "run")
    assert all(v.isfinite().all() for v in weights.values())
