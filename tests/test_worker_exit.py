"""How a process torchrun started leaves (``selfsup.cli.worker_main``, chosen by ``python -m selfsup``
when ``TORCHELASTIC_RUN_ID`` is set): the command's exit status, its output flushed, ``atexit``
handlers run, and the interpreter's teardown skipped (where, we think, torch's gloo backend aborted
rank 1 of two 2-process CI runs). The skipped teardown itself is not observable from here."""

from __future__ import annotations

from conftest import cli, write_plugin, write_toy_recipe

from selfsup.engine.metrics import read_metrics

WORKER = {"TORCHELASTIC_RUN_ID": "test-worker-exit"}

ATEXIT = """
import atexit
import os
from pathlib import Path

import selfsup


def goodbye():
    Path(os.environ["ATEXIT_MARK"]).write_text("ran")
    print("goodbye", flush=False)  # after the command's last output: only the worker's own flush sends it


@selfsup.hookimpl
def on_train_start(run):
    atexit.register(goodbye)
"""


def test_a_worker_exits_with_the_commands_status_its_output_flushed_and_atexit_run(tmp_path):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "marks", ATEXIT)
    env = {**WORKER, "SELFSUP_PLUGINS_DIR": str(plugins), "ATEXIT_MARK": str(tmp_path / "atexit"),
           "PYTHONUNBUFFERED": ""}
    recipe = write_toy_recipe(tmp_path, max_steps=12, log_every=4)
    res = cli("train", str(recipe), "--no-progress", env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.rstrip().endswith("goodbye")  # buffered output is flushed before os._exit
    assert [r["step"] for r in read_metrics(tmp_path / "run") if r["kind"] == "train"] == [4, 8, 12]
    assert (tmp_path / "atexit").read_text() == "ran"


def test_a_worker_keeps_the_exit_status_of_a_failed_command(tmp_path):
    recipe = write_toy_recipe(tmp_path)
    res = cli("train", str(recipe), "--set", "train.max_stepz=3", env=WORKER)
    assert res.returncode == 2 and "max_stepz" in res.stderr and "max_steps" in res.stderr  # EXIT_RECIPE
    res = cli("no-such-command", env=WORKER)
    assert res.returncode == 2 and "no-such-command" in res.stderr  # click's usage error
