"""CLIP task: the loss against a direct formula, multi-positive targets, temperature cap, recipes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from selfsup.components import BuildContext
from selfsup.plugins import get_plugin_manager
from selfsup_multimodal.tasks.clip import MAX_LOGIT_SCALE, clip_loss, same_text, same_text_targets


def test_clip_loss_matches_the_formula_on_a_hand_computed_case():
    # two pairs in 2-D, scale 2: logits a->b = 2 * [[1, 0], [0.6, 0.8]]
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    loss, acc = clip_loss(a, b, torch.tensor(2.0))
    ab = torch.tensor([[2.0, 1.2], [0.0, 1.6]])  # rows: a_i against every b_j
    ba = ab.T  # rows: b_i against every a_j
    ce = lambda logits: -(torch.log_softmax(logits, 1).diagonal()).mean()  # noqa: E731
    expected = (ce(ab) + ce(ba)) / 2
    by_hand = (-(2.0 - math.log(math.exp(2.0) + math.exp(1.2))) - (1.6 - math.log(1 + math.exp(1.6)))
               - (2.0 - math.log(math.exp(2.0) + 1)) - (1.6 - math.log(math.exp(1.2) + math.exp(1.6)))) / 4
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    assert acc.item() == 1.0


def test_same_text_targets_spread_over_identical_captions():
    ids = torch.tensor([[2, 7, 3, 0], [2, 8, 3, 0], [2, 7, 3, 0]])  # sample 0 and 2 say the same thing
    mask = (ids != 0).long()
    t = same_text_targets(ids, mask, ids, mask)
    assert torch.allclose(t, torch.tensor([[0.5, 0, 0.5], [0, 1, 0], [0.5, 0, 0.5]]))
    # padding does not matter: the same tokens padded further are the same text
    longer = F.pad(ids, (0, 3))
    assert torch.equal(same_text_targets(ids, mask, longer, (longer != 0).long()), t)
    # but a real token with id 0 is not padding: "2 5 <0>" differs from "2 5"
    two = torch.tensor([[2, 5, 0], [2, 5, 0]])
    assert same_text(two, torch.tensor([[1, 1, 1], [1, 1, 0]]), two, torch.tensor([[1, 1, 1], [1, 1, 0]])).tolist() == [
        [True, False], [False, True]]


def test_multi_positive_loss_is_the_soft_target_cross_entropy_both_ways():
    torch.manual_seed(0)
    a, b = F.normalize(torch.randn(4, 8), dim=1), F.normalize(torch.randn(4, 8), dim=1)
    ids = torch.tensor([[5], [6], [5], [7]])  # items 0 and 2 share their caption
    t = same_text_targets(ids, torch.ones_like(ids), ids, torch.ones_like(ids))
    loss, _ = clip_loss(a, b, torch.tensor(10.0), t)
    logits = 10.0 * a @ b.T
    expected = (-(t * logits.log_softmax(1)).sum(1).mean() - (t * logits.T.log_softmax(1)).sum(1).mean()) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def _clip(options=None):
    registry = get_plugin_manager().registry
    backbones = {
        "x": registry.get("backbone", "mlp").build({"in_dim": 6, "out_dim": 5}, BuildContext(name="x")),
        "y": registry.get("backbone", "mlp").build({"in_dim": 6, "out_dim": 7}, BuildContext(name="y")),
    }
    task = registry.get("pretext_task", "clip").build({"positives": "pair", **(options or {})},
                                                      BuildContext(name="clip", backbone=backbones))
    return task, backbones


def test_task_learns_temperature_and_caps_it():
    task, backbones = _clip({"embed_dim": 4, "temperature": 0.001})
    batch = {"input": torch.randn(8, 6), "input_ids": torch.arange(8)[:, None], "attention_mask": torch.ones(8, 1)}
    out = task(batch, backbones)
    out.loss.backward()
    assert task.logit_scale.grad is not None
    assert task.logit_scale.item() == pytest.approx(MAX_LOGIT_SCALE)  # 1/0.001 > 100: capped
    assert set(out.metrics) == {"accuracy", "temperature"}


def test_task_needs_two_backbones():
    registry = get_plugin_manager().registry
    one = registry.get("backbone", "mlp").build({"in_dim": 6}, BuildContext(name="x"))
    with pytest.raises(ValueError, match="table of two backbones"):
        registry.get("pretext_task", "clip").build({}, BuildContext(name="clip", backbone=one))
