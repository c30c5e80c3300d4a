"""CLM: packing never leaks across documents, position restarts, kept targets, the loss against
transformers' own LM loss, build-time checks and task conformance."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from selfsup.components import BuildContext
from selfsup.testing import TaskConformance, registry_with
from selfsup_text.backbones.options import TransformerOptions
from selfsup_text.backbones.transformer import build as build_backbone
from selfsup_text.tasks.clm import CLM, clm_forward, document_causal_mask, document_positions, segments_from_separators
from selfsup_text.tasks.options import CLMOptions

TINY = {"tokenizer": "bytes", "layers": 2, "heads": 2, "dim": 32, "context": 64, "dropout": 0.0}
WINDOWS = ("embedded_corpus", {"tokenizer": "bytes", "name": "news", "limit": 10, "window": 32})
SEP = 3  # [SEP] of our tokenizers


def _backbone(family: str = "gpt2", **kw):
    torch.manual_seed(0)
    return build_backbone(TransformerOptions(**{**TINY, "family": family, **kw}), BuildContext(name="b")).eval()


def _packed(seed: int = 0) -> dict[str, torch.Tensor]:
    """Two windows of 21 tokens: document 0 = 7 tokens + [SEP], document 1 = the rest."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 261, (2, 21), generator=g)
    ids[:, 7] = SEP
    docs = torch.zeros(2, 21, dtype=torch.long)
    docs[:, 8:] = 1
    return {"input_ids": ids, "document_ids": docs}


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packing_never_leaks(family: str, attn: str) -> None:
    b = _backbone(family, attn_implementation=attn)
    batch = _packed()
    changed = {**batch, "input_ids": batch["input_ids"].clone()}
    changed["input_ids"][:, 1:6] = torch.randint(5, 261, (2, 5), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        isolated = [clm_forward(b, x, cross_document_attention=False)[0] for x in (batch, changed)]
        crossing = [clm_forward(b, x, cross_document_attention=True)[0] for x in (batch, changed)]
    doc2 = slice(8, None)  # input positions of document 1
    assert torch.equal(isolated[0][:, doc2], isolated[1][:, doc2]), "document 0 leaked into document 1"
    assert (crossing[0][:, doc2] - crossing[1][:, doc2]).abs().max() > 1e-3, "cross-document attention had no effect"
    assert not torch.equal(isolated[0][:, :6], isolated[1][:, :6])


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_document_in_a_window_equals_document_alone(family: str) -> None:
    """Position ids restart: document 1's logits are those of document 1 run on its own."""
    b = _backbone(family)
    batch = _packed()
    with torch.no_grad():
        packed, _ = clm_forward(b, batch, cross_document_attention=False)
        alone = b.lm_logits(b.hidden_states(batch["input_ids"][:, 8:-1]))
    torch.testing.assert_close(packed[:, 8:], alone, atol=1e-5, rtol=1e-5)


def test_targets_keep_the_separator_and_drop_the_next_documents_first_token() -> None:
    b = _backbone()
    batch = _packed()
    _, targets = clm_forward(b, batch, cross_document_attention=False)
    ids = batch["input_ids"]
    assert torch.equal(targets[:, 6], ids[:, 7]) and (targets[:, 6] == SEP).all()  # last word -> [SEP] kept
    assert (targets[:, 7] == -100).all()  # [SEP] -> first token of the next document: ignored
    keep = torch.ones(20, dtype=torch.bool)
    keep[7] = False
    assert torch.equal(targets[:, keep], ids[:, 1:][:, keep])
    _, all_targets = clm_forward(b, batch, cross_document_attention=True)
    assert torch.equal(all_targets, ids[:, 1:])
    padded = {**batch, "attention_mask": torch.ones_like(ids)}
    padded["attention_mask"][1, 15:] = 0
    _, t = clm_forward(b, padded, cross_document_attention=False)
    assert (t[1, 14:] == -100).all() and torch.equal(t[1, 8:14], ids[1, 9:15])


def test_mask_and_positions() -> None:
    seg = torch.tensor([[0, 0, 0, 1, 1, 2, -1, -1]])
    mask = document_causal_mask(seg, torch.tensor([[1, 1, 1, 1, 1, 1, 0, 0]]))[0, 0]
    expected = torch.zeros(8, 8, dtype=torch.bool)
    for i, j in [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (3, 3), (4, 3), (4, 4), (5, 5), (6, 6), (7, 7)]:
        expected[i, j] = True
    assert torch.equal(mask, expected)
    assert document_positions(seg).tolist() == [[0, 1, 2, 0, 1, 0, 0, 1]]
    ids = torch.tensor([[9, 9, 3, 9, 3, 9]])
    assert segments_from_separators(ids, torch.tensor([3])).tolist() == [[0, 0, 0, 1, 1, 2]]


def test_separators_give_the_sources_document_ids() -> None:
    """Sources without document_ids (token shards) get the same isolation from the separators."""
    source = registry_with(None).get("data_source", "embedded_corpus").build(WINDOWS[1], BuildContext(name="d"))
    ids = torch.stack([source[i]["input_ids"] for i in range(len(source))])
    docs = torch.stack([source[i]["document_ids"] for i in range(len(source))])
    seg = segments_from_separators(ids, torch.tensor([SEP]))
    assert torch.equal(seg - seg[:, :1], docs - docs[:, :1])
    b = _backbone()
    with torch.no_grad():
        a = clm_forward(b, {"input_ids": ids[:4], "document_ids": docs[:4]}, cross_document_attention=False)
        c = clm_forward(b, {"input_ids": ids[:4]}, cross_document_attention=False)
    assert torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])


