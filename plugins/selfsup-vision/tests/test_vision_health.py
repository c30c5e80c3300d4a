"""Training-health diagnostics of the vision tasks: SimCLR's view alignment, SwAV's prototype use,
DeepCluster's cluster balance, and a SimCLR run whose backbone collapsed to a constant."""

from __future__ import annotations

import json
import textwrap
import warnings

import pytest
import torch
from torch import nn

from selfsup.components import BuildContext, EpochContext
from selfsup.engine.loop import train
from selfsup.lib import CollapseWarning, alignment, cluster_entropy
from selfsup.plugins import PluginManager, get_plugin_manager
from selfsup.recipe import load_recipe

CNN = ("small_cnn", {"widths": [8, 16]})


def build(kind, name, options, **context):
    return get_plugin_manager().registry.get(kind, name).build(options, BuildContext(name=name, **context))


class Constant(nn.Module):
    """A backbone collapsed to one point: the same features for every image."""

    output_dim = 16

    def __init__(self):
        super().__init__()
        self.value = nn.Parameter(torch.linspace(-1, 1, 16))

    def forward(self, x):
        return self.value.expand(x.shape[0], -1) + 0.0 * x.flatten(1)[:, :1]

    def embed(self, batch):
        return self(batch["image"])


def _images(n=32, seed=0):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_simclr_reports_the_alignment_of_its_two_views():
    torch.manual_seed(0)
    backbone = build("backbone", *CNN).eval()
    task = build("pretext_task", "simclr", {"projection_hidden_dim": 16, "projection_dim": 8},
                 backbone=backbone).eval()
    a, b = _images(), _images(seed=1)
    with torch.no_grad():
        same = task.health({"views": torch.stack([a, a], 1)}, backbone)
        different = task.health({"views": torch.stack([a, b], 1)}, backbone)
        expected = float(alignment(backbone(a), backbone(b)))
    assert same == {"alignment": 0.0}
    assert different["alignment"] == pytest.approx(expected) and different["alignment"] > 0


def test_swav_reports_how_evenly_the_probe_uses_the_prototypes():
    torch.manual_seed(0)
    backbone = build("backbone", *CNN).eval()
    task = build("pretext_task", "swav", {"projection_hidden_dim": 16, "projection_dim": 8, "prototypes": 10},
                 backbone=backbone).eval()
    views = torch.stack([_images(64), _images(64, seed=1)], 1)  # [B, 2, 1, 8, 8]
    with torch.no_grad():
        z = task.project(backbone, [views[:, :1]])[0]  # [B, P] of the first views
        # at random init every image scores one prototype highest (measured: cluster_entropy 0 until step 5
        # of swav-digits); prototypes at ten of the images give each of those its own
        task.prototypes.weight.copy_(z[:10])
        out = task.health({"global_views": views}, backbone)
        entropy, perplexity = cluster_entropy((z @ z[:10].T).argmax(1), 10)
        collapsed = task.health({"global_views": views}, Constant())
    assert out == pytest.approx({"cluster_entropy": float(entropy), "cluster_perplexity": float(perplexity)})
    assert out["cluster_perplexity"] > 2
    assert collapsed == pytest.approx({"cluster_entropy": 0.0, "cluster_perplexity": 1.0})


def test_deepcluster_reports_the_balance_of_its_clustering():
    torch.manual_seed(0)
    data = build("data_source", "digits", {"limit": 64})
    backbone = build("backbone", *CNN)
    task = build("pretext_task", "deepcluster", {"clusters": 8, "kmeans_iters": 10, "projection_hidden_dim": 32,
                                                 "projection_dim": 16, "feature_batch_size": 32},
                 backbone=backbone, data=data)
    assert task.health({}, backbone) == {}  # nothing before the first clustering
    task.on_epoch_start(EpochContext(epoch=0, seed=0, device=torch.device("cpu"), backbone=backbone, data=data,
                                     augment=[], batch_size=8))
    entropy, perplexity = cluster_entropy(task.pseudo_labels, 8)
    out = task.health({}, backbone)
    assert out == pytest.approx({"cluster_entropy": float(entropy), "cluster_perplexity": float(perplexity)})
    assert 0.5 < out["cluster_entropy"] <= 1.0
    task.pseudo_labels.zero_()  # every image in one cluster
    assert task.health({}, backbone) == pytest.approx({"cluster_entropy": 0.0, "cluster_perplexity": 1.0})


# ------------------------------------------------------------------------------ in a simclr-digits run

SHORT = ["train.workers=0", "train.warmup_steps=2", "train.log_every=5", "train.health.every=5",
         "train.health.grace_steps=0", "evaluators.linear_probe.at_end=false"]


def _records(run_dir, kind):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_a_healthy_simclr_run_is_not_flagged(tmp_path, one_thread):
    pm = get_plugin_manager()
    loaded = load_recipe("simclr-digits", pm.registry, [f"output_dir={tmp_path / 'run'}", "train.epochs=",
                                                        "train.max_steps=10", *SHORT])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(loaded, pm, progress=False)
    assert not [w for w in caught if issubclass(w.category, CollapseWarning)]
    checks = [r for r in _records(result.run_dir, "train") if "health/simclr/std" in r]
    assert [r["step"] for r in checks] == [5, 10]
    for r in checks:  # measured: std 0.050 and 0.093, rankme 7.7 and 13, alignment 0.006 and 0.013
        assert r["health/simclr/collapsed"] == 0.0
        assert r["health/simclr/std"] > 0.02 and r["health/simclr/rankme"] > 4
        assert 0 < r["health/simclr/alignment"] < 0.5
    assert _records(result.run_dir, "eval")[-1]["health/simclr/std"] == checks[-1]["health/simclr/std"]


def test_a_simclr_run_with_a_collapsed_backbone_is_flagged(tmp_path, one_thread):
    """simclr-digits with temperature 100 does not collapse in a short run (docs/health.md), so a backbone
    with a constant output stands in for a collapsed one."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "constant_cnn.py").write_text(textwrap.dedent("""
        import selfsup


        @selfsup.hookimpl
        def register_backbones(register):
            from test_vision_health import Constant  # this test module (pytest puts tests/ on sys.path)

            register("constant_cnn", lambda options, context: Constant(), summary="A constant output.")
        """))
    pm = PluginManager(plugins_dirs=[plugins])
    loaded = load_recipe("simclr-digits", pm.registry, [f"output_dir={tmp_path / 'run'}", "train.epochs=",
                                                        "train.max_steps=10", "backbones.cnn.type='constant_cnn'",
                                                        "backbones.cnn.options={}", *SHORT])
    with pytest.warns(CollapseWarning) as caught:
        result = train(loaded, pm, progress=False)
    messages = [str(w.message) for w in caught if issubclass(w.category, CollapseWarning)]
    assert len(messages) == 1 and "task 'simclr' looks collapsed at step 5" in messages[0], messages
    checks = [r for r in _records(result.run_dir, "train") if "health/simclr/std" in r]
    assert [r["step"] for r in checks] == [5, 10]
    assert all(r["health/simclr/collapsed"] == 1.0 and r["health/simclr/std"] == 0.0 for r in checks)
    assert all(r["health/simclr/alignment"] == 0.0 for r in checks)  # both views give the same point
