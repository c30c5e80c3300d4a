"""Training in rounds (``[rounds]``, docs/autonomous.md): recipe validation, the feedback's weights,
fields and appended samples reaching the tasks' sampler and batches, the saved results, exact resume
after kill -9 before, inside and after a round's feedback and in the middle of a round, broken
feedback plugins, and the built-in ``pseudo_labels`` feedback on digits."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import cli, write_plugin
from safetensors.torch import load_file

from selfsup.engine import checkpoint as ckpt
from selfsup.engine.errors import ComponentError
from selfsup.engine.loop import train
from selfsup.engine.metrics import read_metrics
from selfsup.engine.resume import recipe_changes
from selfsup.plugins import PluginManager
from selfsup.recipe import RecipeError, load_recipe

# A counting task (which samples, of which round, each step drew: a buffer, so it is checkpointed)
# and a feedback that weights samples by index % 4 (0 -> never drawn, 1 -> 3x), tags them with the
# next round's number (a field), appends samples and uses its seeded generator. Faults are injected
# through environment variables (the recipe stays that of the uninterrupted run): RT_KILL_FEEDBACK
# (kill -9 inside the feedback of that round), RT_KILL_ROUND_END (after that round's feedback is
# saved and applied), RT_KILL_STEP (at the end of that step), each once (RT_MARKER).
PLUGIN = """
import json, os, signal
import selfsup
from selfsup.options import Options


class CounterOptions(Options):
    slots: int = 512
    rounds: int = 3


class ToyFeedbackOptions(Options):
    append: int = 0


def _die(name, value):
    marker = os.environ.get("RT_MARKER", "")
    if os.environ.get(name) == str(value) and marker and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)


def build_counter(options, context):
    import torch
    from selfsup.components import TaskOutput

    class Counter(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("counts", torch.zeros(options.rounds, options.slots, dtype=torch.long))
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, batch, backbone):
            index = batch["index"].long()
            tag = batch.get("round_tag")
            tags = tag.long() if tag is not None else torch.zeros_like(index)
            self.counts.index_put_((tags, index), torch.ones_like(index), accumulate=True)
            return TaskOutput(loss=(backbone(batch["input"]) * self.scale).pow(2).mean())

    return Counter()


class ToyFeedback:
    def __init__(self, options):
        self.options = options

    def run(self, context):
        import torch
        from selfsup.components import FeedbackResult

        _die("RT_KILL_FEEDBACK", context.round)
        if os.environ.get("RT_FEEDBACK_BOOM"):
            raise RuntimeError("boom")
        if os.environ.get("RT_FEEDBACK_CHANGES_MODEL"):
            next(context.backbone.parameters()).add_(1.0)
        torch.rand(3)  # careless: the global RNG; the core restores the run's RNG states after a feedback
        (context.out_dir / "note.txt").write_text(f"round {context.round}")
        feats, _ = context.features()
        n, dim = feats.shape[0], context.data[0]["input"].shape[0]
        total = n + self.options.append
        idx = torch.arange(total)
        weights = torch.ones(total, dtype=torch.float64)
        weights[(idx < n) & (idx % 4 == 0)] = 0.0
        weights[(idx < n) & (idx % 4 == 1)] = 3.0
        if os.environ.get("RT_FEEDBACK_BAD_SHAPE"):
            weights = weights[:-1]
        noise = torch.rand(total, generator=context.generator)
        samples = [{"input": torch.full((dim,), float(context.round + i)), "label": torch.tensor(0)}
                   for i in range(self.options.append)]
        fields = {"round_tag": torch.full((total,), context.round + 1, dtype=torch.long), "noise": noise}
        previous = -1.0 if context.previous is None else float(context.previous.fields["round_tag"][0])
        return FeedbackResult(weights=weights, fields=fields, samples=samples,
                              metrics={"noise_mean": float(noise.mean()), "previous_tag": previous})


@selfsup.hookimpl
def register_pretext_tasks(register):
    register("counter", build_counter, options=CounterOptions, summary="Counts the samples each round draws.",
             consumes={"input": "float32[D]", "index": "int64[]", "round_tag?": "int64[]"})


@selfsup.hookimpl
def register_feedback(register):
    register("toy_feedback", lambda options, context: ToyFeedback(options), options=ToyFeedbackOptions,
             summary="Weights by index, tags with the round.", consumes={},
             produces={"round_tag": "int64[]", "noise": "float32[]"})


