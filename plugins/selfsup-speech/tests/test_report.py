"""selfsup-speech's report section on tiny wav2vec2 and HuBERT runs: codebook usage counted over a
few batches, and the report opened in headless Chromium (no error, every image rendered)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import speech_models_support as support
import torch

import selfsup
from selfsup.plugins import get_plugin_manager
from selfsup.report import write_report
from selfsup.report.run_report import load_components
from selfsup.report_api import ReportRun
from selfsup.testing import render_in_chromium
from selfsup_speech.report import BATCH_SIZE, BATCHES, hubert_usage, perplexity, wav2vec2_usage

pytest.importorskip("matplotlib")

#: The small synthesized set (3 words x 5 voices x 2 utterances) for both splits, 3 steps.
TINY = [f"data.{split}.options.{key}={value!r}".replace("'", '"')
        for split in ("train", "val") for key, value in support.SMALL_SYNTH.items()]
TINY += ["train.max_steps=3", "train.warmup_steps=1", "train.log_every=1", "train.batch_size=8"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 3-step wav2vec2 run and a 3-step HuBERT run (its MFCC k-means targets computed) on the set."""
    root = tmp_path_factory.mktemp("speech-report")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SELFSUP_CACHE_DIR", str(root / "cache"))
            yield {name: selfsup.train(f"{name}-quickstart", [f'output_dir="{root / name}"', *TINY, *extra])
                   for name, extra in [("wav2vec2", support.E2E_W2V_ENCODER),
                                       ("hubert", [*support.E2E_W2V_ENCODER, "tasks.hubert.options.clusters=8"])]}
    finally:
        torch.set_num_threads(before)


def report_run(run: selfsup.Run) -> ReportRun:
    return ReportRun(path=run.path, recipe=run.recipe,
                     _loader=lambda: load_components(run.path, get_plugin_manager(), "cpu"))


def test_perplexity_counts_codes_in_use():
    assert perplexity(np.array([5, 5, 5, 5])) == pytest.approx(4.0)
    assert perplexity(np.array([0, 9, 0])) == pytest.approx(1.0)
    assert perplexity(np.array([0, 0])) == 0.0


def test_wav2vec2_usage_counts_every_valid_frame_of_each_group(runs):
    run = report_run(runs["wav2vec2"])
    usage = wav2vec2_usage(run, "wav2vec2")
    options = run.recipe["tasks"]["wav2vec2"]["options"]
    assert list(usage) == [f"group {g}" for g in range(options["codebook_groups"])]
    assert all(len(c) == options["codebook_entries"] for c in usage.values())
    backbone = run.components.task_backbones["wav2vec2"]
    samples = run.samples("train", BATCHES * BATCH_SIZE, keys=("audio",))
    frames = int(backbone.num_frames(torch.tensor([len(s["audio"]) for s in samples])).sum())
    assert {int(c.sum()) for c in usage.values()} == {frames}


def test_hubert_usage_puts_predictions_beside_the_kmeans_targets(runs):
    run = report_run(runs["hubert"])
    usage = hubert_usage(run, "hubert")
    assert list(usage) == ["predicted", "k-means targets"] and all(len(c) == 8 for c in usage.values())
    task = run.components.tasks["hubert"]
    assert int(usage["k-means targets"].sum()) == task.targets.numel() > 0


@pytest.mark.parametrize("name", ["wav2vec2", "hubert"])
def test_report_has_a_codebook_section_and_opens_cleanly(runs, name, tmp_path):
    text = write_report(runs[name].path).read_text()
    section = text[text.index(f'<section id="codebook-usage-{name}">'):]
    section = section[:section.index("</section>")]
    assert "from plugin speech" in section and section.count("<img ") == 1
    assert re.search(r"\d+ frames of data\.train \(step-00000003\)", section)
    rows = 2  # wav2vec2: the recipe's two quantizer groups; hubert: predicted and k-means targets
    assert section.count("<tr>") == 1 + rows and "<th>perplexity</th>" in section
    rendered = render_in_chromium(runs[name].path / "report.html", tmp_path, screenshot=f"speech-{name}-report.png")
    assert rendered.errors == [] and rendered.console == [], (rendered.errors, rendered.console)
    assert rendered.image_widths and all(w > 0 for w in rendered.image_widths), rendered.image_widths
