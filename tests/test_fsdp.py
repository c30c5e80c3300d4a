"""train.strategy = "fsdp" (FSDP2, engine/fsdp.py) on CPU with gloo: the loss curve of DDP at 2
processes, sharded (DCP) checkpoints that verify, resume bit-identically and load into another number
of processes (2 -> 1), activation checkpointing and bf16 compute, and the recipe's refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import cli, write_plugin, write_toy_recipe
from safetensors.torch import load_file

from selfsup.engine import checkpoint as ckpt
from selfsup.engine.metrics import read_metrics
from selfsup.recipe import TrainSpec

RTOL = 1e-4  # all-reduce vs reduce-scatter order: float32 rounding, as in test_ddp.py

FSDP = ("--set", "train.strategy=fsdp")


def _losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir) if r["kind"] == "train"}


def _recipe(tmp_path: Path, name: str, **kw) -> Path:
    values = dict(max_steps=8, log_every=1, batch_size=64, checkpoint_every=4)
    values.update(kw)
    return write_toy_recipe(tmp_path, f"{name}.toml", output_dir=str(tmp_path / name), **values)


def test_two_fsdp_processes_follow_the_ddp_loss_curve(tmp_path):
    ddp = cli("train", str(_recipe(tmp_path, "ddp")), "--nproc", "2", timeout=600)
    assert ddp.returncode == 0, ddp.stderr
    fsdp = cli("train", str(_recipe(tmp_path, "fsdp")), "--nproc", "2", *FSDP, timeout=600)
    assert fsdp.returncode == 0, fsdp.stderr
    a, b = _losses(tmp_path / "ddp"), _losses(tmp_path / "fsdp")
    assert sorted(a) == sorted(b) == list(range(1, 9))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=RTOL), (step, a[step], b[step])
    # a sharded checkpoint: one shard per rank and DCP's metadata, all hashed in meta.json, plus whole weights
    last = ckpt.latest_checkpoint(tmp_path / "fsdp")
    shards = sorted(p.name for p in (last / ckpt.SHARDED).iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert ckpt.verify_checkpoint(last) == []
    whole_ddp = load_file(str(ckpt.latest_checkpoint(tmp_path / "ddp") / ckpt.WEIGHTS))
    whole_fsdp = load_file(str(last / ckpt.WEIGHTS))
    assert whole_ddp.keys() == whole_fsdp.keys()
    for k in whole_ddp:
        torch.testing.assert_close(whole_fsdp[k], whole_ddp[k], rtol=1e-3, atol=1e-5)
    # a damaged shard is found like any damaged checkpoint file
    shard = last / ckpt.SHARDED / "__1_0.distcp"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert any(p.startswith(f"{ckpt.SHARDED}/__1_0.distcp: sha256 mismatch") for p in ckpt.verify_checkpoint(last))


KILLER = """
import os

import selfsup


@selfsup.hookimpl
def on_step_end(run, step, metrics):
    if os.environ.get("KILL_AT") and step == int(os.environ["KILL_AT"]):
        os._exit(9)
