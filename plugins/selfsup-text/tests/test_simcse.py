"""SimCSE: the loss on hand-computed examples (unsupervised, supervised with hard negatives and
their weight), two DDP processes equal one, dropout views, the MLP, and task conformance."""

from __future__ import annotations

import math
import os
import socket

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from selfsup.components import BuildContext
from selfsup.testing import TaskConformance, registry_with
from selfsup_text.tasks.simcse import simcse_loss

R2 = math.sqrt(2.0)
TINY_BERT = {"tokenizer": "bytes", "family": "bert", "layers": 2, "heads": 2, "dim": 32, "context": 96,
             "pooling": "cls"}
DOCS = ("embedded_corpus", {"tokenizer": "bytes", "name": "news", "limit": 8, "max_length": 48})

# anchors a1 = (1, 0), a2 = (0, 1); positives p1 = (1, 0), p2 = (1, 1) (scaled: only directions
# matter); hard negatives n1 = (0, 1), n2 = (0, -1). Cosines: a1.p1 = 1, a1.p2 = 1/sqrt2, a2.p1 = 0,
# a2.p2 = 1/sqrt2, a1.n1 = a1.n2 = 0, a2.n1 = 1, a2.n2 = -1. Temperature 0.5 doubles them.
A = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
P = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
N = torch.tensor([[0.0, 1.0], [0.0, -5.0]])


def test_unsupervised_loss_by_hand() -> None:
    # row 1: logits [2, sqrt2], target 0 -> log(1 + e^(sqrt2 - 2)); row 2: [0, sqrt2], target 1 -> log(1 + e^-sqrt2)
    expected = (math.log(1 + math.exp(R2 - 2)) + math.log(1 + math.exp(-R2))) / 2
    loss, accuracy = simcse_loss(A, P, temperature=0.5, gather=False)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert accuracy.item() == 1.0


def test_supervised_loss_with_hard_negatives_by_hand() -> None:
    # row 1: logits [2, sqrt2 | 0, 0], target 0; row 2: [0, sqrt2 | 2, -2], target 1
    row1 = math.log(math.exp(2) + math.exp(R2) + 2) - 2
    row2 = math.log(1 + math.exp(R2) + math.exp(2) + math.exp(-2)) - R2
    loss, accuracy = simcse_loss(A, P, N, temperature=0.5, gather=False)
    assert loss.item() == pytest.approx((row1 + row2) / 2, rel=1e-6)
    assert accuracy.item() == 0.5  # row 2's hard negative (2) beats its positive (sqrt2)
    # weight w on each anchor's own hard negative: row 1's column n1 (0 -> w), row 2's column n2 (-2 -> -2 + w)
    w = 0.7
    row1 = math.log(math.exp(2) + math.exp(R2) + math.exp(w) + 1) - 2
    row2 = math.log(1 + math.exp(R2) + math.exp(2) + math.exp(-2 + w)) - R2
    loss, _ = simcse_loss(A, P, N, temperature=0.5, hard_negative_weight=w, gather=False)
    assert loss.item() == pytest.approx((row1 + row2) / 2, rel=1e-6)


def test_loss_in_float32_under_autocast() -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = simcse_loss(A.bfloat16(), P.bfloat16(), N.bfloat16(), temperature=0.5, gather=False)
    assert loss.dtype == torch.float32


# ------------------------------------------------------------------------------ DDP, in-process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, x: torch.Tensor, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        b = x.shape[1] // world
        mine = x[:, rank * b : (rank + 1) * b].clone().requires_grad_(True)  # [3, B, D]
        loss, _ = simcse_loss(mine[0], mine[1], mine[2], temperature=0.1, hard_negative_weight=0.3)
        loss.backward()
        out[rank] = (loss.item(), (mine.grad / world).clone())  # DDP averages gradients over ranks
    finally:
        dist.destroy_process_group()


