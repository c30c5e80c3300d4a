"""Chunked linear + cross entropy equals the plain LM head + F.cross_entropy: loss, accuracy and
gradients, with and without bias, ignored targets and bf16 autocast."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from selfsup_text.tasks.linear_ce import linear_cross_entropy

N, D, V = 300, 24, 97  # 300 positions
#: (chunk, group): the defaults (one group, chunks of 256 and 44); groups of 128, 128 and 44 rows in
#: chunks of 64; groups and chunks of 7 rows (the last ones of 6)
SPLITS = [(256, None), (64, 128), (7, 7)]


def _inputs(bias: bool):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, N // 3, D, generator=g)
    w = torch.randn(V, D, generator=g) * 0.3
    b = torch.randn(V, generator=g) if bias else None
    y = torch.randint(0, V, (3, N // 3), generator=g)
    y[:, ::5] = -100
    return h, w, b, y


def _leaves(*tensors):
    return [None if t is None else t.clone().requires_grad_(True) for t in tensors]


@pytest.mark.parametrize("chunk,group", SPLITS)
@pytest.mark.parametrize("bias", [False, True])
def test_equals_the_plain_head_in_float32(bias, chunk, group):
    h, w, b, y = _inputs(bias)
    h1, w1, b1 = _leaves(h, w, b)
    logits = F.linear(h1, w1, b1)  # [3, 100, V]
    ref = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100)
    ref.backward()
    kept = y != -100
    ref_acc = (logits.argmax(-1)[kept] == y[kept]).float().mean()
    h2, w2, b2 = _leaves(h, w, b)
    loss, acc = linear_cross_entropy(h2, w2, y, b2, chunk=chunk, group=group)
    (2.0 * loss).backward()  # the incoming gradient scales every stored gradient
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-6)
    assert acc.item() == pytest.approx(ref_acc.item()) and not acc.requires_grad
    torch.testing.assert_close(h2.grad, 2 * h1.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(w2.grad, 2 * w1.grad, rtol=1e-5, atol=1e-7)
    if bias:
        torch.testing.assert_close(b2.grad, 2 * b1.grad, rtol=1e-5, atol=1e-7)
    assert h2.grad[y == -100].abs().max() == 0  # ignored positions get no gradient


@pytest.mark.parametrize("chunk,group", SPLITS)
def test_bf16_autocast_matches_the_autocast_head(chunk, group):
    h, w, _, y = _inputs(False)
    h1, w1 = _leaves(h, w)
    with torch.autocast("cpu", torch.bfloat16):
        logits = F.linear(h1, w1)
    assert logits.dtype == torch.bfloat16
    ref = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
    ref.backward()
    h2, w2 = _leaves(h, w)
    with torch.autocast("cpu", torch.bfloat16):
        loss, _ = linear_cross_entropy(h2, w2, y, chunk=chunk, group=group)
    loss.backward()
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-5)  # the same bf16 logits, float32 softmax
    assert h2.grad.dtype == w2.grad.dtype == torch.float32
    for mine, theirs in ((h2.grad, h1.grad), (w2.grad, w1.grad)):
        assert (mine - theirs).abs().max() <= 0.02 * theirs.abs().max()  # bf16 rounding of the logit gradients


def test_no_grad_and_all_ignored():
    h, w, _, y = _inputs(False)
    with torch.no_grad():
        loss, acc = linear_cross_entropy(h, w, y)
    ref = F.cross_entropy(F.linear(h, w).flatten(0, 1), y.flatten())
    torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-6)
    loss, acc = linear_cross_entropy(h, w, torch.full_like(y, -100))
    assert loss.item() == 0 and acc.item() == 0
