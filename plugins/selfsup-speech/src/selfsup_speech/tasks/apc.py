"""Autoregressive Predictive Coding (APC).

Chung, Hsu, Tang, Glass, An Unsupervised Autoregressive Model for Speech Representation Learning,
Interspeech 2019.

A unidirectional encoder reads log-mel frames ``x_1 .. x_t`` and a linear layer predicts
``x_{t+n}`` from its output at ``t``: L1 loss ``sum_t |W h_t - x_{t+n}|`` over the frames whose
target exists and is not padding (the last ``n`` valid frames of an utterance have no target).
Predicting ``n > 1`` frames ahead (``shift``, 3 by default; the paper finds 2-5 best) keeps the
model from copying the local smoothness of the spectrogram. The backbone must be causal
(``logmel_encoder`` with ``causal = true``): a bidirectional one would see its targets.

Note: with the backbone's ``normalize = "utterance"`` the inputs are standardised with statistics of
the whole clip, a small look-ahead shared with the paper, which normalises per speaker.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from selfsup.components import BuildContext, TaskOutput
from selfsup_speech.data.collate import pad_audio
from selfsup_speech.tasks.options import APCOptions


def shifted_pairs(frames: torch.Tensor, padding: torch.Tensor, shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``frames [B, F, M]``, ``padding [B, F]`` -> ``(targets [B, F - shift, M], valid [B, F - shift])``
    with ``targets[:, t] = frames[:, t + shift]`` and ``valid[:, t]`` True where ``t + shift`` is a
    valid (non-padding) frame."""
    return frames[:, shift:], ~padding[:, shift:]


class APCTask(nn.Module):
    """Linear prediction head of APC on a causal backbone with ``logmel`` and ``contextualize``."""

    def __init__(self, options: APCOptions, backbone: Any):
        super().__init__()
        for method in ("logmel", "contextualize"):
            if not callable(getattr(backbone, method, None)):
                raise ValueError(f"apc needs a log-mel backbone (logmel_encoder); {type(backbone).__name__} has no "
                                 f"{method}()")
        if not getattr(backbone, "causal", False):
            raise ValueError("apc needs a unidirectional backbone (logmel_encoder with causal = true): a bidirectional "
                             "encoder sees the frames it must predict")
        self.options = options
        self.head = nn.Linear(backbone.output_dim, backbone.latent_dim)

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return pad_audio(samples)

    def forward(self, batch: dict[str, Any], backbone: Any) -> TaskOutput:
        n = self.options.shift
        frames, padding = backbone.logmel(batch)  # [B, F, M], [B, F]
        states = backbone.contextualize(frames, padding)  # [B, F, D]
        if frames.shape[1] <= n:
            raise ValueError(f"apc: clips of {frames.shape[1]} frames are too short to predict {n} frames ahead")
        prediction = self.head(states[:, :-n])  # [B, F - n, M]: from frames <= t
        targets, valid = shifted_pairs(frames, padding, n)  # x_{t+n}
        error = (prediction.float() - targets.float()).abs().mean(-1)  # [B, F - n]
        count = valid.sum()
        loss = (error * valid).sum() / count.clamp_min(1)
        with torch.no_grad():
            copy = ((frames[:, :-n] - targets).abs().mean(-1) * valid).sum() / count.clamp_min(1)
        return TaskOutput(loss=loss, metrics={"l1": loss.detach(), "copy_l1": copy, "frames": count.float()})


def build(options: APCOptions, context: BuildContext) -> APCTask:
    return APCTask(options, context.backbone)
