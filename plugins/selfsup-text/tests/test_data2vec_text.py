"""The BERT transformer backbone as a LayerwiseMaskedEncoder for the core's data2vec: token masks that
avoid specials and padding, [MASK] in place of masked tokens, per-layer hidden states; conformance of
data2vec on it, and a shortened quickstart against random init."""

from __future__ import annotations

import pytest
import torch

from selfsup.components import BuildContext, LayerwiseMaskedEncoder
from selfsup.plugins import get_plugin_manager
from selfsup.testing import TaskConformance, train_against_random_init

TINY_BERT = {"tokenizer": "bytes", "family": "bert", "layers": 2, "heads": 2, "dim": 32, "context": 96}
DOCS = ("embedded_corpus", {"tokenizer": "bytes", "name": "news", "limit": 8, "max_length": 64})


def build(kind, name, options, **context):
    return get_plugin_manager().registry.get(kind, name).build(options, BuildContext(name=name, **context))


@pytest.fixture(scope="module")
def batch():
    source = build("data_source", *DOCS)
    samples = [source[i] for i in range(8)]
    for i, sample in enumerate(samples):  # documents of different lengths: padding in the batch
        sample["input_ids"] = torch.cat([sample["input_ids"][: 64 - 6 * i - 1], sample["input_ids"][-1:]])
    return source.collate(samples)  # input_ids, attention_mask [B, T]


def bert(**options):
    torch.manual_seed(0)
    return build("backbone", "transformer", {**TINY_BERT, **options})


def test_token_masks_avoid_specials_and_padding(batch):
    backbone = bert()
    assert isinstance(backbone, LayerwiseMaskedEncoder)
    ids, attention = batch["input_ids"], batch["attention_mask"]
    assert (attention == 0).any(), "the suite's documents differ in length: some positions are padding"
    mask = backbone.masked_positions(batch, torch.Generator().manual_seed(0))
    special = torch.isin(ids, torch.tensor(backbone.tokenizer.all_special_ids))
    assert mask.shape == ids.shape and not (mask & special).any() and not (mask & (attention == 0)).any()
    assert mask.any(1).all()
    share = mask.sum() / (~special & (attention == 1)).sum()
    assert 0.08 < float(share) < 0.25, float(share)  # 15% of about 400 eligible tokens
    high = backbone.masked_positions(batch, torch.Generator().manual_seed(0), ratio=0.5)
    assert high.sum() > 2 * mask.sum()
    one = {"input_ids": ids[:1, :4], "attention_mask": attention[:1, :4]}  # [CLS] + 3 tokens: usually none drawn
    assert all(backbone.masked_positions(one, torch.Generator().manual_seed(s)).sum() >= 1 for s in range(10))
    with pytest.raises(ValueError, match="single tokens"):
        backbone.masked_positions(batch, torch.Generator(), span=3)


def test_encode_layers_replace_masked_tokens_by_mask(batch):
    backbone = bert().eval()
    layers, padding = backbone.encode_layers(batch)
    assert len(layers) == 2 and all(h.shape == (*batch["input_ids"].shape, 32) for h in layers)
    assert torch.equal(padding, batch["attention_mask"] == 0)
    torch.testing.assert_close(layers[-1], backbone(batch))  # the last layer is hidden_states
    mask = backbone.masked_positions(batch, torch.Generator().manual_seed(1))
    masked, _ = backbone.encode_layers(batch, mask)
    replaced = {**batch, "input_ids": batch["input_ids"].masked_fill(mask, backbone.tokenizer.mask_token_id)}
    torch.testing.assert_close(masked[-1], backbone(replaced))
    assert not torch.allclose(masked[-1], layers[-1])


def test_decoders_are_refused():
    gpt = build("backbone", "transformer", {**TINY_BERT, "family": "gpt2"})
    with pytest.raises(ValueError, match="bidirectional encoder"):
        build("pretext_task", "data2vec", {}, backbone=gpt).forward(
            {"input_ids": torch.ones(1, 4, dtype=torch.long)}, gpt)


class TestData2VecTextConformance(TaskConformance):
    task = "data2vec"
    task_options = {"top_k": 2, "loss": "smooth_l1", "beta": 0.5}
    data = DOCS
    backbone = ("transformer", TINY_BERT)
    bad_options = [{"top_k": 0}, {"mask_prob": 0.0}, {"layer_norm": "batch"}]
    inert_options = {
        "final_momentum": "the suite runs no optimizer update, so the teacher never moves",
        "ramp_steps": "the suite runs no optimizer update, so the teacher never moves",
    }
    option_variants = {"mask_prob": 0.5, "beta": 0.05, "mask_length": 3}  # text refuses spans: raising shows it


def test_shortened_quickstart_learns_its_objective_without_collapse(tmp_path):
    """data2vec-text shrunk (a 2-layer encoder, windows of 32 tokens, batch 16, 40 steps): the student's
    regression loss falls while the targets keep their spread (a collapsed teacher, whose targets are
    the same everywhere, would make the loss fall too), and the momentum follows its linear ramp; the
    recipe's held-out passage retrieval runs on the trained and the untrained model.

    It does not assert a gain over random init: the gain appears only between 400 and 2,000 steps of
    the full recipe (docs/text.md: at 2,000 steps, seeds 0, 1, 2, the masked-token probe reaches
    0.173 +- 0.012 against 0.075 at random init; at 400 steps 0.077), far beyond a test's budget."""
    import json

    trained, untrained = train_against_random_init(
        "data2vec-text", tmp_path / "run",
        ["train.max_steps=40", "train.warmup_steps=5", "train.batch_size=16", "train.log_every=5",
         "data.train.options.window=31", "backbones.encoder.options.layers=2", "tasks.data2vec.options.top_k=2"],
        evaluators=["docs"])
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if r.get("kind") == "train" and "loss/data2vec" in r]
    first, last = logged[0], logged[-1]
    assert last["loss/data2vec"] < 0.8 * first["loss/data2vec"], (first, last)
    assert last["data2vec/target_std"] > 0.5 * first["data2vec/target_std"], (first, last)
    assert first["data2vec/momentum"] < last["data2vec/momentum"] <= 0.999
    for metrics in (trained, untrained):  # the same held-out windows, documents and baseline before and after
        assert metrics["docs/documents"] == 35 and metrics["docs/queries"] == 106, metrics
        assert 0.0 <= metrics["docs/accuracy"] <= 1.0
    assert trained["docs/tfidf_accuracy"] == untrained["docs/tfidf_accuracy"] > 10 * trained["docs/chance"]
