"""Training-health diagnostics: selfsup.lib.health against reference formulas, and [train.health] in a run."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from conftest import TOY_RECIPE, write_plugin, write_toy_recipe

from selfsup.engine.health import probe_samples
from selfsup.engine.loop import train
from selfsup.engine.metrics import read_metrics
from selfsup.engine.resume import recipe_changes
from selfsup.lib import (
    CollapseWarning,
    HealthThresholds,
    alignment,
    cluster_entropy,
    code_perplexity,
    collapse_warnings,
    embedding_std,
    rankme,
    uniformity,
)
from selfsup.plugins import PluginManager, get_plugin_manager
from selfsup.recipe import RecipeError, load_recipe

# ------------------------------------------------------------------------------ reference formulas (numpy)


def _np_normalize(z):
    return z / np.linalg.norm(z, axis=1, keepdims=True)


def _np_rankme(z, eps=1e-7):
    s = np.linalg.svd(z, compute_uv=False)
    p = s / s.sum() + eps
    return math.exp(-(p * np.log(p)).sum())


def _np_uniformity(z, t=2.0):
    x = _np_normalize(z)
    n = len(x)
    values = [math.exp(-t * np.sum((x[i] - x[j]) ** 2)) for i in range(n) for j in range(n) if i != j]
    return math.log(np.mean(values))


def _np_perplexity(codes, k):  # codes [N, G]
    out = []
    for g in range(codes.shape[1]):
        p = np.bincount(codes[:, g], minlength=k) / len(codes)
        p = p[p > 0]
        out.append(math.exp(-(p * np.log(p)).sum()))
    return float(np.mean(out))


@pytest.fixture
def z():
    return torch.randn(64, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5


def test_embedding_std_matches_the_formula(z):
    x = _np_normalize(z.numpy())
    per_dim = x.std(axis=0) * math.sqrt(x.shape[1])
    assert float(embedding_std(z)) == pytest.approx(per_dim.mean(), rel=1e-5)
    assert float(embedding_std(z, "min")) == pytest.approx(per_dim.min(), rel=1e-5)
    np.testing.assert_allclose(embedding_std(z, "none").numpy(), per_dim, rtol=1e-5)
    assert float(embedding_std(torch.ones(16, 8) * 3)) == 0.0  # one point
    sphere = torch.randn(20000, 32, generator=torch.Generator().manual_seed(1))  # isotropic
    assert float(embedding_std(sphere)) == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ValueError, match="reduction"):
        embedding_std(z, "max")


def test_rankme_matches_the_formula_and_known_cases(z):
    assert float(rankme(z)) == pytest.approx(_np_rankme(z.numpy()), rel=1e-5)
    q, _ = torch.linalg.qr(torch.randn(32, 32, generator=torch.Generator().manual_seed(2)))
    assert float(rankme(q)) == pytest.approx(32.0, rel=1e-4)  # orthonormal rows: every direction equally
    line = torch.randn(50, 1) @ torch.randn(1, 16)  # rank 1
    assert float(rankme(line)) == pytest.approx(1.0, abs=1e-3)
    assert float(rankme(torch.ones(10, 4))) == pytest.approx(1.0, abs=1e-3)
    assert float(rankme(torch.zeros(10, 4))) == 0.0


def test_alignment_and_uniformity_match_wang_and_isola(z):
    z2 = z + 0.3 * torch.randn(z.shape, generator=torch.Generator().manual_seed(3), dtype=z.dtype)
    x, y = _np_normalize(z.numpy()), _np_normalize(z2.numpy())
    assert float(alignment(z, z2)) == pytest.approx(np.mean(np.linalg.norm(x - y, axis=1) ** 2), rel=1e-6)
    assert float(alignment(z, z2, alpha=1)) == pytest.approx(np.mean(np.linalg.norm(x - y, axis=1)), rel=1e-6)
    assert float(alignment(z, z)) == 0.0
    assert float(alignment(z, -z)) == pytest.approx(4.0)
    assert float(uniformity(z)) == pytest.approx(_np_uniformity(z.numpy()), rel=1e-6)
    assert float(uniformity(z, t=1)) == pytest.approx(_np_uniformity(z.numpy(), t=1.0), rel=1e-6)
    # their reference code (torch.pdist ... .exp().mean().log()) on normalised rows
    xt = torch.nn.functional.normalize(z, dim=1)
    assert float(uniformity(z)) == pytest.approx(float(torch.pdist(xt, p=2).pow(2).mul(-2).exp().mean().log()))
    assert float(uniformity(torch.ones(8, 4))) == pytest.approx(0.0, abs=1e-6)  # one point
    with pytest.raises(ValueError, match="at least 2"):
        uniformity(z[:1])


def test_code_perplexity_of_codes_and_probabilities():
    g = torch.Generator().manual_seed(4)
    codes = torch.randint(0, 10, (300, 3), generator=g)
    assert float(code_perplexity(codes, 10)) == pytest.approx(_np_perplexity(codes.numpy(), 10), rel=1e-5)
    assert float(code_perplexity(torch.arange(40) % 8, 8)) == pytest.approx(8.0)  # uniform use: K
    assert float(code_perplexity(torch.full((40,), 3), 8)) == pytest.approx(1.0)  # one code: 1
    assert float(code_perplexity(torch.full((40, 2, 8), 1 / 8), 8)) == pytest.approx(8.0)
    one_hot = torch.nn.functional.one_hot(codes, 10).float()  # probabilities [N, G, K] of the same codes
    assert float(code_perplexity(one_hot, 10)) == pytest.approx(float(code_perplexity(codes, 10)), rel=1e-5)
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        code_perplexity(torch.tensor([0, 8]), 8)
    with pytest.raises(ValueError, match="expected 8"):
        code_perplexity(torch.rand(4, 5), 8)


def test_cluster_entropy_normalised_and_perplexity():
    g = torch.Generator().manual_seed(5)
    labels = torch.randint(0, 6, (500,), generator=g)
    p = np.bincount(labels.numpy(), minlength=6) / 500
    h = -(p * np.log(p)).sum()
    entropy, perplexity = cluster_entropy(labels, 6)
    assert float(entropy) == pytest.approx(h / math.log(6), rel=1e-5)
    assert float(perplexity) == pytest.approx(math.exp(h), rel=1e-5)
    assert [float(v) for v in cluster_entropy(torch.arange(60) % 6, 6)] == pytest.approx([1.0, 6.0])
    assert [float(v) for v in cluster_entropy(torch.zeros(60, dtype=torch.long), 6)] == pytest.approx([0.0, 1.0])
    with pytest.raises(ValueError, match="integer cluster ids"):
        cluster_entropy(torch.rand(5), 3)


def test_collapse_warnings_use_the_thresholds():
    constant = torch.ones(64, 16) + 1e-4 * torch.randn(64, 16, generator=torch.Generator().manual_seed(6))
    metrics = {"std": embedding_std(constant), "rankme": rankme(constant)}
    messages = collapse_warnings(metrics, dim=16)
    assert [m.split(" = ")[0] for m in messages] == ["std", "rankme"]
    assert "< 0.01" in messages[0] and "single point" in messages[0]
    healthy = torch.randn(64, 16, generator=torch.Generator().manual_seed(7))
    assert collapse_warnings({"std": embedding_std(healthy), "rankme": rankme(healthy)}, dim=16) == []
    t = HealthThresholds()
    assert t.rankme_limit(16) == 1.2 and t.rankme_limit(1000) == 5.0  # max(1.2, 0.5% of min(N, D))
    assert collapse_warnings({"rankme": 4.0}, dim=1000) == ["rankme = 4 < 5: the embeddings span (nearly) a single "
                                                            "direction"]
    assert collapse_warnings({"cluster_entropy": 0.05, "code_perplexity": 3.0}, 0, HealthThresholds(code_perplexity=4))
    assert collapse_warnings({"std": float("nan")}, 4) == []


# ------------------------------------------------------------------------------ in a training run


@pytest.fixture
def pm(monkeypatch):
    monkeypatch.setenv("SELFSUP_PLUGINS", "toy")  # only the core and the test plugin: quick to load
    return get_plugin_manager()


def _train(pm, path, *overrides):
    return train(load_recipe(str(path), pm.registry, list(overrides)), pm, progress=False)


def _health(records, kind):
    return {r["step"]: {k: v for k, v in r.items() if k.startswith("health/")} for r in records if r["kind"] == kind}


def test_a_healthy_run_logs_the_metrics_at_the_interval_and_at_evaluations(tmp_path, pm):
    path = write_toy_recipe(tmp_path, max_steps=20, log_every=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _train(pm, path, "train.health.every=10", "evaluators.knn.every=15", "train.health.grace_steps=0")
    assert not [w for w in caught if issubclass(w.category, CollapseWarning)]
    records = read_metrics(result.run_dir)
    train_h, eval_h = _health(records, "train"), _health(records, "eval")
    keys = {f"health/infonce/{k}" for k in ("std", "rankme", "uniformity", "collapsed")}
    assert [s for s, h in train_h.items() if h] == [10, 20] and set(train_h[10]) == keys
    assert sorted(eval_h) == [15, 20] and all(set(h) == keys for h in eval_h.values())
    assert eval_h[20] == train_h[20]  # one check per step and weights
    for h in [*train_h.values(), *eval_h.values()]:
        if h:
            assert h["health/infonce/collapsed"] == 0.0
            assert 0.3 < h["health/infonce/std"] <= 1.0 and h["health/infonce/rankme"] > 3
            assert -4.0 < h["health/infonce/uniformity"] < -0.5


def test_checks_leave_training_unchanged_and_can_be_disabled(tmp_path, pm):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    # dropout: a check that left the backbone in eval mode or drew from the run's RNG would change the losses
    on = _train(pm, write_toy_recipe(tmp_path / "a", max_steps=10, log_every=5, dropout=0.2), "train.health.every=5")
    off = _train(pm, write_toy_recipe(tmp_path / "b", max_steps=10, log_every=5, dropout=0.2),
                 "train.health.enabled=false")
    on_records, off_records = read_metrics(on.run_dir), read_metrics(off.run_dir)
    assert [r["loss"] for r in on_records if r["kind"] == "train"] == [r["loss"] for r in off_records
                                                                      if r["kind"] == "train"]
    assert all(h for h in _health(on_records, "train").values())
    assert not any(k.startswith("health/") for r in off_records for k in r)


CONSTANT_PLUGIN = """
    import torch
    from torch import nn
    import selfsup


    class Constant(nn.Module):
        '''The same output for every input: a backbone collapsed to one point.'''

        output_dim = 32

        def __init__(self):
            super().__init__()
            self.value = nn.Parameter(torch.randn(32, generator=torch.Generator().manual_seed(0)))

        def forward(self, x):
            return self.value.expand(x.shape[0], -1) + 0.0 * x.flatten(1)[:, :1]

        def embed(self, batch):
            return self(batch["input"])


    @selfsup.hookimpl
    def register_backbones(register):
        register("constant", lambda options, context: Constant(), summary="A constant output.")
    """


def _constant_recipe(tmp_path):
    text = TOY_RECIPE.format(seed=0, output_dir=tmp_path / "run", dropout=0.0, batch_size=64, max_steps=15,
                             log_every=5, checkpoint_every=0, keep=3)
    mlp = 'type = "mlp"\noptions = { in_dim = 16, hidden_dims = [64], out_dim = 32, dropout = 0.0 }'
    assert mlp in text
    path = tmp_path / "collapse.toml"
    path.write_text(text.replace(mlp, 'type = "constant"'))
    return path


def test_a_collapsed_backbone_is_flagged_once_per_task_after_the_grace_steps(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_PLUGINS", "toy")
    write_plugin(tmp_path / "plugins", "constant_backbone", CONSTANT_PLUGIN)
    pm = PluginManager(plugins_dirs=[tmp_path / "plugins"])
    with pytest.warns(CollapseWarning) as caught:
        result = _train(pm, _constant_recipe(tmp_path), "train.health.every=5", "train.health.grace_steps=10")
    assert result.status == "completed"
    collapse = [str(w.message) for w in caught if issubclass(w.category, CollapseWarning)]
    assert len(collapse) == 1, collapse  # collapsed at steps 10, 15 and the evaluation: one warning
    message = collapse[0]
    assert "task 'infonce'" in message and "at step 10" in message and "std = 0 < 0.01" in message
    assert "rankme = 1 < 1.2" in message and "Try: " in message and "temperature" in message
    records = read_metrics(result.run_dir)
    train_h, eval_h = _health(records, "train"), _health(records, "eval")
    assert [train_h[s]["health/infonce/collapsed"] for s in (5, 10, 15)] == [0.0, 1.0, 1.0]  # 5: grace
    assert eval_h[15]["health/infonce/collapsed"] == 1.0
    assert all(train_h[s]["health/infonce/std"] == 0.0 for s in (5, 10, 15))


def test_a_task_adds_its_own_diagnostics(tmp_path, pm, monkeypatch):
    from selfsup_toy.infonce import InfoNCETask

    seen = []

    def health(self, batch, backbone):
        assert not self.training and not backbone.training and not torch.is_grad_enabled()
        seen.append(batch["views"].shape[0])
        return {"cluster_entropy": 0.02, "views": float(batch["views"].shape[1])}

    monkeypatch.setattr(InfoNCETask, "health", health, raising=False)
    path = write_toy_recipe(tmp_path, max_steps=10, log_every=5)
    with pytest.warns(CollapseWarning, match=r"cluster_entropy = 0.02 < 0.1.*Try: .*balanced"):
        result = _train(pm, path, "train.health.samples=100", "train.health.grace_steps=0")
    assert seen == [64, 36]  # the probe, in batches of the task's size
    last = _health(read_metrics(result.run_dir), "train")[10]
    assert last["health/infonce/views"] == 2.0 and last["health/infonce/collapsed"] == 1.0


def test_a_failing_check_is_reported_once_and_training_goes_on(tmp_path, pm, monkeypatch):
    from selfsup_toy.infonce import InfoNCETask

    def health(self, batch, backbone):
        raise RuntimeError("probe exploded")

    monkeypatch.setattr(InfoNCETask, "health", health, raising=False)
    with pytest.warns(UserWarning, match="the check of task 'infonce' failed at step 5.*probe exploded") as caught:
        result = _train(pm, write_toy_recipe(tmp_path, max_steps=10, log_every=5), "train.health.every=5")
    assert result.status == "completed"
    assert len([w for w in caught if "probe exploded" in str(w.message)]) == 1
    assert not any(_health(read_metrics(result.run_dir), "train").values())


def test_probe_samples_are_evenly_spaced_or_the_first_of_a_stream():
    class Source:
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return {"x": i}

    class Stream:
        def iterate(self, *, epoch, rank, world_size, seed):
            assert (epoch, rank, world_size) == (0, 0, 1)
            return ({"x": i} for i in range(10**9))  # endless: only the first n are read

    assert [i for i, _ in probe_samples(Source(), 4, 0)] == [0, 2, 5, 7]
    assert probe_samples(Source(), 3, 0)[1][1] == {"x": 3, "index": 3}
    assert [i for i, _ in probe_samples(Source(), 50, 0)] == list(range(10))
    assert [s["x"] for _i, s in probe_samples(Stream(), 3, 0)] == [0, 1, 2]


class _Vectors:
    def __len__(self):
        return 40

    def __getitem__(self, i):
        return {"input": torch.randn(6, generator=torch.Generator().manual_seed(i))}


class _Linear(torch.nn.Module):
    def __init__(self, constant=False):
        super().__init__()
        self.constant, self.layer = constant, torch.nn.Linear(6, 4)

    def embed(self, batch):
        x = batch["input"]
        return self.layer(torch.zeros_like(x) if self.constant else x)


class _Model:
    def __init__(self, backbones):
        self.tasks, self.backbones = {"pair": torch.nn.Identity()}, backbones

    def backbone_of(self, name):
        return self.backbones


def _check(backbones, pipeline=(), **spec):
    from selfsup.engine.data import TaskStream
    from selfsup.engine.health import HealthCheck
    from selfsup.recipe import HealthSpec

    stream = TaskStream("pair", _Vectors(), list(pipeline), batch_size=16, seed=0)
    return HealthCheck(_Model(backbones), {"pair": stream}, torch.device("cpu"), 0,
                       HealthSpec(**{"grace_steps": 0, **spec}))


def test_each_backbone_of_a_task_is_measured_under_its_role():
    torch.manual_seed(0)
    with pytest.warns(CollapseWarning, match=r"'pair' .*b/std = 0 < 0.01") as caught:
        out = _check({"a": _Linear(), "b": _Linear(constant=True)}).check(30)
    assert "a/std" not in str(caught[0].message)
    assert {k for k in out if k.startswith("health/pair/a/")} == {f"health/pair/a/{k}" for k in
                                                                  ("std", "rankme", "uniformity")}
    assert out["health/pair/b/std"] == 0.0 and out["health/pair/a/std"] > 0.3
    assert out["health/pair/collapsed"] == 1.0


def test_alignment_needs_views_that_reach_embed():
    torch.manual_seed(0)

    def noisy(sample, generator):  # changes what embed reads
        return {**sample, "input": sample["input"] + 0.1 * torch.randn(6, generator=generator)}

    def views(sample, generator):  # adds a key embed does not read
        return {**sample, "views": torch.randn(2, 6, generator=generator)}

    health = _check(_Linear(), [noisy])
    first = health.check(1)
    assert 0 < first["health/pair/alignment"] < 0.5
    assert health.check(1) == first and health.check(2) == first  # the probe is fixed; the weights did not move
    kept = _check(_Linear(), [views])
    assert "health/pair/alignment" not in kept.check(1) and kept.one_view == {("pair", "")}
    assert _check(torch.nn.Linear(2, 2)).check(1) == {}  # no embed, no task health: nothing


@pytest.mark.parametrize(("override", "path", "message"), [
    ("train.health.evry=5", "train.health.evry", "unknown field; did you mean 'every'?"),
    ("train.health.every=7", "train.health.every", "7 is not a multiple of train.log_every (5)"),
    ("train.health.every=-5", "train.health.every", "greater than or equal to 0"),
    ("train.health.samples=1", "train.health.samples", "greater than or equal to 2"),
    ("train.health.grace_steps=-1", "train.health.grace_steps", "greater than or equal to 0"),
    ("train.health.thresholds.cluster_entropy=2", "train.health.thresholds.cluster_entropy", "less than or equal to 1"),
    ("train.health.thresholds.stdd=0.1", "train.health.thresholds.stdd", "did you mean 'std'?"),
])
def test_bad_health_options_are_reported_against_the_field(tmp_path, pm, override, path, message):
    with pytest.raises(RecipeError) as err:
        load_recipe(str(write_toy_recipe(tmp_path, log_every=5)), pm.registry, [override])
    assert [(p, m) for p, m in err.value.problems if p == path and message in m], err.value.problems


def test_health_settings_may_change_on_resume():
    saved = {"train": {"lr": 0.1}}  # a checkpoint from before [train.health]
    current = {"train": {"lr": 0.1, "health": {"every": 10, "thresholds": {"std": 0.1}}}}
    changes = recipe_changes(saved, current)
    assert [c.path for c in changes] == ["train.health.every", "train.health.thresholds.std"]
    assert all(c.safe for c in changes)
