"""Optimizers, LARS against its formula, and the warmup + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch

from selfsup.engine.lars import LARS
from selfsup.engine.optim import build_optimizer, build_scheduler, lr_factor, param_groups
from selfsup.recipe import TrainSpec


def test_lars_matches_reference_formula():
    torch.manual_seed(0)
    w = torch.randn(4, 3, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    opt = LARS([w, b], lr=0.5, weight_decay=0.1, momentum=0.9, trust_coefficient=0.02)
    w0, b0 = w.detach().clone(), b.detach().clone()
    gw, gb = torch.randn(4, 3), torch.randn(3)
    w.grad, b.grad = gw.clone(), gb.clone()
    opt.step()
    g = gw + 0.1 * w0
    trust = 0.02 * w0.norm() / g.norm()
    torch.testing.assert_close(w.detach(), w0 - 0.5 * trust * g)
    torch.testing.assert_close(b.detach(), b0 - 0.5 * gb)  # 1-D: no decay, no adaptation
    # second step: momentum buffer v = 0.9 v + update
    w1 = w.detach().clone()
    w.grad = gw.clone()
    opt.step()
    g2 = gw + 0.1 * w1
    v = 0.9 * (trust * g) + 0.02 * w1.norm() / g2.norm() * g2
    torch.testing.assert_close(w.detach(), w1 - 0.5 * v)


def test_lars_zero_weights_fall_back_to_plain_step():
    w = torch.zeros(2, 2, requires_grad=True)
    w.grad = torch.ones(2, 2)
    LARS([w], lr=1.0, momentum=0.0).step()
    assert torch.equal(w.detach(), -torch.ones(2, 2))


def test_weight_decay_skips_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    decay, no_decay = param_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and [p.shape for p in decay["params"]] == [torch.Size([4, 3])]
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 3


@pytest.mark.parametrize(
    ("name", "cls"),
    [("adamw", torch.optim.AdamW), ("adam", torch.optim.Adam), ("sgd", torch.optim.SGD),
     ("adagrad", torch.optim.Adagrad), ("lars", LARS)],
)
def test_every_optimizer_builds_and_steps(name, cls):
    model = torch.nn.Linear(3, 2)
    opt = build_optimizer(model, TrainSpec(optimizer=name, max_steps=10, lr=0.1))
    assert isinstance(opt, cls)
    before = model.weight.detach().clone()
    model(torch.randn(5, 3)).pow(2).mean().backward()
    opt.step()
    assert not torch.equal(before, model.weight)


def test_warmup_then_cosine_to_min_lr():
    spec = TrainSpec(lr=1.0, min_lr=0.1, warmup_steps=4, max_steps=14)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=spec.lr)
    sched = build_scheduler(opt, spec, total_steps=14)
    lrs = []
    for _ in range(14):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    for step in range(4, 14):
        progress = (step - 4) / 10
        assert lrs[step] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
    assert lr_factor(14, total=14, warmup=4, schedule="cosine", min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(9, total=14, warmup=4, schedule="linear", min_ratio=0.0) == pytest.approx(0.5)
    assert lr_factor(9, total=14, warmup=4, schedule="constant", min_ratio=0.0) == 1.0