def test_two_processes_equal_one() -> None:
    world, b, d = 2, 3, 5
    x = torch.randn(3, world * b, d, generator=torch.Generator().manual_seed(0))  # anchors, positives, negatives
    out = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(world, _free_port(), x, out), nprocs=world, join=True)
    full = x.clone().requires_grad_(True)
    loss, _ = simcse_loss(full[0], full[1], full[2], temperature=0.1, hard_negative_weight=0.3, gather=False)
    loss.backward()
    assert sum(out[r][0] for r in range(world)) / world == pytest.approx(loss.item(), rel=1e-5)
    for r in range(world):
        torch.testing.assert_close(out[r][1], full.grad[:, r * b : (r + 1) * b], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------ the task


def _task(options: dict, data=DOCS, backbone: dict = TINY_BERT):
    reg = registry_with(None)
    source = reg.get("data_source", data[0]).build(data[1], BuildContext(name="d"))
    torch.manual_seed(0)
    b = reg.get("backbone", "transformer").build(backbone, BuildContext(name="b"))
    return reg.get("pretext_task", "simcse").build(options, BuildContext(name="t", backbone=b, data=source)), b, source


def test_unsupervised_views_differ_only_by_dropout() -> None:
    task, b, source = _task({"mlp": False})
    batch = task.collate([source[i] for i in range(4)])
    b.train()
    z = task.encode(b, torch.cat([batch["input_ids"]] * 2), torch.cat([batch["attention_mask"]] * 2))
    assert (z[:4] - z[4:]).abs().max() > 1e-4, "the two encodings should see different dropout masks"
    b.eval()
    z = task.encode(b, torch.cat([batch["input_ids"]] * 2), torch.cat([batch["attention_mask"]] * 2))
    torch.testing.assert_close(z[:4], z[4:])
    out = task(batch, b)  # eval mode: identical views, loss = the formula on identical embeddings
    torch.testing.assert_close(out.loss, simcse_loss(z[:4], z[:4], temperature=0.05, gather=False)[0])


def test_mlp_is_trained_but_not_exported() -> None:
    task, b, source = _task({})
    assert task.mlp is not None and task.pooling == "cls"
    batch = task.collate([source[i] for i in range(3)])
    out = task(batch, b)
    out.loss.backward()
    assert task.mlp[0].weight.grad is not None and task.mlp[0].weight.grad.abs().sum() > 0
    assert all("mlp" not in name for name, _ in b.named_parameters())


def test_supervised_requires_pairs() -> None:
    with pytest.raises(ValueError, match="positive_ids"):
        _task({"variant": "supervised"})


def _pairs_file(tmp_path) -> tuple[str, dict]:
    import json

    rows = [("A man plays a guitar.", "Someone plays music.", "Nobody is playing."),
            ("Stocks fell sharply today.", "Markets dropped.", "Stocks rose strongly."),
            ("The cat sleeps on the mat.", "A cat is asleep.", "The dog runs outside."),
            ("Rain is expected tomorrow.", "It will rain.", "Tomorrow will be dry.")]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps({"text": a, "pos": p, "neg": n}) for a, p, n in rows), encoding="utf-8")
    return "jsonl", {"path": str(path), "tokenizer": "bytes", "positive_field": "pos", "negative_field": "neg"}


def test_supervised_with_hard_negatives_is_the_formula(tmp_path) -> None:
    task, b, source = _task({"hard_negative_weight": 0.5}, data=_pairs_file(tmp_path))  # auto -> supervised
    b.eval()
    batch = task.collate([source[i] for i in range(4)])
    assert {"positive_ids", "negative_ids", "negative_attention_mask"} <= batch.keys()
    out = task(batch, b)
    keys = [("input_ids", "attention_mask"), ("positive_ids", "positive_attention_mask"),
            ("negative_ids", "negative_attention_mask")]
    z = [task.encode(b, batch[ids], batch[mask]) for ids, mask in keys]
    expected, _ = simcse_loss(z[0], z[1], z[2], temperature=0.05, hard_negative_weight=0.5, gather=False)
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in b.parameters())


def test_crop_views_from_augmentations_are_the_positives() -> None:
    """Two span crops (the first written to positive_ids): the task contrasts the two crops."""
    reg = registry_with(None)
    task, b, source = _task({})
    crops = [reg.get("augmentation", "span_crop").build({**o, "min_fraction": 0.3, "max_fraction": 0.6},
                                                         BuildContext(name="crop"))
             for o in ({"out_key": "positive_ids"}, {})]
    samples = []
    for i in range(4):
        sample, g = source[i], torch.Generator().manual_seed(i)
        for crop in crops:
            sample = crop(sample, g)
        samples.append(sample)
    batch = task.collate(samples)
    assert not torch.equal(batch["input_ids"], batch["positive_ids"])
    b.eval()
    out = task(batch, b)
    z1 = task.encode(b, batch["input_ids"], batch["attention_mask"])
    z2 = task.encode(b, batch["positive_ids"], batch["positive_attention_mask"])
    expected, _ = simcse_loss(z1, z2, temperature=0.05, gather=False)
    torch.testing.assert_close(out.loss, expected)


class TestUnsupervisedConformance(TaskConformance):
    task = "simcse"
    data = DOCS
    backbone = ("transformer", TINY_BERT)
    bad_options = [{"temperature": 0}, {"variant": "semi"}, {"pooling": "max"}]
    # 'auto' is unsupervised on data without positive_ids; the backbone pools with 'cls'
    option_variants = {"variant": "supervised", "pooling": "mean"}
    inert_options = {"hard_negative_weight": "supervised only, with negative_ids: the suite's data has none",
                     "gather_distributed": "one process: there are no other ranks' negatives to gather"}


class TestMeanPoolingDecoderConformance(TaskConformance):
    task = "simcse"
    task_options = {"pooling": "mean", "mlp": False}
    data = DOCS
    backbone = ("transformer", {**TINY_BERT, "family": "gpt2"})
    option_variants = {"variant": "supervised"}
    inert_options = {"hard_negative_weight": "supervised only, with negative_ids: the suite's data has none",
                     "gather_distributed": "one process: there are no other ranks' negatives to gather"}
