"""Token augmentations: rates, protected special tokens, aligned fields, determinism, conformance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import selfsup_text
from selfsup.components import BuildContext
from selfsup.testing import AugmentationConformance
from selfsup_text.augment import options as od
from selfsup_text.augment import tokens as augment

DATA = ("labelled_text", {"set": "polarity", "tokenizer": "bytes"})
CLS, SEP = 2, 3


def _aug(name: str, **options):
    cls = {"span_crop": od.SpanCropOptions, "token_deletion": od.TokenDeletionOptions,
           "token_substitution": od.TokenSubstitutionOptions, "token_swap": od.TokenSwapOptions}[name]
    return getattr(augment, f"build_{name}")(cls(**options), BuildContext(name=name))


def _sample(n: int = 200) -> dict:
    body = torch.arange(10, 10 + n)  # distinct editable tokens
    return {"input_ids": torch.cat([torch.tensor([CLS]), body, torch.tensor([SEP])]), "label": 1}


class TestSpanCrop(AugmentationConformance):
    plugins = [selfsup_text]
    augmentation = ("span_crop", {"min_fraction": 0.3, "max_fraction": 0.6})
    data = DATA
    option_variants = {"out_key": "positive_ids"}  # the output goes to another key
    bad_options = [{"min_fraction": 0.8, "max_fraction": 0.5}, {"min_fraction": 0}]


class TestTokenDeletion(AugmentationConformance):
    plugins = [selfsup_text]
    augmentation = ("token_deletion", {"rate": 0.3})
    data = DATA
    option_variants = {"out_key": "positive_ids"}  # the output goes to another key
    bad_options = [{"rate": 1.0}, {"rate": -0.1}]


class TestTokenSubstitution(AugmentationConformance):
    plugins = [selfsup_text]
    augmentation = ("token_substitution", {"rate": 0.3, "vocab_size": 261, "low_id": 5})
    data = DATA
    option_variants = {"out_key": "positive_ids"}  # the output goes to another key
    bad_options = [{"rate": 2.0}, {"vocab_size": 5, "low_id": 5}]


class TestTokenSwap(AugmentationConformance):
    plugins = [selfsup_text]
    augmentation = ("token_swap", {"rate": 0.3})
    data = DATA
    option_variants = {"out_key": "positive_ids"}  # the output goes to another key
    bad_options = [{"rate": 1.5}]


@pytest.mark.parametrize("name,options", [
    ("span_crop", {"min_fraction": 0.2, "max_fraction": 0.5}),
    ("token_deletion", {"rate": 0.5}),
    ("token_substitution", {"rate": 0.5, "vocab_size": 1000}),
    ("token_substitution", {"rate": 0.5}),
    ("token_swap", {"rate": 0.5}),
])
def test_first_and_last_tokens_are_untouched_by_default(name, options):
    aug = _aug(name, **options)
    for seed in range(20):
        out = aug(_sample(), torch.Generator().manual_seed(seed))["input_ids"]
        assert out[0] == CLS and out[-1] == SEP
        assert (out[1:-1] != CLS).all() or name == "token_substitution"


def test_special_ids_option_protects_them_anywhere():
    ids = torch.tensor([CLS, 10, 11, SEP, 12, 13, SEP, 0, 0])
    for name, options in [("token_deletion", {"rate": 0.9}), ("token_substitution", {"rate": 1.0, "vocab_size": 50,
                                                                                        "low_id": 5}),
                          ("token_swap", {"rate": 1.0}), ("span_crop", {"min_fraction": 0.3, "max_fraction": 0.3})]:
        aug = _aug(name, special_ids=[0, CLS, SEP], **options)
        out = aug({"input_ids": ids}, torch.Generator().manual_seed(0))["input_ids"]
        specials = [t for t in out.tolist() if t in (0, CLS, SEP)]
        assert specials == [CLS, SEP, SEP, 0, 0], name
        assert out[0] == CLS and out[-1] == 0 and out[-2] == 0


def test_deletion_rate_is_statistically_right():
    aug = _aug("token_deletion", rate=0.25)
    kept = [len(aug(_sample(400), torch.Generator().manual_seed(s))["input_ids"]) - 2 for s in range(50)]
    deleted = 1 - np.sum(kept) / (400 * 50)
    assert abs(deleted - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 20000)  # 4 standard errors
    out = aug(_sample(400), torch.Generator().manual_seed(0))["input_ids"]
    assert (out[1:-1].diff() > 0).all()  # order kept


def test_substitution_rate_and_range():
    aug = _aug("token_substitution", rate=0.2, vocab_size=100000, low_id=50000)
    sample = _sample(500)
    changed = []
    for s in range(40):
        out = aug(sample, torch.Generator().manual_seed(s))["input_ids"]
        diff = out != sample["input_ids"]
        changed.append(diff.float().sum().item())
        assert ((out[diff] >= 50000) & (out[diff] < 100000)).all()
    rate = np.sum(changed) / (500 * 40)
    assert abs(rate - 0.2) < 4 * np.sqrt(0.2 * 0.8 / 20000)
    in_sample = _aug("token_substitution", rate=1.0)(sample, torch.Generator().manual_seed(0))["input_ids"]
    assert set(in_sample[1:-1].tolist()) <= set(sample["input_ids"][1:-1].tolist())


def test_swap_count_matches_the_left_to_right_scan_expectation():
    rate, n = 0.3, 100
    expected = [0.0, 0.0]  # E[swaps] over k editable tokens: E_k = r (1 + E_{k-2}) + (1 - r) E_{k-1}
    for k in range(2, n + 1):
        expected.append(rate * (1 + expected[k - 2]) + (1 - rate) * expected[k - 1])
    aug = _aug("token_swap", rate=rate)
    counts = []
    for s in range(200):
        out = aug(_sample(n), torch.Generator().manual_seed(s))["input_ids"][1:-1]
        moved = (out != torch.arange(10, 10 + n)).sum().item()
        assert moved % 2 == 0 and sorted(out.tolist()) == list(range(10, 10 + n))
        assert ((out - torch.arange(10, 10 + n)).abs() <= 1).all()  # only neighbours swap
        counts.append(moved // 2)
    assert abs(np.mean(counts) - expected[n]) < 4 * np.std(counts) / np.sqrt(200)


def test_span_crop_keeps_one_contiguous_span_of_the_right_length():
    aug = _aug("span_crop", min_fraction=0.25, max_fraction=0.5)
    lengths = []
    for s in range(200):
        out = aug(_sample(100), torch.Generator().manual_seed(s))["input_ids"]
        body = out[1:-1]
        assert (body.diff() == 1).all()
        lengths.append(len(body))
    assert 25 <= min(lengths) and max(lengths) <= 50
    assert abs(np.mean(lengths) - 37.5) < 1.5  # uniform fraction in [0.25, 0.5]


def test_span_crop_max_tokens_gives_short_passages_from_anywhere():
    aug = _aug("span_crop", min_fraction=1.0, max_fraction=1.0, max_tokens=20)
    starts = []
    for s in range(300):
        body = aug(_sample(200), torch.Generator().manual_seed(s))["input_ids"][1:-1]
        assert len(body) == 20 and (body.diff() == 1).all()
        starts.append(int(body[0]) - 10)
    assert min(starts) < 10 and max(starts) > 170  # offsets uniform over the 181 possible ones
    assert abs(np.mean(starts) - 90) < 8
    short = aug(_sample(12), torch.Generator().manual_seed(0))["input_ids"]
    assert len(short) == 14  # shorter than max_tokens: all kept


def test_aligned_fields_follow_and_sentence_starts_are_remapped():
    sample = {"input_ids": torch.tensor([CLS, 10, 11, 12, 13, 14, 15, SEP]),
              "document_ids": torch.tensor([0, 0, 0, 1, 1, 1, 1, 1]),
              "sentence_starts": torch.tensor([1, 4])}
    aug = augment.TokenDeletion(od.TokenDeletionOptions(rate=0.5))
    for seed in range(30):
        out = aug(sample, torch.Generator().manual_seed(seed))
        kept = [sample["input_ids"].tolist().index(t) for t in out["input_ids"].tolist()]
        assert out["document_ids"].tolist() == sample["document_ids"][kept].tolist()
        for start in out["sentence_starts"].tolist():
            assert 0 <= start < len(out["input_ids"])
        first_kept_after_4 = next(i for i, k in enumerate(kept) if k >= 4)
        assert first_kept_after_4 in out["sentence_starts"].tolist()
    assert sample["input_ids"].tolist() == [CLS, 10, 11, 12, 13, 14, 15, SEP]  # input untouched


def test_zero_rates_and_short_samples_are_identity():
    for name, options in [("token_deletion", {"rate": 0.0}), ("token_swap", {"rate": 0.0}),
                          ("token_substitution", {"rate": 0.0}), ("span_crop", {"min_fraction": 1.0})]:
        aug = _aug(name, **options)
        sample = _sample(30)
        assert torch.equal(aug(sample, torch.Generator().manual_seed(0))["input_ids"], sample["input_ids"])
        two = {"input_ids": torch.tensor([CLS, SEP])}
        assert aug(two, torch.Generator().manual_seed(0))["input_ids"].tolist() == [CLS, SEP]
    with pytest.raises(ValueError, match="1-d LongTensor"):
        _aug("token_swap")({"input_ids": [1, 2, 3]}, torch.Generator())


@pytest.mark.parametrize("name,options", [
    ("span_crop", {"min_fraction": 0.2, "max_fraction": 0.5}),
    ("token_deletion", {"rate": 0.5}),
    ("token_substitution", {"rate": 0.5}),
    ("token_swap", {"rate": 0.5}),
])
def test_out_key_writes_a_second_view_and_keeps_the_original(name, options):
    sample = {**_sample(60), "document_ids": torch.zeros(62, dtype=torch.long)}
    second = _aug(name, out_key="positive_ids", **options)
    first = _aug(name, **options)
    out = second(sample, torch.Generator().manual_seed(1))
    assert torch.equal(out["input_ids"], sample["input_ids"])  # the original stays
    assert torch.equal(out["document_ids"], sample["document_ids"])  # aligned fields follow input_ids only
    in_place = _aug(name, **options)(sample, torch.Generator().manual_seed(1))
    assert torch.equal(out["positive_ids"], in_place["input_ids"])  # the same edit, written elsewhere
    both = first(out, torch.Generator().manual_seed(2))  # then edit input_ids itself: two views
    assert not torch.equal(both["input_ids"], both["positive_ids"])
    # an edit that changes nothing still provides the field
    unchanged = _aug(name, out_key="positive_ids", **{k: (1.0 if k == "min_fraction" else 0.0) for k in options
                                                       if k != "max_fraction"})
    assert torch.equal(unchanged(sample, torch.Generator())["positive_ids"], sample["input_ids"])
