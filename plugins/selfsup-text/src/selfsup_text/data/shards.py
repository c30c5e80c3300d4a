"""``token_shards``: memory-mapped token streams written by ``selfsup prepare``, read by random window.

Layout of ``root``: ``<split>.bin`` (the split's tokens, documents each followed by the separator
id, as raw little-endian ``uint16`` or ``uint32``), ``meta.json`` (``dtype``, ``vocab_size``,
``sep_id``, ``tokens`` per split) and ``tokenizer/`` (read with :func:`load_tokenizer`).

The source is map-style with ``windows_per_epoch`` samples. Sample ``i`` is the ``window + 1``
tokens starting at a position hashed from ``i`` (SplitMix64 of ``i`` and ``position_seed``), so the
same index always reads the same window and the core's seeded permutation of the indices gives
random windows each epoch, as in nanoGPT's ``get_batch`` but reproducible. ``"document_ids"`` numbers
each token's document in the whole split (a separator belongs to the document it ends).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsup.components import BuildContext
from selfsup.lib import splitmix64
from selfsup_text.data.collate import pad_collate
from selfsup_text.tokenizers import load_tokenizer


def read_meta(root: Path) -> dict[str, Any]:
    file = root / "meta.json"
    if not file.is_file():
        raise FileNotFoundError(f"token_shards: {file} not found (write the shards with `selfsup prepare`)")
    meta = json.loads(file.read_text())
    for key in ("dtype", "vocab_size", "sep_id"):
        if key not in meta:
            raise ValueError(f"token_shards: {file} has no {key!r}")
    if meta["dtype"] not in ("uint16", "uint32"):
        raise ValueError(f"token_shards: dtype must be uint16 or uint32, got {meta['dtype']!r}")
    return meta


class TokenShards:
    """Random windows of one split's token stream (see the module docstring)."""

    def __init__(self, root: Path, split: str, window: int, windows_per_epoch: int, position_seed: int = 0):
        self.root, self.split, self.window = Path(root), split, window
        self.meta = read_meta(self.root)
        self.sep_id = int(self.meta["sep_id"])
        file = self.root / f"{split}.bin"
        if not file.is_file():
            raise FileNotFoundError(f"token_shards: {file} not found")
        self._file = file
        self.tokens = self._open()  # [N]
        if len(self.tokens) < window + 1:
            raise ValueError(
                f"token_shards: {file} holds {len(self.tokens)} tokens, fewer than window + 1 = {window + 1}"
            )
        self.tokenizer = load_tokenizer(str(self.root / "tokenizer"))
        if len(self.tokenizer) != int(self.meta["vocab_size"]):
            raise ValueError(f"token_shards: meta.json says vocab_size {self.meta['vocab_size']} but the tokenizer in "
                             f"{self.root / 'tokenizer'} has {len(self.tokenizer)} tokens")
        self.pad_id = int(self.tokenizer.pad_token_id)
        self.windows_per_epoch = windows_per_epoch
        self._positions = len(self.tokens) - window  # valid starts: 0 .. N - window - 1
        self._seed_mix = splitmix64(position_seed)
        self._separators: np.ndarray | None = None

    def _open(self) -> np.memmap:
        return np.memmap(self._file, dtype=np.dtype(self.meta["dtype"]).newbyteorder("<"), mode="r")

    def __getstate__(self) -> dict[str, Any]:
        # Pickled for spawned data-loader workers: reopen the map there instead of copying the tokens.
        state = dict(self.__dict__)
        state["tokens"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.tokens = self._open()

    def separators(self) -> np.ndarray:
        """Positions of every separator in the stream (computed once, in chunks)."""
        if self._separators is None:
            chunk = 1 << 24
            parts = [np.flatnonzero(self.tokens[s : s + chunk] == self.sep_id) + s
                     for s in range(0, len(self.tokens), chunk)]
            self._separators = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        return self._separators

    def position(self, i: int) -> int:
        """Start of sample ``i``'s window: a hash of ``i`` and the seed, uniform over valid starts."""
        return splitmix64(i ^ self._seed_mix) % self._positions

    def __len__(self) -> int:
        return self.windows_per_epoch

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < self.windows_per_epoch:
            raise IndexError(f"index {i} out of range for {self.windows_per_epoch} windows")
        start = self.position(int(i))
        ids = np.asarray(self.tokens[start : start + self.window + 1], dtype=np.int64)  # [W + 1]
        first = np.searchsorted(self.separators(), start, side="left")  # documents ended before start
        is_sep = (ids == self.sep_id).astype(np.int64)
        doc = first + np.concatenate([[0], np.cumsum(is_sep)[:-1]])  # a separator ends its own document
        return {"input_ids": torch.from_numpy(ids), "document_ids": torch.from_numpy(doc.astype(np.int64))}

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return pad_collate(samples, self.pad_id)


def build(options: Any, context: BuildContext) -> TokenShards:
    return TokenShards(Path(options.root), options.split, options.window, options.windows_per_epoch,
                       options.position_seed)
