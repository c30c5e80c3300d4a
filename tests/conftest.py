"""Shared helpers for the core's tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m selfsup ARGS`` in a subprocess (the real CLI, as a user would)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "selfsup", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


_HEAVY_PROBE = """
import sys
from selfsup.cli import main
try:
    main({args!r})
except SystemExit as exit:
    code = exit.code or 0
heavy = sorted(m for m in ("torch", "transformers", "torchvision", "torchaudio", "timm") if m in sys.modules)
print("HEAVY=" + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def cli_heavy_imports(args: list[str]) -> subprocess.CompletedProcess:
    """Run the CLI with ``args`` in a fresh interpreter; its stderr ends with ``HEAVY=`` and the heavy
    modules (torch, transformers, ...) the command imported, comma-separated (none: ``HEAVY=``)."""
    code = _HEAVY_PROBE.format(args=args)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


@pytest.fixture(autouse=True)
def _fresh_plugin_manager(monkeypatch):
    """Each test sees the environment it sets up, not a manager cached by an earlier test."""
    from selfsup.plugins import reset_plugin_manager

    for var in ("SELFSUP_PLUGINS", "SELFSUP_PLUGINS_DIR", "SELFSUP_TRACE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    # an installed run logger (selfsup-mlflow: a SQLite store beside every run) stays off: these tests
    # measure the core's own files, disk use and timing; the plugin's own suite tests it with training
    monkeypatch.setenv("SELFSUP_MLFLOW", "0")
    reset_plugin_manager()
    yield
    reset_plugin_manager()


TOY_RECIPE = """
seed = {seed}
output_dir = "{output_dir}"

[data.train]
type = "blobs"
options = {{ n = 512, dim = 16, classes = 4, spread = 0.6, nuisance = 12.0, split = "train" }}

[data.val]
type = "blobs"
options = {{ n = 512, dim = 16, classes = 4, spread = 0.6, nuisance = 12.0, split = "val" }}

[augmentations.views]
type = "noisy_views"
options = {{ std = 0.4 }}

[backbones.mlp]
type = "mlp"
options = {{ in_dim = 16, hidden_dims = [64], out_dim = 32, dropout = {dropout} }}

[tasks.infonce]
type = "toy_infonce"
data = "train"
augment = ["views"]
backbone = "mlp"
options = {{ temperature = 0.2 }}

[evaluators.knn]
type = "knn"
data = "val"
fit_data = "train"
options = {{ k = 20, temperature = 0.1 }}

[train]
lr = 3e-3
batch_size = {batch_size}
max_steps = {max_steps}
warmup_steps = 5
log_every = {log_every}
checkpoint_every = {checkpoint_every}
keep_checkpoints = {keep}
deterministic = true
tensorboard = false
"""


def write_toy_recipe(directory: Path, name: str = "toy.toml", **overrides) -> Path:
    values = dict(seed=0, output_dir=str(directory / "run"), dropout=0.0, batch_size=64, max_steps=60,
                  log_every=5, checkpoint_every=0, keep=3)
    values.update(overrides)
    path = directory / name
    path.write_text(TOY_RECIPE.format(**values))
    return path


def write_blobs_recipe(directory: Path, task_type: str, task_options: str = "{}", *, task: str = "t",
                       **train: object) -> Path:
    """``directory/r.toml``: ``blobs`` data, an ``mlp`` backbone and one task of ``task_type`` (a plugin's
    test task); ``train`` values (``max_steps=3``, ``precision="fp16"``) become ``[train]`` entries."""
    settings = {"batch_size": 32, "tensorboard": False, **train}
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in settings.items())
    path = directory / "r.toml"
    path.write_text(f"""
output_dir = "{directory / 'run'}"
[data.d]
type = "blobs"
options = {{ n = 256, dim = 8 }}
[backbones.b]
type = "mlp"
options = {{ in_dim = 8 }}
[tasks.{task}]
type = "{task_type}"
data = "d"
backbone = "b"
options = {task_options}
[train]
{lines}
""")
    return path


def write_plugin(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path
