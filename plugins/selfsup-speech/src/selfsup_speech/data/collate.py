"""Batching variable-length waveforms: zero-padding plus lengths and a padding mask."""

from __future__ import annotations

from typing import Any

import torch

_INT_KEYS = ("label", "speaker", "index")


def pad_audio(samples: list[dict[str, Any]], key: str = "audio") -> dict[str, Any]:
    """``samples`` with ``key`` ``[T_i]`` -> ``{key: [B, T_max] zero-padded, "lengths": [B] int64,
    "padding_mask": [B, T_max] bool (True = padding)}``, plus ``label``/``speaker``/``index`` as
    int64 ``[B]`` when every sample has them. Other fields: equal-shape tensors are stacked,
    numbers become a tensor, anything else (strings, ragged tensors) is kept as a list."""
    if not samples:
        raise ValueError("pad_audio needs at least one sample")
    waves = [torch.as_tensor(s[key]) for s in samples]
    for w in waves:
        if w.dim() != 1:
            raise ValueError(f"pad_audio expects 1-D {key!r} waveforms, got shape {tuple(w.shape)}")
    lengths = torch.tensor([w.numel() for w in waves], dtype=torch.long)  # [B]
    audio = torch.zeros(len(waves), int(lengths.max()), dtype=waves[0].dtype)  # [B, T_max]
    for i, w in enumerate(waves):
        audio[i, : w.numel()] = w
    batch: dict[str, Any] = {
        key: audio,
        "lengths": lengths,
        "padding_mask": torch.arange(audio.shape[1]).unsqueeze(0) >= lengths.unsqueeze(1),  # [B, T_max]
    }
    for name in samples[0]:
        if name == key or not all(name in s for s in samples):
            continue
        values = [s[name] for s in samples]
        if name in _INT_KEYS:
            batch[name] = torch.tensor([int(v) for v in values], dtype=torch.long)
        elif all(isinstance(v, torch.Tensor) for v in values) and len({tuple(v.shape) for v in values}) == 1:
            batch[name] = torch.stack(values)
        elif all(isinstance(v, (int, float, bool)) and not isinstance(v, str) for v in values):
            batch[name] = torch.tensor(values)
        else:
            batch[name] = values
    return batch
