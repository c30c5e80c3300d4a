"""SimCLR: the NT-Xent loss against a direct formula and lightly, DDP equivalence, conformance,
and a shortened quickstart that learns."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from selfsup.testing import TaskConformance, train_against_random_init
from selfsup_vision.tasks.simclr import GlobalBatchNorm1d, ProjectionHead, nt_xent


def nt_xent_direct(z1: torch.Tensor, z2: torch.Tensor, t: float) -> torch.Tensor:
    """The paper's definition, anchor by anchor: l(i, j) = -log exp(s_ij / t) / sum_{k != i} exp(s_ik / t)."""
    z = F.normalize(torch.cat([z1, z2]), dim=1).double()  # [2N, P]
    n = z1.shape[0]
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        sims = [(z[i] @ z[k]) / t for k in range(2 * n) if k != i]
        total += -((z[i] @ z[j]) / t - torch.logsumexp(torch.stack(sims), 0))
    return total / (2 * n)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_matches_the_direct_formula(temperature):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    loss, _ = nt_xent(z1, z2, temperature)
    torch.testing.assert_close(loss.double(), nt_xent_direct(z1, z2, temperature), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_matches_lightly(temperature):
    lightly_loss = pytest.importorskip("lightly.loss")
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(16, 8, generator=g), torch.randn(16, 8, generator=g)
    expected = lightly_loss.NTXentLoss(temperature=temperature)(z1, z2)
    torch.testing.assert_close(nt_xent(z1, z2, temperature)[0], expected, rtol=1e-5, atol=1e-6)


def test_nt_xent_accuracy_and_gradient():
    z = torch.eye(4, 8) * 3  # 4 distinct directions
    loss, accuracy = nt_xent(z, z + 0.01, 0.5)
    assert accuracy.item() == 1.0
    _, accuracy = nt_xent(z, z.roll(1, dims=0), 0.5)  # every positive is another image's view
    assert accuracy.item() == 0.0
    z1 = torch.randn(4, 8, requires_grad=True)
    nt_xent(z1, torch.randn(4, 8), 0.5)[0].backward()
    assert z1.grad is not None and z1.grad.abs().sum() > 0


def test_nt_xent_in_float32_under_autocast():
    z1, z2 = torch.randn(8, 4), torch.randn(8, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = nt_xent(z1.bfloat16(), z2.bfloat16(), 0.2)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, nt_xent(z1.bfloat16().float(), z2.bfloat16().float(), 0.2)[0])


def test_projection_head_layout():
    head = ProjectionHead(16, 32, 8, layers=3)
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Linear", "GlobalBatchNorm1d", "ReLU", "Linear", "GlobalBatchNorm1d", "ReLU", "Linear"]
    assert head(torch.randn(5, 16)).shape == (5, 8)
    assert [type(m).__name__ for m in ProjectionHead(16, 32, 8, layers=1)] == ["Linear"]


# ------------------------------------------------------------------------------ DDP, in-process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, x_full: torch.Tensor, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        bn = GlobalBatchNorm1d(x_full.shape[-1])
        b = x_full.shape[1] // world
        x = x_full[:, rank * b : (rank + 1) * b].clone().requires_grad_(True)  # [2, B, D]: two views
        z = bn(torch.cat([x[0], x[1]]))  # [2B, D], normalised over the global batch
        loss, _ = nt_xent(z[:b], z[b:], 0.3)
        loss.backward()
        out[rank] = (loss.item(), (x.grad / world).clone(), bn.running_mean.clone())  # DDP averages over ranks
    finally:
        dist.destroy_process_group()


def test_gathered_loss_and_global_batchnorm_match_one_process():
    world, b, d = 2, 4, 6
    torch.manual_seed(0)
    x_full = torch.randn(2, world * b, d)  # [views, global batch, D]
    out = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(world, _free_port(), x_full, out), nprocs=world, join=True)

    # One process: the two views of the rows that rank r holds, in rank-major order.
    torch.manual_seed(0)
    bn = GlobalBatchNorm1d(d)
    x = x_full.clone().requires_grad_(True)
    per_rank = [torch.cat([x[0, r * b : (r + 1) * b], x[1, r * b : (r + 1) * b]]) for r in range(world)]
    z = bn(torch.cat(per_rank))  # BatchNorm over the whole global batch
    z = z.view(world, 2, b, d)
    loss, _ = nt_xent(z[:, 0].reshape(-1, d), z[:, 1].reshape(-1, d), 0.3)
    loss.backward()
    assert sum(out[r][0] for r in range(world)) / world == pytest.approx(loss.item(), rel=1e-5)
    for r in range(world):
        torch.testing.assert_close(out[r][1], x.grad[:, r * b : (r + 1) * b], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(out[r][2], bn.running_mean, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ conformance


class TestSimCLRConformance(TaskConformance):
    task = "simclr"
    task_options = {"temperature": 0.2, "projection_hidden_dim": 32, "projection_dim": 16}
    data = ("digits", {"limit": 64})
    augment = [("multi_view", {"size": 8, "flip": 0.0})]
    backbone = ("small_cnn", {"widths": [8, 16]})
    bad_options = [{"temperature": 0.0}, {"projection_layers": 0}, {"projection_dim": -1}]
    inert_options = {"gather_distributed": "one process: there are no other ranks' negatives to gather"}


def test_simclr_refuses_more_than_two_views():
    from selfsup.components import BuildContext
    from selfsup_vision.backbones.options import SmallCNNOptions
    from selfsup_vision.backbones.small_cnn import build_small_cnn
    from selfsup_vision.tasks.options import SimCLROptions
    from selfsup_vision.tasks.simclr import build

    backbone = build_small_cnn(SmallCNNOptions(widths=[8]), BuildContext("cnn"))
    task = build(SimCLROptions(), BuildContext("simclr", backbone=backbone))
    with pytest.raises(ValueError, match="views = 2"):
        task({"views": torch.rand(2, 3, 1, 8, 8)}, backbone)


# ------------------------------------------------------------------------------ DDP, via the CLI

DDP_RECIPE = """
seed = 0
output_dir = "{out}"

[data.train]
type = "digits"
options = {{ split = "train", limit = 256 }}

[augmentations.views]
type = "multi_view"
options = {{ size = 8, flip = 0.0 }}

[backbones.cnn]
type = "small_cnn"
options = {{ widths = [8, 16], norm = "group" }}

[tasks.simclr]
type = "simclr"
data = "train"
augment = ["views"]
backbone = "cnn"
options = {{ temperature = 0.2, projection_hidden_dim = 32, projection_dim = 16 }}

[train]
lr = 3e-3
batch_size = 32
max_steps = 12
log_every = 1
deterministic = true
tensorboard = false
"""

# Same global batches and augmentations (seeded per sample); GroupNorm in the backbone and the
# head's global BatchNorm see the same statistics; only summation order differs (gradient
# all-reduce, candidate order), so losses agree to float32 rounding: 1e-4 relative over 12 steps.
DDP_RTOL = 1e-4


def _cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "selfsup", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def _losses(run_dir) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [(r["step"], r["loss"]) for r in records if r["kind"] == "train"]


def test_two_processes_match_one_process(tmp_path):
    for name in ("one", "two"):
        (tmp_path / f"{name}.toml").write_text(DDP_RECIPE.format(out=tmp_path / name))
    res = _cli("train", "one.toml", "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = _cli("train", "two.toml", "--no-progress", "--nproc", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert [s for s, _ in one] == [s for s, _ in two] == list(range(1, 13))
    for (step, a), (_, b) in zip(one, two):
        assert b == pytest.approx(a, rel=DDP_RTOL), (step, a, b)


# ------------------------------------------------------------------------------ learning


def test_shortened_quickstart_beats_random_init(tmp_path):
    """simclr-digits for 12 epochs (70 steps): kNN (k=200, t=0.1) on held-out digits must beat the
    same backbone at random init by 3 points (measured: about 0.87 at random init, 0.92 trained)."""
    trained, random_init = train_against_random_init(
        "simclr-digits", tmp_path / "run", ["train.epochs=12", "train.warmup_steps=5"], evaluators=["knn"]
    )
    print(f"kNN accuracy: random init {random_init['knn/accuracy']:.4f}, trained {trained['knn/accuracy']:.4f}")
    assert trained["knn/accuracy"] > random_init["knn/accuracy"] + 0.03, (trained, random_init)
