"""Batching of variable-length token samples: right-padding plus attention masks."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch.utils.data import default_collate

#: Sample fields padded with ``pad_id`` (each gets a mask named in ``MASK_NAMES``).
MASK_NAMES = {"input_ids": "attention_mask", "positive_ids": "positive_attention_mask",
              "negative_ids": "negative_attention_mask"}


def pad_sequences(seqs: Sequence[torch.Tensor], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-d tensors to the longest: ``(padded [B, T], mask [B, T] long, 1 = real)``."""
    longest = max((len(s) for s in seqs), default=0)
    out = torch.full((len(seqs), longest), value, dtype=torch.long)  # [B, T]
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)  # [B, T]
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return out, mask


def pad_collate(samples: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Batch text samples.

    Every ``*_ids`` field is right-padded with ``pad_id`` to the longest in the batch
    (``document_ids`` with -1, ``token_type_ids`` with 0); ``input_ids``/``positive_ids``/``negative_ids`` get
    ``attention_mask``/``positive_attention_mask``/``negative_attention_mask`` ([B, T], 1 = real
    token). ``sentence_starts`` (ragged) is padded with -1. Other fields (``label``, ``index``, ...)
    go through ``default_collate`` (``label [B]``).
    """
    if not samples:
        raise ValueError("pad_collate: empty batch")
    keys = samples[0].keys()
    for s in samples[1:]:
        if s.keys() != keys:
            raise ValueError(f"pad_collate: samples have different fields: {sorted(keys)} vs {sorted(s.keys())}")
    batch: dict[str, Any] = {}
    rest: list[str] = []
    for key in keys:
        if key in ("document_ids", "sentence_starts"):
            batch[key], _ = pad_sequences([torch.as_tensor(s[key], dtype=torch.long) for s in samples], -1)
        elif key == "token_type_ids":
            batch[key], _ = pad_sequences([torch.as_tensor(s[key], dtype=torch.long) for s in samples], 0)
        elif key.endswith("_ids"):
            batch[key], mask = pad_sequences([torch.as_tensor(s[key], dtype=torch.long) for s in samples], pad_id)
            batch[MASK_NAMES.get(key, key[: -len("_ids")] + "_attention_mask")] = mask
        else:
            rest.append(key)
    if rest:
        batch.update(default_collate([{k: s[k] for k in rest} for s in samples]))
    return batch
