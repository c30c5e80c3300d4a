"""OPN: the 12 classes (24 orders up to reversal), sampled sequences match their class, pairwise
feature fusion and the loss against their formula, conformance, and a shortened quickstart that learns
the task and beats random init on held-out motion kNN."""

from __future__ import annotations

import math
from itertools import permutations

import pytest
import torch

from selfsup.components import BuildContext
from selfsup.testing import TaskConformance
from selfsup_video.tasks.order_prediction import ORDERS, PAIRS, make_sequences, order_class

CLIPS = ("moving_mnist", {"split": "val", "n": 4, "frames": 6, "size": 32})


def test_twelve_classes_each_an_order_and_its_reverse():
    assert len(ORDERS) == 12 and PAIRS == ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
    classes = {}
    for p in permutations(range(4)):
        classes.setdefault(order_class(p), set()).add(p)
    assert sorted(classes) == list(range(12))
    for members in classes.values():
        a, b = sorted(members)
        assert len(members) == 2 and a == b[::-1]


def test_sequences_show_the_frames_in_the_order_of_their_class():
    t = 10
    video = torch.arange(t, dtype=torch.float32)[None, :, None, None, None].expand(300, t, 1, 2, 2).clone()
    shuffled, classes, frames = make_sequences(video, torch.Generator().manual_seed(0))
    assert shuffled.shape == (300, 4, 1, 2, 2)
    assert torch.equal(shuffled[:, :, 0, 0, 0].long(), frames)
    for row, c in zip(frames.tolist(), classes.tolist()):
        ranks = tuple(sorted(row).index(v) for v in row)  # the order in which the 4 frames are shown
        assert len(set(row)) == 4 and order_class(ranks) == c
    assert set(classes.tolist()) == set(range(12))
    reversed_shown = sum(ORDERS[c] != tuple(sorted(r).index(v) for v in r) for r, c in zip(frames.tolist(),
                                                                                            classes.tolist()))
    assert 100 < reversed_shown < 200  # either order of a class, about half the time


def test_loss_is_the_cross_entropy_of_the_fused_pair_features():
    from test_shuffle_and_learn import standardised

    torch.manual_seed(0)
    context = BuildContext(name="opn", seed=3)
    backbone = context.build("backbones", "framewise", {"name": "test_convnext"})
    task = context.build("tasks", "order_prediction", {"pair_dim": 8}, backbone=backbone)
    batch = {"video": torch.rand(5, 6, 1, 32, 32), "index": torch.arange(5)}
    out = task(batch, backbone)
    shuffled, classes, _ = make_sequences(batch["video"], task.generator(batch))
    with torch.no_grad():
        f = standardised(backbone.frame_features(shuffled))  # [B, 4, F]
        fc7 = task.pair[0]
        pair_feats = [torch.relu(fc7(torch.cat([f[:, i], f[:, j]], dim=1))) for i, j in PAIRS]  # 6 x [B, 8]
        logits = task.classifier(torch.cat(pair_feats, dim=1))  # [B, 12]
    expected = -sum(logits[i, classes[i]] - math.log(sum(math.exp(v) for v in logits[i].tolist()))
                    for i in range(5)) / 5
    assert out.loss.item() == pytest.approx(float(expected), rel=1e-5)


class TestOrderPredictionConformance(TaskConformance):
    task = "order_prediction"
    task_options = {"pair_dim": 8}
    data = CLIPS
    backbone = ("framewise", {"name": "test_convnext"})
    bad_options = [{"pair_dim": 0}, {"hidden_dim": -1}]



def test_learnable_when_frames_show_their_time(one_thread):
    """Sorting is solvable from per-frame features that carry the frame's time (see test_shuffle_and_learn)."""
    from test_shuffle_and_learn import learned_accuracy

    assert learned_accuracy("order_prediction", 400) > 0.8


def test_shortened_quickstart_learns_and_beats_random_init_on_motion_knn(tmp_path, one_thread):
    from test_shuffle_and_learn import shortened_run_learns

    shortened_run_learns("opn-moving-mnist", "opn", tmp_path, 300, 1 / 12, 0.05)
