"""NSP pairs: balanced labels, IsNext really consecutive, NotNext from another document, BERT's
special tokens and segment ids, truncation, determinism, joint MLM; task conformance."""

from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from selfsup.components import BuildContext
from selfsup.testing import TaskConformance, registry_with
from selfsup_text.tasks.nsp import IS_NEXT, NOT_NEXT, _fit, sentences_of

Z = 4.5
SENTENCES = {"tokenizer": "bpe-8k", "name": "news", "sentences": True, "add_special_tokens": False}
TINY_BERT = {"tokenizer": "bpe-8k", "family": "bert", "layers": 2, "heads": 2, "dim": 32, "context": 128}


@pytest.fixture(scope="module")
def source():
    return registry_with(None).get("data_source", "embedded_corpus").build({**SENTENCES, "limit": 120},
                                                                           BuildContext(name="d"))


@pytest.fixture(scope="module")
def task(source):
    reg = registry_with(None)
    torch.manual_seed(0)
    backbone = reg.get("backbone", "transformer").build(TINY_BERT, BuildContext(name="b"))
    return reg.get("pretext_task", "nsp").build({"max_length": 64},
                                                BuildContext(name="nsp", seed=7, backbone=backbone, data=source))


def _find(haystack: torch.Tensor, needle: torch.Tensor) -> list[int]:
    n = len(needle)
    return [i for i in range(len(haystack) - n + 1) if torch.equal(haystack[i : i + n], needle)]


