"""Helpers shared by the speech backbones: reading the batch and pooling over valid frames."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from selfsup.lib import masked_mean  # noqa: F401 - mean over valid frames, re-exported for the speech modules


def audio_and_lengths(batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch["audio"] [B, T]`` (or ``[T]``) and ``batch["lengths"] [B]`` (all of ``T`` when absent)."""
    if "audio" not in batch:
        raise ValueError(f"speech backbones read batch['audio'] [B, T]; the batch has {', '.join(sorted(batch))}")
    audio = torch.as_tensor(batch["audio"])
    if audio.dim() == 1:
        audio = audio.unsqueeze(0)
    if audio.dim() != 2:
        raise ValueError(f"batch['audio'] must be [B, T] (collate with pad_audio), got shape {tuple(audio.shape)}")
    lengths = batch.get("lengths")
    if lengths is None:
        lengths = torch.full((audio.shape[0],), audio.shape[1], dtype=torch.long, device=audio.device)
    return audio.float(), torch.as_tensor(lengths, device=audio.device).long()


def lengths_to_padding_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """``[B]`` valid lengths -> ``[B, frames]`` bool, True = padding."""
    return torch.arange(frames, device=lengths.device)[None] >= lengths[:, None]


class FrameEncoderMixin:
    """``frames``, ``layers`` and ``embed`` of a speech backbone, from its ``latents(batch) ->
    (z [B, F, C], padding [B, F])`` and ``contextualize(z, padding, all_layers=False)``."""

    def frames(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Last-layer outputs ``[B, F, D]`` and the frame padding mask ``[B, F]``."""
        z, padding = self.latents(batch)  # type: ignore[attr-defined]
        return self.contextualize(z, padding), padding  # type: ignore[attr-defined]

    def layers(self, batch: Mapping[str, Any]) -> list[torch.Tensor]:
        """Per-layer states ``[B, F, D]``, as ``contextualize(..., all_layers=True)`` lists them."""
        z, padding = self.latents(batch)  # type: ignore[attr-defined]
        return self.contextualize(z, padding, all_layers=True)  # type: ignore[attr-defined]

    def embed(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Mean of the last layer over valid frames: ``[B, D]``."""
        features, padding = self.frames(batch)
        return masked_mean(features, padding)

