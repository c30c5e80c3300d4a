"""``texts``: documents given inline, in order; what other plugins build by name to tokenize text."""

from __future__ import annotations

import pytest
import torch

from selfsup.components import BuildContext
from selfsup.testing import DataSourceConformance
from selfsup_text.tokenizers import load_tokenizer


class TestTextsConformance(DataSourceConformance):
    data = ("texts", {"texts": ["one", "two words", "three more words"], "labels": [0, 1, 1], "tokenizer": "bytes"})
    bad_options = [{"texts": []}, {"texts": ["a", "b"], "labels": [1]}, {"texts": ["a"], "max_length": 1}]
    option_variants = {"split": "val", "limit": 1, "min_tokens": 5}  # 'train' is all 3 texts at val_fraction 0.1
    inert_options = {"val_fraction": "split = 'all' keeps every text", "split_seed": "split = 'all' keeps every text"}


def test_texts_are_tokenized_in_order_like_the_tokenizer_does():
    texts = ["the digit seven", "a handwritten 3", "zero"]
    source = BuildContext(name="t").build("data", "texts", {"texts": texts, "tokenizer": "bpe-8k", "max_length": 4})
    expected = load_tokenizer("bpe-8k")(texts, add_special_tokens=True, truncation=True, max_length=4)["input_ids"]
    assert [source[i]["input_ids"].tolist() for i in range(len(texts))] == expected
    batch = source.collate([source[i] for i in range(3)])
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (3, max(map(len, expected)))
    assert batch["attention_mask"].sum(1).tolist() == [len(x) for x in expected]


def test_labels_and_split():
    options = {"texts": [f"text {i}" for i in range(10)], "labels": [i % 2 for i in range(10)], "tokenizer": "bytes"}
    source = BuildContext(name="t").build("data", "texts", options)
    assert [source[i]["label"] for i in range(10)] == [i % 2 for i in range(10)]
    val = BuildContext(name="t").build("data", "texts", {**options, "split": "val", "val_fraction": 0.2})
    assert len(val) == 2 and torch.is_tensor(val[0]["input_ids"])
    with pytest.raises(ValueError, match="labels has 1 entries for 10 texts"):
        BuildContext(name="t").build("data", "texts", {**options, "labels": [1]})