@selfsup.hookimpl
def on_step_end(run, step, metrics):
    _die("RT_KILL_STEP", step)


@selfsup.hookimpl
def on_round_end(run, round, step, metrics):
    events = os.environ.get("RT_EVENTS")
    if events:
        with open(events, "a") as fh:
            fh.write(json.dumps({"round": round, "step": step, "run_round": run.round, "rounds": run.rounds,
                                 "noise_mean": metrics["feedback/noise_mean"]}) + "\\n")
    _die("RT_KILL_ROUND_END", round)
"""

RECIPE = """
seed = 0
output_dir = "{output_dir}"

[data.train]
type = "blobs"
options = {{ n = 256, dim = 8 }}

[backbones.mlp]
type = "mlp"
options = {{ in_dim = 8, hidden_dims = [32], out_dim = 16, dropout = 0.2 }}

[tasks.count]
type = "counter"
data = "train"
backbone = "mlp"
options = {{ slots = 272, rounds = 3 }}

[rounds]
count = 3
feedback = {{ type = "toy_feedback", data = "train", options = {{ append = 16 }} }}

[train]
lr = 1e-2
batch_size = 32
max_steps = 60
log_every = 5
checkpoint_every = 6
keep_checkpoints = 3
deterministic = true
tensorboard = false
"""

N, APPENDED, BATCH = 256, 16, 32


@pytest.fixture
def plugins(tmp_path):
    directory = tmp_path / "plugins"
    write_plugin(directory, "rt", PLUGIN)
    return directory


def write_recipe(directory: Path, name: str = "r.toml", text: str = RECIPE, **edits: str) -> Path:
    body = text.format(output_dir=directory / "run")
    for old, new in edits.items():
        assert old in body, old
        body = body.replace(old, new)
    path = directory / name
    path.write_text(body)
    return path


def manager(plugins: Path) -> PluginManager:
    pm = PluginManager(plugins_dirs=[plugins])
    assert not pm.errors, pm.errors
    return pm


def run_in_process(recipe: Path, plugins: Path, *overrides: str, resume: bool = False):
    pm = manager(plugins)
    return train(load_recipe(str(recipe), pm.registry, list(overrides)), pm, resume=resume, progress=False)


def final_state(run_dir: Path) -> dict:
    return load_file(str(ckpt.latest_checkpoint(run_dir) / "model.safetensors"))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------ validation


def _problems(tmp_path: Path, plugins: Path, **edits: str) -> str:
    with pytest.raises(RecipeError) as err:
        load_recipe(str(write_recipe(tmp_path, **edits)), manager(plugins).registry)
    return str(err.value)


FEEDBACK_LINE = 'feedback = { type = "toy_feedback", data = "train", options = { append = 16 } }'


@pytest.mark.parametrize(("edit", "expected"), [
    ({"count = 3": "count = 1"}, ["rounds.count", "greater than or equal to 2"]),
    ({"count = 3": "count = 3\nrepeat = 2"}, ["rounds.repeat", "unknown field"]),
    ({'type = "toy_feedback"': 'type = "toy_feedbak"'},
     ["rounds.feedback.type", "unknown feedback component 'toy_feedbak'", "did you mean 'toy_feedback'"]),
    ({'data = "train", options = { append': 'data = "trian", options = { append'},
     ["rounds.feedback.data", "no [data.trian]", "did you mean 'train'"]),
    ({"append = 16 }": "append = 16, apend = 1 }"}, ["rounds.feedback.options.apend", "unknown field"]),
    ({FEEDBACK_LINE: 'feedback = { type = "toy_feedback", data = "train", augment = ["crop"] }'},
     ["rounds.feedback.augment[0]", "no [augmentations.crop]"]),
    ({"count = 3": "count = 3\nsteps_per_round = 30"},
     ["rounds.steps_per_round", "2 rounds of 30 steps leave no step of train.max_steps = 60"]),
    ({"options = { slots": "from_round = 3\noptions = { slots"},
     ["tasks.count.from_round", "3 is not a round of rounds.count = 3"]),
    ({"options = { slots": "from_round = 1\noptions = { slots"},
     ["tasks", "every task has from_round > 0"]),
])
def test_recipe_errors_name_the_field(tmp_path, plugins, edit, expected):
    message = _problems(tmp_path, plugins, **edit)
    for fragment in expected:
        assert fragment in message, (fragment, message)


def test_from_round_needs_rounds_and_a_task_reading_a_missing_field_is_caught(tmp_path, plugins):
    path = write_recipe(tmp_path, **{"options = { slots": "from_round = 1\noptions = { slots"})
    text = path.read_text()
    path.write_text(text.split("[rounds]")[0] + "[train]" + text.split("[train]")[1])
    with pytest.raises(RecipeError, match=r"tasks.count.from_round: needs a \[rounds\] table"):
        load_recipe(str(path), manager(plugins).registry)
    # the feedback's declared fields flow to the tasks on its data (as optional keys): a task that reads
    # one the feedback does not add is reported against the task
    assert load_recipe(str(write_recipe(tmp_path)), manager(plugins).registry).recipe.rounds.count == 3
    plugin = (plugins / "rt.py").read_text().replace('"round_tag?": "int64[]"', '"round_tags": "int64[]"')
    (plugins / "rt.py").write_text(plugin)
    message = _problems(tmp_path, plugins)
    assert "tasks.count: pretext task 'count' (counter) reads 'round_tags: int64[]'" in message, message
    assert "round_tag?" in message and "noise?" in message, message


def test_resume_refuses_changed_rounds_and_moved_round_boundaries():
    saved = {"train": {"max_steps": 60}, "rounds": {"count": 3, "steps_per_round": None}}
    changed = {"train": {"max_steps": 60}, "rounds": {"count": 4, "steps_per_round": None}}
    (change,) = recipe_changes(saved, changed)
    assert not change.safe and "the rounds" in change.text()
    longer = {"train": {"max_steps": 90}, "rounds": saved["rounds"]}
    (change,) = recipe_changes(saved, longer)
    assert not change.safe and "round boundaries" in change.text()
    fixed = {"train": {"max_steps": 60}, "rounds": {"count": 3, "steps_per_round": 20}}
    (change,) = recipe_changes(fixed, {**fixed, "train": {"max_steps": 90}})
    assert change.safe  # fixed boundaries: a longer run only lengthens the last round
    (change,) = recipe_changes({"train": {"max_steps": 60}}, {"train": {"max_steps": 90}})
    assert change.safe  # without rounds, as before


# ------------------------------------------------------------------------------------------ a whole run


def test_rounds_reshape_the_data_the_sampler_draws(tmp_path, plugins, monkeypatch):
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("RT_EVENTS", str(events))
    result = run_in_process(write_recipe(tmp_path), plugins)
    assert result.status == "completed" and result.step == 60
    counts = final_state(tmp_path / "run")["tasks.count.counts"]  # [round, sample index]
    index = torch.arange(N)

    # every step of a round drew one batch of that round's data (rounds end at steps 20 and 40)
    assert counts.sum(1).tolist() == [20 * BATCH, 20 * BATCH, 20 * BATCH]
    # round 0: uniform over the data as built, nothing appended yet
    assert counts[0, N:].sum() == 0 and (counts[0, :N] > 0).float().mean() > 0.9
    for r in (1, 2):
        drawn = counts[r]
        # the feedback's fields reach the batches (the tag is the round), its weights the sampler:
        # weight 0 is never drawn, weight 3 three times as often as weight 1, appended samples are drawn
        assert drawn[:N][index % 4 == 0].sum() == 0
        heavy, light = drawn[:N][index % 4 == 1].double().mean(), drawn[:N][index % 4 >= 2].double().mean()
        assert 2.4 < heavy / light < 3.6, (r, float(heavy), float(light))
        assert drawn[N:N + APPENDED].sum() > 0

    # each round's result is saved, verified by its hash, and the feedback's own files kept beside it
    for r in (0, 1):
        folder = tmp_path / "run" / "rounds" / str(r)
        meta = json.loads((folder / "feedback.json").read_text())
        assert meta["round"] == r and meta["step"] == 20 * (r + 1) and meta["appended"] == APPENDED
        assert meta["samples"] == N + APPENDED and meta["weights"] is True
        assert meta["fields"]["round_tag"] == {"dtype": "int64", "shape": [N + APPENDED]}
        assert meta["files"]["feedback.pt"]["sha256"] == sha(folder / "feedback.pt")
        assert (folder / "note.txt").read_text() == f"round {r}"
        saved = torch.load(folder / "feedback.pt", weights_only=True)
        assert len(saved["samples"]) == APPENDED and saved["weights"].shape == (N + APPENDED,)
    assert not (tmp_path / "run" / "rounds" / "2").exists(), "the last round has no feedback"

    records = [r for r in read_metrics(tmp_path / "run") if r["kind"] == "round"]
    assert [(r["step"], r["round"]) for r in records] == [(20, 0.0), (40, 1.0)]
    assert records[1]["feedback/previous_tag"] == 1.0 and records[0]["feedback/previous_tag"] == -1.0
    assert records[0]["round/samples"] == N + APPENDED and records[0]["round/appended"] == APPENDED
    assert records[0]["round/weights_zero"] == pytest.approx(64 / (N + APPENDED))
    assert 0 < records[0]["round/weights_ess"] < 1
    assert records[0]["feedback/noise_mean"] != records[1]["feedback/noise_mean"]  # seeded by the round
    fired = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(e["round"], e["step"], e["run_round"], e["rounds"]) for e in fired] == [(0, 20, 1, 3), (1, 40, 2, 3)]
    assert [e["noise_mean"] for e in fired] == [r["feedback/noise_mean"] for r in records]


def test_loader_workers_follow_the_rounds_without_restarting(tmp_path, plugins, monkeypatch):
    """With data-loader workers, one set of workers serves the whole run: at a round's end their copy
    of the data catches up with the feedback's fields and appended samples (read from the saved
    result), the batches made ahead from the old data are dropped, and the run equals the run
    without workers sample for sample."""
    from torch.utils.data import dataloader

    started = []
    start = dataloader._MultiProcessingDataLoaderIter.__init__
    monkeypatch.setattr(dataloader._MultiProcessingDataLoaderIter, "__init__",
                        lambda self, loader: (started.append(1), start(self, loader))[1])
    inline, workers = tmp_path / "inline", tmp_path / "workers"
    inline.mkdir(), workers.mkdir()
    run_in_process(write_recipe(inline), plugins)
    assert not started
    run_in_process(write_recipe(workers), plugins, "train.workers=2")
    assert len(started) == 1, "the rounds' ends restarted the workers"
    expected, got = final_state(inline / "run"), final_state(workers / "run")
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    assert got["tasks.count.counts"][1:, N:].sum() > 0  # appended samples and round tags reached the batches


def test_the_same_run_again_gives_the_same_feedback(tmp_path, plugins):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    run_in_process(write_recipe(first), plugins)
    run_in_process(write_recipe(second), plugins)
    for r in (0, 1):
        assert sha(first / "run/rounds" / str(r) / "feedback.pt") == sha(second / "run/rounds" / str(r) / "feedback.pt")
    a, b = final_state(first / "run"), final_state(second / "run")
    assert all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------ resume after kill -9


def _train_cli(recipe: Path, plugins: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "SELFSUP_PLUGINS_DIR": str(plugins), "PYTHONUNBUFFERED": "1", "SELFSUP_MLFLOW": "0", **env}
    return subprocess.run([sys.executable, "-m", "selfsup", "train", str(recipe), "--no-progress", *args], env=full,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    plugins = root / "plugins"
    write_plugin(plugins, "rt", PLUGIN)
    res = _train_cli(write_recipe(root), plugins, {})
    assert res.returncode == 0, res.stderr
    return root / "run"


@pytest.mark.parametrize(("scenario", "env", "killed_at", "left"), [
    # between the round's checkpoint and its saved result: the feedback runs again on resume
    ("inside the feedback", {"RT_KILL_FEEDBACK": "0"}, "step-00000020", "running it again"),
    # the result is saved and applied, no checkpoint after it yet: the saved result is applied
    ("after the feedback", {"RT_KILL_ROUND_END": "1"}, "step-00000040", "its feedback was saved before"),
    # in the middle of round 1, past a checkpoint that follows round 0's result
    ("mid-round", {"RT_KILL_STEP": "30"}, "step-00000024", None),
])
def test_kill_9_then_resume_ends_as_the_uninterrupted_run(tmp_path, plugins, reference, scenario, env, killed_at,
                                                           left):
    recipe = write_recipe(tmp_path)
    run_dir = tmp_path / "run"
    crashed = _train_cli(recipe, plugins, {**env, "RT_MARKER": str(tmp_path / "killed")})
    assert crashed.returncode == -9, (scenario, crashed.returncode, crashed.stderr[-2000:])
    assert ckpt.latest_checkpoint(run_dir).name == killed_at
    if scenario == "inside the feedback":
        assert not (run_dir / "rounds" / "0").exists()
        assert [p.name for p in (run_dir / "rounds").iterdir() if p.name.startswith(".tmp-0-")], "a partial result"
    if scenario == "mid-round":  # a damaged result the checkpoint trained on is refused, naming the file
        saved = run_dir / "rounds" / "0" / "feedback.pt"
        good = saved.read_bytes()
        saved.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
        refused = _train_cli(recipe, plugins, {}, "--resume")
        assert refused.returncode == 2, refused.stderr
        assert "rounds/0/feedback.pt: sha256 mismatch" in refused.stderr and "Traceback" not in refused.stderr
        saved.write_bytes(good)

    resumed = _train_cli(recipe, plugins, {}, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    if left:
        assert left in resumed.stdout, resumed.stdout
    assert not [p for p in (run_dir / "rounds").iterdir() if p.name.startswith(".tmp-")], "leftovers are removed"
    for r in (0, 1):
        assert sha(run_dir / "rounds" / str(r) / "feedback.pt") == sha(reference / "rounds" / str(r) / "feedback.pt")
    a, b = final_state(reference), final_state(run_dir)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume ({scenario})"
    steps = [r["step"] for r in read_metrics(run_dir) if r["kind"] == "train"]
    assert steps == list(range(5, 61, 5)), "metrics continue without repeats"


# ------------------------------------------------------------------------------------------ broken feedback


BROKEN = """
import selfsup