def _segments(ids: torch.Tensor, types: torch.Tensor, mask: torch.Tensor, cls: int,
              sep: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = int(mask.sum())
    ids, types = ids[:n], types[:n]
    assert int(ids[0]) == cls and int(ids[-1]) == sep
    first_sep = int((types == 1).nonzero()[0]) - 1
    assert int(ids[first_sep]) == sep
    assert (types[: first_sep + 1] == 0).all() and (types[first_sep + 1 :] == 1).all()
    a, b = ids[1:first_sep], ids[first_sep + 1 : -1]
    assert cls not in a.tolist() + b.tolist() and sep not in a.tolist() + b.tolist()
    return a, b


def test_pairs_are_what_they_claim(source, task) -> None:
    tok = task.tokenizer
    samples = [{"index": i, **source[i]} for i in range(len(source))]
    docs = [s["input_ids"] for s in samples]
    starts = [set(s["sentence_starts"].tolist()) | {0} for s in samples]
    seen = {IS_NEXT: 0, NOT_NEXT: 0}
    for first in range(0, len(samples), 8):
        chunk = samples[first : first + 8]
        batch = task.collate(chunk)
        assert batch["input_ids"].shape[1] <= 64
        for row, sample in enumerate(chunk):
            a, b = _segments(batch["input_ids"][row], batch["token_type_ids"][row], batch["attention_mask"][row],
                             tok.cls_token_id, tok.sep_token_id)
            assert len(a) > 0 and len(b) > 0 and len(a) + len(b) <= 61
            i, label = sample["index"], int(batch["nsp_label"][row])
            seen[label] += 1
            if label == IS_NEXT:  # A then B, contiguous in this document, B at a sentence start
                at = _find(docs[i], torch.cat([a, b]))
                assert any(p + len(a) in starts[i] for p in at), f"document {i}: B does not follow A"
            else:  # B is a run of another document starting at one of its sentences
                others = [j for j in range(len(docs)) if j != i and any(p in starts[j] for p in _find(docs[j], b))]
                assert others, f"document {i}: NotNext B found in no other document"
    assert seen[IS_NEXT] > 0 and seen[NOT_NEXT] > 0


def test_segment_a_starts_anywhere_in_the_document() -> None:
    """A begins at a uniformly drawn sentence (not always the first), so one document gives many
    different pairs over the epochs."""
    from selfsup_text.tasks.nsp import make_pair

    sentence = lambda k: torch.full((5,), 100 + k)  # noqa: E731 - five tokens of id 100 + k
    doc = {"input_ids": torch.cat([sentence(k) for k in range(8)]), "sentence_starts": torch.arange(0, 40, 5)}
    other = lambda g: doc  # noqa: E731
    firsts = []
    for seed in range(400):
        ids, types, label = make_pair(doc, other, torch.Generator().manual_seed(seed), max_length=23,
                                      next_probability=1.0, cls_id=2, sep_id=3)
        a = ids[1 : int((types == 1).nonzero()[0]) - 1]
        first = int(a[0]) - 100
        firsts.append(first)
        # two sentences fit in half the budget, but B needs s_7
        assert label == IS_NEXT and len(a) == (10 if first < 6 else 5)
        assert int(ids[len(a) + 2]) - 100 == first + len(a) // 5  # B starts with the sentence after A's last
    counts = torch.bincount(torch.tensor(firsts), minlength=7)
    assert len(counts) == 7 and counts.min() > 30  # every start 0..6, about uniformly (s_7 is never A's first)


def test_labels_are_balanced(source, task) -> None:
    samples = [{"index": i, **source[i]} for i in range(len(source))]
    multi = torch.tensor([len(sentences_of(s["input_ids"], s["sentence_starts"])) >= 2 for s in samples])
    is_next, rounds = 0, 40
    for r in range(rounds):  # different batch compositions give different draws
        order = torch.randperm(len(samples), generator=torch.Generator().manual_seed(r)).tolist()
        for first in range(0, len(order), 10):
            chunk = [samples[k] for k in order[first : first + 10]]
            batch = task.collate(chunk)
            is_next += int((batch["nsp_label"] == IS_NEXT).sum())
            single = torch.tensor([not multi[s["index"]] for s in chunk])
            assert (batch["nsp_label"][single] == NOT_NEXT).all(), "a single-sentence document gave IsNext"
    n = int(multi.sum()) * rounds
    assert n > 500
    rate = is_next / n
    assert abs(rate - 0.5) <= Z * math.sqrt(0.25 / n), f"IsNext rate {rate:.4f} over {n} multi-sentence documents"


def test_collate_is_deterministic_in_the_indices(source, task) -> None:
    chunk = [{"index": i, **source[i]} for i in range(30)]
    a, b = task.collate(chunk), task.collate(chunk)
    assert all(torch.equal(a[k], b[k]) for k in a)
    shifted = task.collate([{**s, "index": s["index"] + 60} for s in chunk])  # same documents, other indices
    assert not torch.equal(a["nsp_label"], shifted["nsp_label"])


def test_truncation_rule() -> None:
    assert _fit(10, 20, 61) == (10, 20)
    assert _fit(10, 90, 61) == (10, 51)  # B (longer) shortened
    assert _fit(90, 12, 61) == (49, 12)
    assert _fit(90, 90, 61) == (31, 30)
    # the closed form equals BERT's loop (the longer one loses a token; ties shorten B)
    for la in range(0, 80, 7):
        for lb in range(0, 80, 5):
            x, y = la, lb
            while x + y > 61:
                if x > y:
                    x -= 1
                else:
                    y -= 1
            assert _fit(la, lb, 61) == (x, y)


def test_joint_mlm_masks_only_content(source) -> None:
    reg = registry_with(None)
    torch.manual_seed(0)
    backbone = reg.get("backbone", "transformer").build(TINY_BERT, BuildContext(name="b"))
    task = reg.get("pretext_task", "nsp").build({"max_length": 64, "mlm": True},
                                              BuildContext(name="nsp", seed=1, backbone=backbone, data=source))
    chunk = [{"index": i, **source[i]} for i in range(16)]
    batch = task.collate(chunk)
    selected = batch["mlm_labels"] != -100
    tok = task.tokenizer
    assert selected.any()
    original = batch["mlm_labels"][selected]
    assert not torch.isin(original, torch.tensor(tok.all_special_ids)).any()
    assert (batch["attention_mask"][selected] == 1).all()
    out = task(batch, backbone)
    total = out.metrics["nsp_loss"] + out.metrics["mlm_loss"]
    torch.testing.assert_close(out.loss.detach(), total)


def test_build_checks(source) -> None:
    reg = registry_with(None)
    corpus = reg.get("data_source", "embedded_corpus")
    bert = reg.get("backbone", "transformer").build(TINY_BERT, BuildContext(name="b"))
    nsp = reg.get("pretext_task", "nsp")
    no_sentences = corpus.build({**SENTENCES, "sentences": False, "limit": 4}, BuildContext(name="d"))
    with pytest.raises(ValueError, match="sentences = true"):
        nsp.build({}, BuildContext(name="t", backbone=bert, data=no_sentences))
    wrapped = corpus.build({**SENTENCES, "add_special_tokens": True, "limit": 4}, BuildContext(name="d"))
    with pytest.raises(ValueError, match="add_special_tokens = false"):
        nsp.build({}, BuildContext(name="t", backbone=bert, data=wrapped))
    gpt = reg.get("backbone", "transformer").build({**TINY_BERT, "family": "gpt2"}, BuildContext(name="b"))
    with pytest.raises(ValueError, match="encoder backbone"):
        nsp.build({}, BuildContext(name="t", backbone=gpt, data=source))
    with pytest.raises(ValueError, match="max_length 256 exceeds"):
        nsp.build({"max_length": 256}, BuildContext(name="t", backbone=bert, data=source))


class TestNSPConformance(TaskConformance):
    task = "nsp"
    task_options = {"max_length": 64}
    data = ("embedded_corpus", {**SENTENCES, "limit": 12})
    backbone = ("transformer", TINY_BERT)
    bad_options = [{"max_length": 4}, {"next_probability": 1.0}, {"mlm_weight": -1}]
    option_variants = {"next_probability": 0.01}  # 0.5 -> 0.75 draws the same pairs for the suite's two batches
    inert_options = {
        "mlm_probability": "mlm = false: used only with mlm = true (TestJointConformance varies it)",
        "mask_fraction": "mlm = false: used only with mlm = true (TestJointConformance varies it)",
        "random_fraction": "mlm = false: used only with mlm = true (TestJointConformance varies it)",
        "masking": "mlm = false: used only with mlm = true (TestJointConformance varies it)",
        "mlm_weight": "mlm = false: used only with mlm = true (TestJointConformance varies it)",
        "span_p": "used only with masking = 'span' (test_mlm's TestSpanMLMConformance varies it)",
        "max_span_length": "used only with masking = 'span' (test_mlm's TestSpanMLMConformance varies it)",
    }


class TestJointConformance(TaskConformance):
    task = "nsp"
    task_options = {"max_length": 64, "mlm": True, "masking": "whole_word"}
    data = ("embedded_corpus", {**SENTENCES, "limit": 12})
    backbone = ("transformer", TINY_BERT)
    option_variants = {"next_probability": 0.01}
    inert_options = {
        "span_p": "used only with masking = 'span' (test_mlm's TestSpanMLMConformance varies it)",
        "max_span_length": "used only with masking = 'span' (test_mlm's TestSpanMLMConformance varies it)",
    }
