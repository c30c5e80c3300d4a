"""A tiny selfsup run built from the core's own components (``tensor_file`` data, an ``mlp``
backbone, the ``finetune`` task, the ``knn`` evaluator), so these tests need only the core and this
plugin: ``SELFSUP_PLUGINS=mlflow`` keeps every other installed plugin out, in this process and in
the CLI subprocesses."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ["SELFSUP_PLUGINS"] = "mlflow"  # before the first plugin manager: core + this plugin only

ENV = ("SELFSUP_MLFLOW", "SELFSUP_MLFLOW_URI", "SELFSUP_MLFLOW_EXPERIMENT", "SELFSUP_MLFLOW_ARTIFACTS",
       "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")

RECIPE = """
seed = 0
output_dir = "{output_dir}"

[data.train]
type = "tensor_file"
options = {{ path = "{data}", split = "train" }}

[data.val]
type = "tensor_file"
options = {{ path = "{data}", split = "val" }}

[backbones.mlp]
type = "mlp"
options = {{ in_dim = 8, hidden_dims = [16], out_dim = 8 }}

[tasks.classify]
type = "finetune"
data = "train"
backbone = "mlp"
options = {{ head_options = {{ num_classes = 2 }} }}

[evaluators.knn]
type = "knn"
data = "val"
fit_data = "train"
every = {eval_every}
options = {{ k = 5 }}

[train]
lr = 1e-2
batch_size = 16
max_steps = {max_steps}
warmup_steps = 0
log_every = 1
checkpoint_every = {checkpoint_every}
deterministic = true
tensorboard = false
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    """No MLflow or plugin setting of the developer's shell leaks into a test."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def _empty_store(tmp_path_factory):
    """An MLflow SQLite store with its tables created: MLflow's migrations take seconds on a small
    machine, so tests copy this file instead of creating each store from nothing (the command-line
    test still lets the plugin create its store)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path.as_posix()}").search_experiments()
    return path


@pytest.fixture
def new_store(_empty_store):
    """``new_store(path)``: an empty MLflow store at ``path`` (a SQLite file); returns its URI."""

    def make(path: Path) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_empty_store, path)
        return f"sqlite:///{path.as_posix()}"

    return make


@pytest.fixture
def runs_store(tmp_path, new_store):
    """The default store of runs under ``tmp_path/runs`` (``runs/mlflow.db``), tables created."""
    return new_store(tmp_path / "runs" / "mlflow.db")


@pytest.fixture
def write_recipe(tmp_path):
    """``write_recipe(name="tiny", output_dir=..., max_steps=6, ...)`` -> the path of a recipe file
    in ``tmp_path``: two classes of 8-dim points in ``tmp_path/points.npz``, trained under
    ``tmp_path/runs/<name>`` by default."""
    data = tmp_path / "points.npz"
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 32)
    inputs = rng.normal(size=(64, 8)).astype(np.float32) + labels[:, None] * 2.0
    np.savez(data, input=inputs, label=labels.astype(np.int64))

    def write(name: str = "tiny", *, output_dir: Path | None = None, max_steps: int = 6, eval_every: int = 2,
              checkpoint_every: int = 3) -> Path:
        path = tmp_path / f"{name}.toml"
        path.write_text(RECIPE.format(output_dir=(output_dir or tmp_path / "runs" / name).as_posix(),
                                      data=data.as_posix(), max_steps=max_steps, eval_every=eval_every,
                                      checkpoint_every=checkpoint_every))
        return path

    return write


def cli_command(*args: str) -> list[str]:
    """``python -m selfsup ARGS`` with this interpreter (the real command line, as a user runs it)."""
    return [sys.executable, "-m", "selfsup", *args]
