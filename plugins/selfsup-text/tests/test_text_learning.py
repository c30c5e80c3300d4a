"""End to end: shortened quickstarts learn (held-out metrics beat the same model at random init)."""

from __future__ import annotations

import math

import pytest

from selfsup.testing import train_against_random_init

pytestmark = pytest.mark.slow


def test_clm_quickstart_shortened_beats_random_init_and_learns(tmp_path):
    """clm-quickstart cut to 80 steps: held-out perplexity falls far below the random init's (about
    the vocabulary size, 8,192) -- measured about 700 -- and the unigram baseline is reported beside it."""
    trained, random_init = train_against_random_init(
        "clm-quickstart", tmp_path / "run", ["train.max_steps=80", "train.warmup_steps=10",
                                              "evaluators.perplexity.options.max_batches=10"]
    )
    assert random_init["perplexity/perplexity"] > 4000, random_init
    assert trained["perplexity/perplexity"] < random_init["perplexity/perplexity"] / 4, (trained, random_init)
    assert math.isfinite(trained["perplexity/unigram_perplexity"])
    import json  # training health reads the T + 1 token windows as the backbone's T (clm.health_inputs)

    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "health/clm/rankme" in r][-1]
    assert last["step"] == 80 and last["health/clm/std"] > 0.01 and last["health/clm/rankme"] > 1.5, last


def test_mlm_quickstart_shortened_beats_random_init(tmp_path):
    """mlm-quickstart cut to 80 steps: masked-token accuracy on held-out paragraphs beats the random
    init's (about 0) by at least 3 points (measured 0.042 against 0.0002: frequent tokens first)."""
    trained, random_init = train_against_random_init(
        "mlm-quickstart", tmp_path / "run",
        ["train.max_steps=80", "train.warmup_steps=10", "evaluators.sts=",
         "evaluators.mlm_accuracy.options.max_batches=10"],
    )
    assert trained["mlm_accuracy/accuracy"] > random_init["mlm_accuracy/accuracy"] + 0.03, (trained, random_init)


def test_simcse_quickstart_crop_views_run_end_to_end(tmp_path):
    """simcse-quickstart's crop views (span_crop writing positive_ids, then span_crop in place) on a
    random-init nano encoder instead of the mlm-quickstart export, 30 steps: the contrastive task
    learns to pick each paragraph's other span among the batch's (its training accuracy rises from
    chance) and the STS evaluator reports on all 1,225 pairs."""
    trained, random_init = train_against_random_init(
        "simcse-quickstart", tmp_path / "run",
        ['backbones.encoder.options={family="bert",size="nano",context=128,tokenizer="bpe-8k",pooling="mean"}',
         "train.max_steps=30", "train.warmup_steps=5", "train.batch_size=16", "train.log_every=5"],
    )
    assert trained["sts/pairs"] == random_init["sts/pairs"] == 1225
    assert math.isfinite(trained["sts/spearman"])
    from selfsup.engine.metrics import read_metrics

    loss = [row["loss/simcse"] for row in read_metrics(tmp_path / "run") if row.get("kind") == "train"]
    assert loss[-1] < 0.7 * loss[0], loss