@selfsup.hookimpl
def register_feedback(register):
    raise RuntimeError("no feedback today")
"""


def test_a_broken_feedback_plugin_is_reported_and_not_fatal(tmp_path, plugins):
    write_plugin(plugins, "broken_fb", BROKEN)
    listing = cli("--plugins-dir", str(plugins), "plugins")
    assert listing.returncode == 0, listing.stderr
    assert "error in register_feedback: RuntimeError: no feedback today" in listing.stdout
    assert "feedback components: toy_feedback" in listing.stdout  # the other plugins keep working
    assert "feedback components: pseudo_labels" in listing.stdout
    recipe = write_recipe(tmp_path, **{'type = "toy_feedback"': 'type = "broken_fb"'})
    res = cli("--plugins-dir", str(plugins), "validate", str(recipe))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert ("rounds.feedback.type: unknown feedback component 'broken_fb': plugin 'broken_fb' failed in "
            "register_feedback: RuntimeError: no feedback today") in res.stderr, res.stderr
    described = cli("describe", "feedback", "pseudo_labels")
    assert described.returncode == 0 and "clusters" in described.stdout and "pseudo_label" in described.stdout


@pytest.mark.parametrize(("env", "message"), [
    ({"RT_FEEDBACK_BOOM": "1"}, "RuntimeError: boom in run"),
    ({"RT_FEEDBACK_CHANGES_MODEL": "1"}, "it changed the model's weights or buffers"),
    ({"RT_FEEDBACK_BAD_SHAPE": "1"}, f"weights has shape [{N + APPENDED - 1}]; the next round has {N + APPENDED}"),
])
def test_a_failing_feedback_stops_the_run_naming_it(tmp_path, plugins, monkeypatch, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ComponentError) as err:
        run_in_process(write_recipe(tmp_path), plugins)
    assert str(err.value).startswith("rounds.feedback (plugin rt)"), str(err.value)
    assert message in str(err.value)
    assert ckpt.latest_checkpoint(tmp_path / "run").name == "step-00000020", "the round's training is kept"
    assert not (tmp_path / "run" / "rounds" / "0").exists()


# ------------------------------------------------------------------------------------------ pseudo_labels


def _digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    return [{"input": x[i], "label": int(digits.target[i])} for i in range(len(x))]


class _Pixels(torch.nn.Module):
    """An embedding of digits: their 64 pixels."""

    output_dim = 64

    def embed(self, batch):
        return batch["input"].float()


def _context(data, round, previous=None):
    from selfsup.components import FeedbackContext
    from selfsup.lib import extract_features

    backbone = _Pixels()
    return FeedbackContext(
        name="rounds.feedback", round=round, rounds=3, step=10 * (round + 1), seed=7, device=torch.device("cpu"),
        backbone=backbone, tasks={}, data=data, batch_size=512, generator=torch.Generator().manual_seed(7 + round),
        run_dir=Path("."), out_dir=Path("."), batches=None, previous=previous,
        features=lambda source=None: extract_features(backbone, data, batch_size=512, device="cpu"))


def _pseudo_labels(**options):
    from selfsup.builtins.options import PseudoLabelOptions
    from selfsup.builtins.pseudo_labels import PseudoLabels

    return PseudoLabels(PseudoLabelOptions(clusters=10, measure_labels="label", **options))


def test_pseudo_labels_of_digits_beat_chance_and_are_refined_not_redrawn():
    from sklearn.metrics import normalized_mutual_info_score

    from selfsup.lib.clustering import normalized_mutual_info, purity

    data = _digits()
    truth = torch.tensor([s["label"] for s in data])
    first = _pseudo_labels().run(_context(data, 0))
    labels = first.fields["pseudo_label"]
    assert labels.shape == (len(data),) and labels.dtype == torch.int64 and first.weights.shape == (len(data),)
    nmi = first.metrics["nmi_labels"]
    assert nmi == pytest.approx(normalized_mutual_info_score(truth.numpy(), labels.numpy()), abs=1e-9)
    # chance: the same pseudo-labels against shuffled true labels (seeded)
    shuffled = truth[torch.randperm(len(truth), generator=torch.Generator().manual_seed(0))]
    chance_nmi, chance_purity = normalized_mutual_info(labels, shuffled), purity(labels, shuffled)
    assert nmi > 0.6 and nmi > 10 * chance_nmi, (nmi, chance_nmi)
    assert first.metrics["purity"] > 0.7 and first.metrics["purity"] > 2.5 * chance_purity
    assert first.metrics["clusters_used"] == 10 and "changed" not in first.metrics

    # the next round starts from these pseudo-classes: on the same embeddings, ids keep their meaning
    second = _pseudo_labels().run(_context(data, 1, previous=first))
    assert second.metrics["changed"] < 0.05, second.metrics
    assert (second.fields["pseudo_label"] == labels).float().mean() > 0.95


def test_pseudo_label_weights_follow_the_documented_rule():
    data = _digits()
    first = _pseudo_labels(confidence_power=0.0).run(_context(data, 0))
    labels, n = first.fields["pseudo_label"], len(data)
    # balanced without confidence: every pseudo-class weighs the same in total, the mean weight is 1
    per_class = torch.zeros(10, dtype=torch.float64).index_add_(0, labels, first.weights)
    assert torch.allclose(per_class, torch.full((10,), n / 10, dtype=torch.float64))
    assert first.weights.mean().item() == pytest.approx(1.0)

    # confidence: the softmax over similarities at the sample's own cluster; weight proportional to it
    weighted = _pseudo_labels(balanced=False, confidence_field="conf").run(_context(data, 0))
    assert weighted.fields["conf"].dtype == torch.float32
    conf = weighted.fields["conf"].double()
    assert bool(((conf > 0) & (conf <= 1)).all())
    assert torch.allclose(weighted.weights, conf * n / conf.sum())

    # unstable samples (pseudo-label changed since the previous round) weigh unstable_weight as much
    from selfsup.components import FeedbackResult

    flipped = labels.clone()
    moved = torch.arange(n) % 7 == 0
    flipped[moved] = (flipped[moved] + 1) % 10
    previous = FeedbackResult(fields={"pseudo_label": flipped})
    options = dict(balanced=False, confidence_power=0.0, unstable_weight=0.25)
    again = _pseudo_labels(**options).run(_context(data, 1, previous=previous))
    changed = again.fields["pseudo_label"] != flipped
    assert again.metrics["changed"] == pytest.approx(changed.double().mean().item())
    assert changed.any() and (~changed).any()
    ratio = again.weights[changed].mean() / again.weights[~changed].mean()
    assert ratio.item() == pytest.approx(0.25)

    # min_confidence above every confidence: a clear error, not a silent empty round
    with pytest.raises(ValueError, match="every sample got weight 0"):
        _pseudo_labels(min_confidence=0.999, temperature=10.0).run(_context(data, 0))
