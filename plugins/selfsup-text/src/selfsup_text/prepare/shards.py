"""Step 5 of ``selfsup prepare``: tokenize each split into ``<out>/<split>.bin``.

Each split's documents are tokenized (no [CLS]/[SEP]) and written one after another, each followed
by the separator id (the tokenizer's [SEP] = eos), as raw little-endian ``uint16`` when the
vocabulary has fewer than 65,536 tokens, else ``uint32``. ``meta.json`` records ``dtype``,
``vocab_size``, ``sep_id`` and the tokens and documents per split; the tokenizer is saved in
``<out>/tokenizer/``. :mod:`selfsup_text.data.shards` reads them back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from selfsup_text.data.reading import char_batches
from selfsup_text.tokenizers import plain_backend, save_tokenizer

BATCH = 512  # documents per encode_batch call, and at most ENCODE_BATCH_CHARS characters (memory bound)


def shard_dtype(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size < 65536 else np.dtype("<u4")


def write_split(file: Path, texts: Sequence[str], tokenizer: Any, dtype: np.dtype) -> int:
    """Tokenize ``texts`` into ``file``; returns the number of tokens written (separators included)."""
    sep = int(tokenizer.sep_token_id)
    total = 0
    with open(file, "wb") as f:
        for start in range(0, len(texts), BATCH):
            batch = texts[start : start + BATCH]
            for a, b in char_batches(batch):
                for enc in plain_backend(tokenizer).encode_batch(list(batch[a:b]), add_special_tokens=False):
                    ids = np.asarray([*enc.ids, sep], dtype=dtype)
                    f.write(ids.tobytes())
                    total += len(ids)
    return total


def write_shards(out: Path, splits: dict[str, list[str]], tokenizer: Any) -> dict[str, Any]:
    """Every split's ``.bin``, ``meta.json`` and ``tokenizer/``; returns the meta dict."""
    vocab_size = len(tokenizer)
    dtype = shard_dtype(vocab_size)
    tokens = {name: write_split(out / f"{name}.bin", texts, tokenizer, dtype) for name, texts in splits.items()}
    save_tokenizer(tokenizer, out / "tokenizer")
    meta = {
        "dtype": "uint16" if dtype.itemsize == 2 else "uint32",
        "vocab_size": vocab_size,
        "sep_id": int(tokenizer.sep_token_id),
        "pad_id": int(tokenizer.pad_token_id),
        "tokens": tokens,
        "documents": {name: len(texts) for name, texts in splits.items()},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta
