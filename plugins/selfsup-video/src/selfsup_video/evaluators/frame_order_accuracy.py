"""Frame-order accuracy: how much frame order a frozen clip embedding carries.

Each clip of the fit set and of the held-out set is embedded twice by the frozen backbone (its
``embed`` on ``{"video": ...}``): as it is (label 1) and altered (label 0): its frames in a random
order other than the identity (``mode = "shuffle"``, the Shuffle and Learn / OPN question) or
played backwards (``mode = "reverse"``, the arrow of time). A logistic-regression probe
(:func:`selfsup.lib.fit_linear_probe` on standardised features) is fitted on the fit set's pairs and
scored on the held-out pairs; 0.5 is chance, and an order-blind backbone (``framewise`` with
``fusion = "mean"``) scores exactly that.

Why a probe on frozen features rather than a task head's own accuracy on validation data: it works
for every backbone and every task (CVRL and VideoMAE have no order head), it compares a trained
backbone with its random initialisation and with other pretext tasks on one scale, and it measures
what the representation holds rather than what a head trained on the same frames memorised (the
heads' training accuracy is logged as ``<task>/accuracy`` anyway). Permutations come from a
generator seeded by the run seed and the set's role (fit or held-out), drawn in the sets' fixed
order, so repeated evaluations alter every clip the same way.
"""

from __future__ import annotations

from typing import Any

import torch

from selfsup.components import EvalContext
from selfsup.lib import fit_linear_probe, seeding, standardize_features, to_device
from selfsup.lib.modules import frozen


def alter(video: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """``video [B, T, C, H, W]`` with every clip's frames reversed, or permuted by its own random
    non-identity permutation."""
    if mode == "reverse":
        return video.flip(1)
    b, t = video.shape[:2]
    if t < 2:
        raise ValueError("frame_order_accuracy needs clips of at least 2 frames")
    identity = torch.arange(t)
    orders = []
    for _ in range(b):
        order = torch.randperm(t, generator=generator)
        while torch.equal(order, identity):
            order = torch.randperm(t, generator=generator)
        orders.append(order)
    index = torch.stack(orders).to(video.device)  # [B, T]
    return torch.gather(video, 1, index[:, :, None, None, None].expand(-1, -1, *video.shape[2:]))


class FrameOrderAccuracy:
    needs_fit_data = True

    def __init__(self, options: Any):
        self.options = options

    def _pairs(self, context: EvalContext, source: Any, role: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``[2N, D]`` (each clip as is, then altered) and labels ``[2N]`` (1 = in order)."""
        generator = torch.Generator().manual_seed(seeding.sample_seed(context.seed, "frame_order_accuracy", 0,
                                                                      0 if role == "fit" else 1))
        feats, labels = [], []
        backbone = context.backbone
        with frozen(backbone):
            for batch in context.batches(source):
                video = batch.get("video")
                if video is None or video.dim() != 5:
                    raise ValueError(f"evaluator {context.name!r}: needs samples with 'video' [T, C, H, W]")
                altered = alter(video, self.options.mode, generator)
                for clips, label in ((video, 1), (altered, 0)):
                    feats.append(backbone.embed(to_device({"video": clips}, context.device)).float().cpu())
                    labels.append(torch.full((video.shape[0],), label, dtype=torch.long))
        return torch.cat(feats), torch.cat(labels)

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        x_fit, y_fit = self._pairs(context, context.fit_data, "fit")
        x_val, y_val = self._pairs(context, context.data, "val")
        x_fit, x_val = standardize_features(x_fit, x_val)
        head = fit_linear_probe(x_fit, y_fit, num_classes=2, weight_decay=self.options.weight_decay,
                                max_iter=self.options.max_iter)
        with torch.no_grad():
            fit_acc = (head(x_fit).argmax(1) == y_fit).float().mean().item()
            acc = (head(x_val).argmax(1) == y_val).float().mean().item()
        return {"accuracy": acc, "fit_accuracy": fit_acc}


def build_frame_order_accuracy(options: Any, context: Any) -> FrameOrderAccuracy:
    return FrameOrderAccuracy(options)
