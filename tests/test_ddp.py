"""DDP on CPU (gloo): 2 processes at the same global batch follow the same loss curve as one,
and gather_with_grad gives the gradients of the full-batch computation."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import cli, write_toy_recipe

from selfsup.engine.distributed import gather_with_grad, local_offset
from selfsup.engine.metrics import read_metrics

# Summation order differs between one process and two (all-reduce of half-batch gradients), so
# losses agree to float32 rounding that grows slowly with steps: 1e-4 relative over 25 steps.
RTOL = 1e-4


def test_two_processes_match_one_process_loss_curve(tmp_path):
    kw = dict(max_steps=25, log_every=1, batch_size=64)
    single = write_toy_recipe(tmp_path, "one.toml", output_dir=str(tmp_path / "one"), **kw)
    double = write_toy_recipe(tmp_path, "two.toml", output_dir=str(tmp_path / "two"), **kw)
    res1 = cli("train", str(single))
    assert res1.returncode == 0, res1.stderr
    res2 = cli("train", str(double), "--nproc", "2", timeout=600)
    assert res2.returncode == 0, res2.stderr
    one = [r for r in read_metrics(tmp_path / "one") if r["kind"] == "train"]
    two = [r for r in read_metrics(tmp_path / "two") if r["kind"] == "train"]
    assert [r["step"] for r in one] == [r["step"] for r in two] == list(range(1, 26))
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=RTOL), (a["step"], a["loss"], b["loss"])
    assert one[-1]["loss"] < one[0]["loss"]
    # only rank 0 wrote outputs, once
    assert len([r for r in read_metrics(tmp_path / "two") if r["kind"] == "eval"]) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gather_worker(rank: int, world: int, port: int, x_full: torch.Tensor, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        b = x_full.shape[0] // world
        x = x_full[rank * b : (rank + 1) * b].clone().requires_grad_(True)
        gathered = gather_with_grad(x)  # [W*B, D]
        assert torch.equal(gathered.detach(), x_full)
        # a per-rank loss on local anchors against all gathered rows, like a contrastive loss
        logits = x @ gathered.T  # [B, W*B]
        target = torch.arange(b) + local_offset(b)
        loss = torch.nn.functional.cross_entropy(logits, target)
        loss.backward()  # x.grad now sums the gradients of every rank's loss w.r.t. x
        out[rank] = (x.grad / world).clone()  # DDP averages over ranks
    finally:
        dist.destroy_process_group()


def test_gather_with_grad_matches_full_batch_gradient():
    world, b, d = 2, 3, 4
    torch.manual_seed(0)
    x_full = torch.randn(world * b, d)
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_gather_worker, args=(world, _free_port(), x_full, out), nprocs=world, join=True)

    # reference: one process, the mean over all anchors of the same loss
    x = x_full.clone().requires_grad_(True)
    logits = x @ x.T
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(world * b))
    loss.backward()
    for rank in range(world):
        # rank r's input gradient (scaled like DDP's average) equals the full-batch gradient rows
        torch.testing.assert_close(out[rank], x.grad[rank * b : (rank + 1) * b], rtol=1e-5, atol=1e-6)


def test_gather_with_grad_is_identity_without_process_group():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x and local_offset(3) == 0
