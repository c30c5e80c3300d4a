"""frame_order_accuracy: alterations (non-identity shuffles, reversal), chance for an order-blind
backbone, a perfect score for an order-aware one, conformance."""

from __future__ import annotations

import torch
from torch import nn

from selfsup.components import EvalContext
from selfsup.lib.data import batches
from selfsup.testing import EvaluatorConformance
from selfsup_video.evaluators.frame_order_accuracy import FrameOrderAccuracy, alter
from selfsup_video.evaluators.options import FrameOrderAccuracyOptions

CLIPS = ("moving_mnist", {"split": "val", "n": 24, "frames": 4, "size": 16, "digit_size": 8})
FIT = ("moving_mnist", {"split": "train", "n": 24, "frames": 4, "size": 16, "digit_size": 8})


def test_shuffles_are_never_the_identity_and_reverse_flips():
    video = torch.arange(3, dtype=torch.float32)[None, :, None, None, None].expand(200, 3, 1, 1, 1)
    out = alter(video, "shuffle", torch.Generator().manual_seed(0))[:, :, 0, 0, 0]
    assert not (out == torch.arange(3.0)).all(1).any()
    assert len({tuple(r) for r in out.tolist()}) == 5  # every other order of 3 frames
    assert torch.equal(alter(video, "reverse", torch.Generator()), video.flip(1))


class _Clips(nn.Module):
    """A fixed clip encoder: frame means (order-blind) or the frames' mean brightness in order."""

    def __init__(self, ordered: bool):
        super().__init__()
        self.ordered, self.output_dim = ordered, 4

    def embed(self, batch):
        m = batch["video"].mean(dim=(2, 3, 4))  # [B, T]
        return m if self.ordered else m.mean(1, keepdim=True).expand(-1, 4)


class _Source:
    def __init__(self, video):
        self.video = video

    def __len__(self):
        return len(self.video)

    def __getitem__(self, i):
        return {"video": self.video[i]}


def _evaluate(backbone, mode="shuffle"):
    g = torch.Generator().manual_seed(0)
    # brightness rising over time: order is visible in the per-frame means
    ramp = torch.linspace(0, 1, 4)[None, :, None, None, None]
    fit, val = (_Source(torch.rand(n, 1, 1, 4, 4, generator=g) * 0.2 + ramp) for n in (40, 30))
    context = EvalContext(name="fo", step=0, seed=0, device=torch.device("cpu"), backbone=backbone, data=val,
                          fit_data=fit, run_dir=None, batch_size=16, features=None,
                          batches=lambda source: batches(source, batch_size=16))
    return FrameOrderAccuracy(FrameOrderAccuracyOptions(mode=mode)).evaluate(context)


def test_chance_for_an_order_blind_backbone_and_high_for_an_ordered_one():
    assert _evaluate(_Clips(False))["accuracy"] == 0.5
    assert _evaluate(_Clips(False), "reverse")["accuracy"] == 0.5
    # a linear probe on the frames' brightness separates every reversed ramp, and most shuffles (not all:
    # a shuffle that swaps two neighbours is nearly a ramp)
    assert _evaluate(_Clips(True), "reverse")["accuracy"] == 1.0
    assert _evaluate(_Clips(True))["accuracy"] > 0.85


class TestFrameOrderAccuracyConformance(EvaluatorConformance):
    evaluator = "frame_order_accuracy"
    data = CLIPS
    fit_data = FIT
    backbone = ("r2plus1d", {"widths": [4, 8]})
    option_variants = {"max_iter": 1, "weight_decay": 10.0}
    bad_options = [{"mode": "sort"}, {"max_iter": 0}, {"weight_decay": -1.0}]