def test_loss_equals_transformers_lm_loss() -> None:
    b = _backbone()
    batch = _packed()
    task = CLM(CLMOptions(cross_document_attention=True), b, data=None)
    out = task(batch, b)
    reference = b.model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss
    torch.testing.assert_close(out.loss, reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.metrics["perplexity"], reference.exp(), atol=1e-4, rtol=1e-4)


def test_bf16_autocast() -> None:
    b = _backbone("llama")
    task = CLM(CLMOptions(), b, data=None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = task(_packed(), b)
    assert torch.isfinite(out.loss) and out.loss.dtype == torch.float32


def test_build_checks() -> None:
    reg = registry_with(None)
    clm = reg.get("pretext_task", "clm")
    windows = reg.get("data_source", "embedded_corpus").build(WINDOWS[1], BuildContext(name="d"))
    documents = reg.get("data_source", "embedded_corpus").build({"tokenizer": "bytes", "name": "news", "limit": 3},
                                                                BuildContext(name="d"))
    gpt = reg.get("backbone", "transformer").build({**TINY, "family": "gpt2"}, BuildContext(name="b"))
    with pytest.raises(ValueError, match="window"):
        clm.build({}, BuildContext(name="t", backbone=gpt, data=documents))
    bert = reg.get("backbone", "transformer").build({**TINY, "family": "bert"}, BuildContext(name="b"))
    with pytest.raises(ValueError, match="decoder backbone"):
        clm.build({}, BuildContext(name="t", backbone=bert, data=windows))
    short = reg.get("backbone", "transformer").build({**TINY, "context": 16}, BuildContext(name="b"))
    with pytest.raises(ValueError, match="exceeds the backbone's context 16"):
        clm.build({}, BuildContext(name="t", backbone=short, data=windows))


class TestCLMConformance(TaskConformance):
    task = "clm"
    data = WINDOWS
    backbone = ("transformer", {**TINY, "dropout": 0.1})
    bad_options = [{"cross_document_attention": "sometimes"}]
    inert_options = {"cross_document_attention": "the suite's first windows lie inside one news document: no boundary "
                                                 "to attend across (test_clm's packing tests cover it)"}


class TestCLMCrossDocumentConformance(TaskConformance):
    task = "clm"
    task_options = {"cross_document_attention": True}
    data = WINDOWS
    backbone = ("transformer", {**TINY, "family": "llama"})
    inert_options = {"cross_document_attention": "the suite's first windows lie inside one news document: no boundary "
                                                 "to attend across (test_clm's packing tests cover it)"}
