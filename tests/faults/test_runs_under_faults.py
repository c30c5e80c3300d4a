"""Whole runs under faults, through the CLI: kill -9 at seeded random steps and in the middle of a
checkpoint write, a damaged newest checkpoint, and a disk that fills up. Each resume ends
bit-identical to an uninterrupted run; nothing ends in a traceback."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli, write_plugin, write_toy_recipe
from diskfull import small_tmpfs
from safetensors.torch import load_file

from selfsup.engine import checkpoint as ckpt

# Slows each step and, when asked, each checkpoint write (the write pauses between its two data
# files, after touching a marker), so the test can kill the process at a chosen moment.
SLOW = """
import os, time, selfsup
import selfsup.engine.checkpoint as ckpt

_save_state = ckpt._save_state

def _slow_save_state(state, path):
    marker = os.environ.get("FAULTS_WRITING_MARKER")
    if marker:
        open(marker, "w").close()
        time.sleep(2.0)
    return _save_state(state, path)

ckpt._save_state = _slow_save_state

@selfsup.hookimpl
def on_step_end(run, step, metrics):
    time.sleep(0.03)
"""

COMMON = dict(max_steps=60, checkpoint_every=5, keep=3, dropout=0.2, log_every=5)


def _weights(run_dir: Path) -> dict:
    return load_file(str(ckpt.latest_checkpoint(run_dir) / "model.safetensors"))


def _same(a: Path, b: Path) -> bool:
    x, y = _weights(a), _weights(b)
    return x.keys() == y.keys() and all((x[k] == y[k]).all() for k in x)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    res = cli("train", str(write_toy_recipe(root, output_dir=str(root / "run"), **COMMON)))
    assert res.returncode == 0, res.stderr
    return root / "run"


def _start(recipe: Path, plugins: Path, env: dict | None = None) -> subprocess.Popen:
    full = {**os.environ, "SELFSUP_PLUGINS_DIR": str(plugins), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "selfsup", "train", str(recipe), "--resume", "--no-progress"],
                            env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_kill_9_at_random_steps_then_resume_is_bit_identical(tmp_path, reference):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "slow", SLOW)
    recipe = write_toy_recipe(tmp_path, output_dir=str(tmp_path / "run"), **COMMON)
    rng = random.Random(12)  # seeded: the same kill moments on every run of the suite
    for target in sorted(rng.sample(range(8, 56), 3)):
        proc = _start(recipe, plugins)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            done = ckpt.list_checkpoints(tmp_path / "run")
            if done and int(done[-1].name[5:]) >= target - target % 5:
                break
            time.sleep(0.01)
        time.sleep(rng.random() * 0.1)  # somewhere inside the following steps
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    res = cli("train", str(recipe), "--resume")
    assert res.returncode == 0, res.stderr
    assert _same(reference, tmp_path / "run")


def test_kill_9_during_a_checkpoint_write_then_resume_is_bit_identical(tmp_path, reference):
    plugins, marker = tmp_path / "plugins", tmp_path / "writing"
    write_plugin(plugins, "slow", SLOW)
    recipe = write_toy_recipe(tmp_path, output_dir=str(tmp_path / "run"), **COMMON)
    proc = _start(recipe, plugins, {"FAULTS_WRITING_MARKER": str(marker)})
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline:
        time.sleep(0.01)
    assert marker.exists(), "no checkpoint write started"
    time.sleep(0.5)  # the weights are written, the state is not
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leftovers = [p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
    assert leftovers, "the kill should land inside a write"
    res = cli("train", str(recipe), "--resume")
    assert res.returncode == 0, res.stderr
    assert not [p for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
    assert _same(reference, tmp_path / "run")


@pytest.mark.parametrize("damage", ["truncate", "garble", "delete_state", "zero_meta"])
def test_damaged_newest_checkpoint_is_named_and_the_run_resumes_from_the_one_before(tmp_path, reference, damage):
    recipe = write_toy_recipe(tmp_path, output_dir=str(tmp_path / "run"), **{**COMMON, "max_steps": 60})
    first = cli("train", str(recipe), "--set", "train.max_steps=60", "--set", "train.checkpoint_every=5")
    assert first.returncode == 0, first.stderr
    newest = ckpt.latest_checkpoint(tmp_path / "run")
    weights = newest / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "garble":
        data = bytearray(weights.read_bytes())
        data[-64:-32] = bytes(32)  # same size, different tensor bytes
        weights.write_bytes(bytes(data))
    elif damage == "delete_state":
        (newest / "state.pt").unlink()
    else:
        (newest / "meta.json").write_text("")
    # the damaged step-60 is skipped; training redoes 55 -> 60 from step-55 and ends where it did
    res = cli("train", str(recipe), "--resume")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    assert "damaged checkpoint skipped" in res.stderr and "step-00000060" in res.stderr
    assert _same(reference, tmp_path / "run")


def test_disk_full_during_training_says_so_and_keeps_the_last_good_checkpoint(tmp_path):
    with small_tmpfs(tmp_path / "disk", 1024) as disk:
        recipe = write_toy_recipe(tmp_path, output_dir=str(disk / "run"), max_steps=40, checkpoint_every=2,
                                  keep=100, log_every=1)
        res = cli("train", str(recipe))
        assert res.returncode == 74, res.stderr[-2000:]
        assert "Traceback" not in res.stderr
        assert "No space left on device" in res.stderr and "is kept" in res.stderr
        run = disk / "run"
        assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
        kept = ckpt.find_resumable(run)
        assert kept[0] is not None and kept[1] == [], "every checkpoint left is intact"
