"""Helpers shared by the text tasks and evaluators that are not one method's: per-batch seeding,
the data source's collate, and the checks that a backbone fits the task and its data.

Imports torch: use it from task and evaluator modules (which the factories import), not from
``options`` modules or the plugin's ``__init__``.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import torch

from selfsup.lib import seeding
from selfsup_text.backbones.transformer import check_tokenizer
from selfsup_text.data.collate import pad_collate


def batch_generator(seed: int, stream: str, samples: Sequence[dict[str, Any]]) -> torch.Generator:
    """A generator seeded from (run seed, stream name, the samples' ``index`` values in order)
    (:func:`selfsup.lib.batch_generator`); a sample without an index (streaming sources) counts by a
    hash of its ``input_ids`` instead."""
    keys = [int(s["index"]) if "index" in s else _content_key(s["input_ids"]) for s in samples]
    return seeding.batch_generator(seed, stream, 0, keys)


def _content_key(ids: Any) -> int:
    """A 63-bit key of a token sequence (for samples that carry no index)."""
    return seeding.batch_seed(0, "input_ids", 0, torch.as_tensor(ids).to(torch.int64).flatten())


def require_encoder(backbone: Any, task: str) -> None:
    if getattr(backbone, "family", None) != "bert":
        raise ValueError(
            f"{task} needs an encoder backbone (transformer with family = 'bert'), got "
            f"{getattr(backbone, 'family', type(backbone).__name__)!r}"
        )


def source_collate(data: Any, tokenizer: Any):
    """The data source's ``collate`` or :func:`selfsup_text.data.collate.pad_collate` with the pad id."""
    collate = getattr(data, "collate", None)
    if collate is not None:
        return collate
    return functools.partial(pad_collate, pad_id=tokenizer.pad_token_id)


def check_data(backbone: Any, data: Any, task: str) -> None:
    """The data source's tokenizer must match the backbone's vocabulary."""
    check_tokenizer(backbone, getattr(data, "tokenizer", None), task)
