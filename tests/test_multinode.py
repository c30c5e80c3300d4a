"""Multi-node launch and elastic restarts through torchrun: two "nodes" on 127.0.0.1 follow the loss
curve of one node with the same processes in all, and a worker killed mid-run is restarted by
torchrun (``--max-restarts``) and resumes from the newest checkpoint to the uninterrupted result."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli, write_plugin, write_toy_recipe

from selfsup.engine.metrics import read_metrics

RTOL = 1e-4  # as in test_ddp.py: all-reduce order differs between layouts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir) if r["kind"] == "train"}


def _command(recipe: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "selfsup", "train", str(recipe), "--no-progress", *args]


def test_two_nodes_on_localhost_match_one_node(tmp_path):
    kw = dict(max_steps=12, log_every=1, batch_size=64)
    one = write_toy_recipe(tmp_path, "one.toml", output_dir=str(tmp_path / "one"), **kw)
    two = write_toy_recipe(tmp_path, "two.toml", output_dir=str(tmp_path / "two"), **kw)
    res = cli("train", str(one), "--nproc", "2", timeout=600)
    assert res.returncode == 0, res.stderr

    endpoint = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    nodes = [subprocess.Popen(_command(two, "--nproc", "1", "--nnodes", "2", "--rdzv-endpoint", endpoint,
                                       "--rdzv-id", "two-nodes"),
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err[-3000:]

    a, b = _train_losses(tmp_path / "one"), _train_losses(tmp_path / "two")
    assert sorted(a) == sorted(b) == list(range(1, 13))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=RTOL), (step, a[step], b[step])


KILLER = """
import os

import selfsup


@selfsup.hookimpl
def on_step_end(run, step, metrics):
    # the first attempt's rank 0 dies after step 5 (last checkpoint: step 3); torchrun restarts the workers
    if os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0" and step == int(os.environ["KILL_AT"]):
        os._exit(1)
"""


def test_a_killed_worker_is_restarted_and_resumes_from_the_newest_checkpoint(tmp_path):
    kw = dict(max_steps=8, log_every=1, batch_size=64, checkpoint_every=3)
    straight = write_toy_recipe(tmp_path, "straight.toml", output_dir=str(tmp_path / "straight"), **kw)
    res = cli("train", str(straight), "--nproc", "2", "--max-restarts", "1", timeout=600)
    assert res.returncode == 0, res.stderr

    plugins = tmp_path / "plugins"
    write_plugin(plugins, "killer", KILLER)
    elastic = write_toy_recipe(tmp_path, "elastic.toml", output_dir=str(tmp_path / "elastic"), **kw)
    res = cli("train", str(elastic), "--nproc", "2", "--max-restarts", "1", timeout=600,
              env={"SELFSUP_PLUGINS_DIR": str(plugins), "KILL_AT": "5"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "restart 1 after a worker failed: resuming" in res.stderr

    a, b = _train_losses(tmp_path / "straight"), _train_losses(tmp_path / "elastic")
    assert max(b) == 8
    for step in range(1, 9):  # steps 4 and 5 ran twice; the second time from the checkpoint, as the first
        assert b[step] == pytest.approx(a[step], rel=RTOL), (step, a[step], b[step])


def test_multinode_needs_an_endpoint(tmp_path):
    recipe = write_toy_recipe(tmp_path)
    res = cli("train", str(recipe), "--nnodes", "2")
    assert res.returncode != 0
    assert "--nnodes > 1 needs --rdzv-endpoint" in res.stderr
    res = cli("train", str(recipe), "--nnodes", "2", "--rdzv-endpoint", "127.0.0.1:1", "--rdzv-backend", "static")
    assert res.returncode != 0 and "--node-rank" in res.stderr
