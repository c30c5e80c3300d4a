"""Image evaluators: k-means NMI/ARI and the t-SNE plot, on features with known structure."""

from __future__ import annotations

import torch

from selfsup.components import BuildContext, EvalContext
from selfsup.plugins import get_plugin_manager
from selfsup.testing import EvaluatorConformance


class TestKMeansNMI(EvaluatorConformance):
    evaluator = "kmeans_nmi"
    data = ("digits", {"split": "val", "limit": 60})
    backbone = ("small_cnn", {"widths": [8]})
    bad_options = [{"clusters": 1}]


class TestEmbeddingPlot(EvaluatorConformance):
    evaluator = "embedding_plot"
    evaluator_options = {"perplexity": 5, "max_points": 50}
    data = ("digits", {"split": "val", "limit": 60})
    backbone = ("small_cnn", {"widths": [8]})
    bad_options = [{"filename": "../escape.png"}, {"filename": "plot.jpg"}]
    option_variants = {"filename": "other.png"}


def _context(tmp_path, feats, labels, name="ev"):
    return EvalContext(name=name, step=7, seed=0, device=torch.device("cpu"), backbone=None, data="d", fit_data=None,
                       run_dir=tmp_path, batch_size=64, features=lambda source: (feats, labels))


def _build(name, options):
    return get_plugin_manager().registry.get("evaluator", name).build(options, BuildContext(name=name))


def test_nmi_is_one_for_separated_clusters_and_low_for_noise(tmp_path):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(5).repeat_interleave(40)
    centres = torch.randn(5, 16, generator=g) * 5
    clean = centres[labels] + 0.1 * torch.randn(200, 16, generator=g)
    ev = _build("kmeans_nmi", {})
    good = ev.evaluate(_context(tmp_path, clean, labels))
    assert good["nmi"] > 0.99 and good["ari"] > 0.99
    noise = ev.evaluate(_context(tmp_path, torch.randn(200, 16, generator=g), labels))
    assert noise["nmi"] < 0.2 and noise["ari"] < 0.1


def test_embedding_plot_writes_png(tmp_path):
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(30)
    feats = torch.randn(3, 8, generator=g)[labels] * 4 + torch.randn(90, 8, generator=g)
    metrics = _build("embedding_plot", {"perplexity": 10}).evaluate(_context(tmp_path, feats, labels))
    png = tmp_path / "step-00000007-embedding-tsne.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert 0.8 < metrics["trustworthiness"] <= 1.0
