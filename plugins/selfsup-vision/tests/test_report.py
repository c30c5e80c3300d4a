"""selfsup-vision's report sections on tiny runs: the t-SNE of a SimCLR run, MAE reconstructions,
both opened in headless Chromium (no error, every image rendered, a screenshot kept)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import selfsup
from selfsup.report import write_report
from selfsup.report_api import ReportRun
from selfsup.testing import render_in_chromium
from selfsup_vision.report import mae_reconstructions

pytest.importorskip("matplotlib")


def tiny(recipe: str, directory, *extra: str) -> selfsup.Run:
    """``recipe`` cut to a few steps, with only its kNN evaluator (whose held-out data the t-SNE uses)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return selfsup.train(recipe, [f'output_dir="{directory}"', "train.epochs=", "train.max_steps=4",
                                      "train.warmup_steps=1", "train.log_every=2", "train.workers=0",
                                      "evaluators.linear_probe=", *extra])
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def simclr_run(tmp_path_factory):
    return tiny("simclr-digits", tmp_path_factory.mktemp("simclr") / "run", "train.batch_size=64")


@pytest.fixture(scope="module")
def mae_run(tmp_path_factory):
    return tiny("mae-digits", tmp_path_factory.mktemp("mae") / "run", "train.batch_size=32")


def sections_of(text: str) -> list[str]:
    return re.findall(r'<section id="([\w-]+)"', text)


def rendered_cleanly(page, workdir, screenshot):
    rendered = render_in_chromium(page, workdir, screenshot=screenshot)
    assert rendered.errors == [] and rendered.console == [], (rendered.errors, rendered.console)
    assert rendered.image_widths and all(w > 0 for w in rendered.image_widths), rendered.image_widths
    return rendered


def test_simclr_report_has_the_tsne_of_held_out_digits(simclr_run, tmp_path):
    text = write_report(simclr_run.path).read_text()
    ids = sections_of(text)
    assert "embedding-t-sne" in ids and not any(i.startswith("mae-") for i in ids)
    section = text[text.index('<section id="embedding-t-sne">'):]
    section = section[:section.index("</section>")]
    assert "from plugin vision" in section and section.count("<img ") == 1
    assert re.search(r"359 images of data\.val, features of step-00000004; trustworthiness 0\.\d+", section)
    rendered_cleanly(simclr_run.path / "report.html", tmp_path, "vision-simclr-report.png")


def test_mae_report_shows_reconstructions(mae_run, tmp_path):
    text = write_report(mae_run.path).read_text()
    section = text[text.index('<section id="mae-reconstructions-mae">'):]
    section = section[:section.index("</section>")]
    assert section.count("<img ") == 1 and "8 images of data.train" in section
    assert re.search(r"Mean squared error on the masked patches, in pixels: [\d.e-]+ \(mask ratio 0\.6\)", section)
    rendered_cleanly(mae_run.path / "report.html", tmp_path, "vision-mae-report.png")


def test_mae_reconstructions_mask_the_right_patches_and_keep_the_rng(mae_run):
    from selfsup.plugins import get_plugin_manager
    from selfsup.report.run_report import load_components

    run = ReportRun(path=mae_run.path, recipe=mae_run.recipe,
                    _loader=lambda: load_components(mae_run.path, get_plugin_manager(), "cpu"))
    state = torch.random.get_rng_state()
    images, masked, recon, error = mae_reconstructions(run, "mae")
    again = mae_reconstructions(run, "mae")
    assert torch.equal(state, torch.random.get_rng_state())  # the mask's seed is its own
    assert images.shape == masked.shape == recon.shape == (8, 16, 16, 1)
    hidden = np.isnan(masked)
    assert np.allclose(hidden.mean(axis=(1, 2, 3)), 10 / 16)  # 4x4 patches, round(16 * 0.4) = 6 visible
    assert np.array_equal(masked[~hidden], images[~hidden])
    assert np.array_equal(hidden, np.isnan(again[1])) and error == again[3] and 0 < error < 1
