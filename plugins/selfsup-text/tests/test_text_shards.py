"""token_shards: memory-mapped windows at hashed positions, document ids, dtypes, errors."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

import selfsup_text
from selfsup.testing import DataSourceConformance
from selfsup_text.data.shards import TokenShards
from selfsup_text.tokenizers import load_tokenizer, save_tokenizer

SEP = 3


def write_shards(root: Path, docs: list[list[int]], dtype: str = "uint16", tokenizer: str = "bytes") -> np.ndarray:
    """A hand-made prepare output: ``train.bin`` = docs each followed by SEP."""
    root.mkdir(parents=True, exist_ok=True)
    stream = np.concatenate([np.asarray(d + [SEP]) for d in docs]).astype(dtype)
    stream.tofile(root / "train.bin")
    tok = load_tokenizer(tokenizer)
    save_tokenizer(tok, root / "tokenizer")
    (root / "meta.json").write_text(json.dumps({"dtype": dtype, "vocab_size": len(tok), "sep_id": SEP,
                                                "tokens": {"train": len(stream)}}))
    return stream


_rng = np.random.default_rng(0)
DOCS = [list(_rng.integers(5, 261, size=int(n))) for n in _rng.integers(1, 60, size=80)]
ROOT = Path(tempfile.mkdtemp(prefix="selfsup_text_shards_"))
STREAM = write_shards(ROOT, [[int(t) for t in d] for d in DOCS])
OTHER_ROOT = Path(tempfile.mkdtemp(prefix="selfsup_text_shards_other_"))  # the options check's `root` variant
write_shards(OTHER_ROOT, [[int(t) for t in d] for d in reversed(DOCS)])


class TestShardsConformance(DataSourceConformance):
    plugins = [selfsup_text]
    data = ("token_shards", {"root": str(ROOT), "window": 32, "windows_per_epoch": 16})
    bad_options = [{"root": str(ROOT), "window": 0}, {"root": str(ROOT), "split": "dev"},
                   {"root": str(ROOT / "missing")}]
    option_variants = {"root": str(OTHER_ROOT)}


def test_windows_are_slices_at_hashed_positions_with_global_document_ids():
    source = TokenShards(ROOT, "train", window=32, windows_per_epoch=200)
    assert len(source) == 200
    doc_of_token = np.concatenate([[0], np.cumsum(STREAM == SEP)[:-1]])  # a separator ends its document
    for i in range(200):
        start = source.position(i)
        assert 0 <= start <= len(STREAM) - 33
        sample = source[i]
        assert sample["input_ids"].tolist() == STREAM[start : start + 33].tolist()
        assert sample["document_ids"].tolist() == doc_of_token[start : start + 33].tolist()
    with pytest.raises(IndexError):
        source[200]


def test_positions_are_deterministic_seeded_and_spread():
    a = TokenShards(ROOT, "train", window=8, windows_per_epoch=2000)
    b = TokenShards(ROOT, "train", window=8, windows_per_epoch=2000)
    c = TokenShards(ROOT, "train", window=8, windows_per_epoch=2000, position_seed=1)
    pa = np.array([a.position(i) for i in range(2000)])
    assert pa.tolist() == [b.position(i) for i in range(2000)]
    assert (pa != np.array([c.position(i) for i in range(2000)])).mean() > 0.9
    # Uniform over the valid starts: a chi-square test on 10 bins.
    counts = np.bincount(pa * 10 // (len(STREAM) - 8), minlength=10)
    chi2 = ((counts - 200) ** 2 / 200).sum()
    assert chi2 < 27.9, counts  # p = 0.001 for 9 degrees of freedom


def test_uint32_shards_and_meta_errors(tmp_path):
    stream = write_shards(tmp_path / "wide", [[70000, 5, 6], [7, 70001]], dtype="uint32")
    meta = json.loads((tmp_path / "wide" / "meta.json").read_text())
    meta["vocab_size"] = 70002
    (tmp_path / "wide" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="vocab_size 70002"):
        TokenShards(tmp_path / "wide", "train", window=2, windows_per_epoch=4)
    meta["vocab_size"] = 261
    (tmp_path / "wide" / "meta.json").write_text(json.dumps(meta))
    source = TokenShards(tmp_path / "wide", "train", window=2, windows_per_epoch=4)
    start = source.position(0)
    assert source[0]["input_ids"].tolist() == stream[start : start + 3].tolist()
    with pytest.raises(ValueError, match="fewer than window"):
        TokenShards(tmp_path / "wide", "train", window=50, windows_per_epoch=4)
    with pytest.raises(FileNotFoundError, match="val.bin"):
        TokenShards(tmp_path / "wide", "val", window=2, windows_per_epoch=4)


def test_pickles_without_copying_the_tokens():
    import pickle

    source = TokenShards(ROOT, "train", window=16, windows_per_epoch=8)
    blob = pickle.dumps(source)
    assert len(blob) < len(pickle.dumps(source.tokenizer)) + STREAM.nbytes // 2  # the map is not serialized
    clone = pickle.loads(blob)
    assert isinstance(clone.tokens, np.memmap)
    assert all(clone[i]["input_ids"].tolist() == source[i]["input_ids"].tolist() for i in range(8))