"""


def _train(recipe: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "selfsup", "train", str(recipe), "--no-progress", *args],
                          env=full, capture_output=True, text=True, timeout=600)


def test_sharded_checkpoint_of_two_processes_resumes_in_one(tmp_path):
    straight = _train(_recipe(tmp_path, "straight"), "--nproc", "2", *FSDP)
    assert straight.returncode == 0, straight.stderr
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "killer", KILLER)
    recipe = _recipe(tmp_path, "killed")
    killed = _train(recipe, "--nproc", "2", *FSDP, env={"SELFSUP_PLUGINS_DIR": str(plugins), "KILL_AT": "6"})
    assert killed.returncode != 0
    assert ckpt.latest_checkpoint(tmp_path / "killed").name == "step-00000004"
    resumed = _train(recipe, "--resume", *FSDP)  # one process reads the two processes' shards
    assert resumed.returncode == 0, resumed.stderr
    a, b = _losses(tmp_path / "straight"), _losses(tmp_path / "killed")
    assert max(b) == 8
    for step in range(5, 9):
        assert b[step] == pytest.approx(a[step], rel=RTOL), (step, a[step], b[step])


def test_resume_is_bit_identical_and_ddp_checkpoints_need_weights_only(tmp_path):
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "killer", KILLER)
    straight = _train(_recipe(tmp_path, "straight"), *FSDP)
    assert straight.returncode == 0, straight.stderr
    recipe = _recipe(tmp_path, "killed")
    assert _train(recipe, *FSDP, env={"SELFSUP_PLUGINS_DIR": str(plugins), "KILL_AT": "6"}).returncode != 0
    resumed = _train(recipe, "--resume", *FSDP)
    assert resumed.returncode == 0, resumed.stderr
    a = load_file(str(ckpt.latest_checkpoint(tmp_path / "straight") / ckpt.WEIGHTS))
    b = load_file(str(ckpt.latest_checkpoint(tmp_path / "killed") / ckpt.WEIGHTS))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(tmp_path / "straight") == _losses(tmp_path / "killed")

    # a DDP run's checkpoint has no shards: --resume refuses the strategy change, weights-only takes it
    ddp_recipe = _recipe(tmp_path, "ddp", max_steps=6)
    assert _train(ddp_recipe).returncode == 0
    refused = _train(ddp_recipe, "--resume", *FSDP, "--set", "train.max_steps=8")
    assert refused.returncode == 2
    assert "train.strategy" in refused.stderr and "--resume-weights-only" in refused.stderr
    moved = _train(ddp_recipe, "--resume-weights-only", *FSDP, "--set", "train.max_steps=8")
    assert moved.returncode == 0, moved.stderr
    assert (ckpt.latest_checkpoint(tmp_path / "ddp") / ckpt.SHARDED).is_dir()


def test_activation_checkpointing_and_bf16_compute_train(tmp_path):
    res = _train(_recipe(tmp_path, "ac", max_steps=12, checkpoint_every=0), "--nproc", "2", *FSDP,
                 "--set", "train.fsdp.activation_checkpointing=true", "--set", "train.precision=bf16",
                 "--set", "train.grad_clip=1.0", "--set", "train.grad_accum=2")
    assert res.returncode == 0, res.stderr
    losses = _losses(tmp_path / "ac")
    assert losses[12] < losses[1]
    grad_norms = [r["grad_norm"] for r in read_metrics(tmp_path / "ac") if r["kind"] == "train"]
    assert all(g > 0 for g in grad_norms)


@pytest.mark.parametrize(("changes", "message"), [
    ({"precision": "fp16"}, "use precision = 'bf16'"),
    ({"optimizer": "lars"}, "does not support the lars optimizer"),
])
def test_fsdp_refuses_what_it_cannot_shard(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainSpec(max_steps=3, strategy="fsdp", **changes)


def test_batchnorm_keeps_float32_parameters_under_bf16_compute():
    """bf16 parameters would not fit BatchNorm's float32 running statistics: norms are their own units."""
    from types import SimpleNamespace

    from torch import nn

    from selfsup.engine.fsdp import Sharding, ensure_process_group

    ensure_process_group(SimpleNamespace(world_size=1))
    model = nn.Module()
    model.backbones = nn.ModuleDict({"cnn": nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                                          nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4))})
    spec = SimpleNamespace(mixed_precision=True, reshard_after_forward=True, activation_checkpointing=False)
    sharding = Sharding(model, spec, "bf16", is_main=True)
    out = model.backbones["cnn"](torch.randn(2, 1, 8, 8))
    assert out.dtype == torch.bfloat16  # the convolutions compute in bf16
    out.float().sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    sharding.gather()
    assert all(v.dtype in (torch.float32, torch.int64) for v in sharding.replica.state_dict().values())
    torch.distributed.destroy_process_group()
