"""Preemption: SIGTERM / SIGINT finish the step, save a checkpoint, print how to resume and exit 75;
a second signal stops at once; the resumed run ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli, write_plugin, write_toy_recipe
from safetensors.torch import load_file

from selfsup.engine import checkpoint as ckpt

SLOW_STEPS = """
import time, selfsup

@selfsup.hookimpl
def on_step_end(run, step, metrics):
    time.sleep({delay})
"""


def _start(args: list[str], plugins: Path) -> subprocess.Popen:
    env = {**os.environ, "SELFSUP_PLUGINS_DIR": str(plugins), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "selfsup", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_step(run_dir: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until metrics.jsonl holds a train record at ``step`` or later."""
    deadline = time.time() + timeout
    path = run_dir / "metrics.jsonl"
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        if path.is_file():
            lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
            if any(r.get("kind") == "train" and r["step"] >= step for r in lines):
                return
        time.sleep(0.02)
    raise AssertionError(f"the run did not reach step {step}")


def _weights(run_dir: Path) -> dict:
    return load_file(str(ckpt.latest_checkpoint(run_dir) / "model.safetensors"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_then_resume_matches_uninterrupted_run(tmp_path, sig):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "slow", SLOW_STEPS.format(delay=0.05))
    common = dict(max_steps=60, log_every=2, dropout=0.2)  # checkpoint_every = 0: only the final checkpoint
    reference = write_toy_recipe(tmp_path, "ref.toml", output_dir=str(tmp_path / "ref"), **common)
    stopped = write_toy_recipe(tmp_path, "stop.toml", output_dir=str(tmp_path / "stop"), **common)
    assert cli("train", str(reference)).returncode == 0

    proc = _start(["train", str(stopped), "--no-progress"], plugins)
    _wait_for_step(tmp_path / "stop", 10, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err
    assert "Traceback" not in err
    assert f"{signal.Signals(sig).name} received" in err and "--resume" in err
    saved = ckpt.latest_checkpoint(tmp_path / "stop")
    assert saved is not None and 10 <= int(saved.name.split("-")[1]) < 60, "a checkpoint of the step reached"
    assert str(saved) in err

    res = cli("train", str(stopped), "--resume")
    assert res.returncode == 0, res.stderr
    a, b = _weights(tmp_path / "ref"), _weights(tmp_path / "stop")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a), "resume after SIGTERM is bit-identical"


def test_second_signal_stops_at_once_without_saving(tmp_path):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "slow", SLOW_STEPS.format(delay=4.0))  # each step's end takes 4 s
    recipe = write_toy_recipe(tmp_path, max_steps=50, log_every=1)
    proc = _start(["train", str(recipe), "--no-progress"], plugins)
    _wait_for_step(tmp_path / "run", 1, proc)
    proc.send_signal(signal.SIGTERM)
    time.sleep(1.5)  # past the window in which a repeat counts as the same request
    started = time.time()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert time.time() - started < 3.0, "the second signal must not wait for the step to finish"
    assert "stopping at once" in err
    assert ckpt.list_checkpoints(tmp_path / "run") == []


def test_sigterm_under_ddp_saves_on_every_rank_and_resumes(tmp_path):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "slow", SLOW_STEPS.format(delay=0.1))
    recipe = write_toy_recipe(tmp_path, max_steps=40, log_every=2)
    proc = _start(["train", str(recipe), "--nproc", "2", "--no-progress"], plugins)
    _wait_for_step(tmp_path / "run", 6, proc, timeout=240)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 75, err
    saved = ckpt.latest_checkpoint(tmp_path / "run")
    assert saved is not None and 6 <= int(saved.name.split("-")[1]) < 40
    state = ckpt.load_state(saved)
    assert len(state["rng"]) == 2, "every rank's RNG state is in the checkpoint"
    res = cli("train", str(recipe), "--resume", "--nproc", "2", timeout=400)
    assert res.returncode == 0, res.stderr
    assert int(ckpt.latest_checkpoint(tmp_path / "run").name.split("-")[1]) == 40
