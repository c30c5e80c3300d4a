"""`selfsup report`: run and sweep reports written by the CLI and opened in headless Chromium (no
console error, every image rendered, nothing requested from the network, a screenshot kept), the
baseline persisted by `selfsup eval --baseline`, plugin sections isolated from each other, and the
pieces (metric records, collapse warnings, evaluation table, recipe TOML, escaping) on their own."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import cli, write_plugin, write_toy_recipe

from selfsup.plugins import PluginManager, PluginWarning
from selfsup.report import html, records, write_report
from selfsup.report.sections import plugin_sections
from selfsup.report.toml_text import recipe_toml
from selfsup.report_api import ReportRun, ReportSection
from selfsup.testing import render_in_chromium

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

pytest.importorskip("matplotlib")

FINETUNE = """
seed = 0
output_dir = "{out}"
[data.train]
type = "blobs"
options = {{ n = 256, dim = 16, classes = 4, spread = 0.6, nuisance = 12.0, split = "train" }}
[data.val]
type = "blobs"
options = {{ n = 256, dim = 16, classes = 4, spread = 0.6, nuisance = 12.0, split = "val" }}
[backbones.mlp]
type = "mlp"
options = {{ in_dim = 16, hidden_dims = [32], out_dim = 16 }}
[tasks.classify]
type = "finetune"
data = "train"
backbone = "mlp"
[evaluators.val]
type = "classification"
data = "val"
[train]
lr = 1e-2
batch_size = 64
max_steps = 20
log_every = 5
tensorboard = false
"""

GOOD_PLUGIN = '''
import selfsup
from selfsup.report_api import ReportSection

@selfsup.hookimpl
def report_sections(run):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2))
    steps, values = run.series("loss")
    fig.subplots().plot(steps, values)
    return [ReportSection("Loss by a plugin <b>", figures=[fig], captions=["caption <i>"],
                          table=[{"name": "<img src=x onerror=alert(1)>", "steps": len(steps)}],
                          note="checkpoint " + run.components.checkpoint.name)]
'''

BAD_PLUGIN = '''
import selfsup

@selfsup.hookimpl
def report_sections(run):
    raise RuntimeError("boom")
'''


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    """A toy InfoNCE run (20 steps) whose health checks count as collapsed (std threshold 10), so a
    collapse warning fires (once the run is past the health check's grace steps)."""
    directory = tmp_path_factory.mktemp("report-run")
    recipe = write_toy_recipe(directory, max_steps=20, checkpoint_every=10)
    res = cli("train", str(recipe), "--no-progress", "--set", "train.health.thresholds.std=10",
              "--set", "train.health.every=5", env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    return directory / "run"


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run_dir, target)
    return target


def check_page(page: Path, workdir: Path, screenshot: str) -> str:
    """Open ``page`` in Chromium: no error, no refused request, every image rendered; returns the HTML."""
    text = page.read_text()
    assert "<script" not in text and not re.search(r"https?://", text), "the report must load nothing"
    rendered = render_in_chromium(page, workdir, screenshot=screenshot)
    assert rendered.errors == [] and rendered.console == [], (rendered.errors, rendered.console)
    assert len(rendered.image_widths) == text.count("<img ") > 0
    assert all(w > 0 for w in rendered.image_widths), rendered.image_widths
    assert rendered.screenshot.stat().st_size > 20_000
    return text


# ------------------------------------------------------------------------------------------ run reports


def test_run_report_from_the_cli_opens_cleanly_in_chromium(toy_run, tmp_path):
    run_dir = copy_run(toy_run, tmp_path)
    plugins = tmp_path / "plugins"
    write_plugin(plugins, "good", GOOD_PLUGIN)
    write_plugin(plugins, "bad", BAD_PLUGIN)
    out = tmp_path / "out" / "report.html"
    res = cli("--plugins-dir", str(plugins), "report", str(run_dir), "--baseline", "--out", str(out),
              env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    assert f"wrote {out}" in res.stdout and "plugin 'bad' failed in hook report_sections" in res.stderr
    saved = json.loads((run_dir / "baseline.json").read_text())  # --baseline computed and kept it
    assert set(saved["trained"]) == set(saved["random_init"]) == {"knn/accuracy"} and saved["step"] == 20
    text = check_page(out, tmp_path / "chromium", "run-report.png")
    ids = re.findall(r'<section id="([\w-]+)"', text)
    assert ids == ["summary", "evaluation", "training-curves", "evaluation-curves", "health",  # plugins: load order
                   "bad-section-failed", "loss-by-a-plugin-b", "recipe", "environment"], ids
    fired = next(r["step"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
                 if r.get("health/infonce/collapsed") == 1.0)
    assert re.search(rf"Collapse warning: task &#x27;infonce&#x27; at step {fired}: std = [\d.]+ &lt; 10: ", text)
    assert "<th>random init</th>" in text and f"{saved['random_init']['knn/accuracy']:.4g}" in text
    assert "section failed: RuntimeError: boom" in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in text and "<img src=x" not in text  # plugin text is escaped
    assert "Loss by a plugin &lt;b&gt;" in text and "checkpoint step-00000020" in text
    assert '[tasks.infonce]\ntype = &quot;toy_infonce&quot;' in text and "torch_threads" in text


def test_default_output_and_a_run_without_environment_or_baseline(toy_run, tmp_path):
    run_dir = copy_run(toy_run, tmp_path)
    (run_dir / "environment.json").unlink()
    written = write_report(run_dir)
    assert written == run_dir / "report.html"
    text = written.read_text()
    assert "no environment.json" in text and "selfsup report --baseline" in text
    assert "<th>random init</th>" not in text and not (run_dir / "baseline.json").exists()


def test_eval_baseline_saves_what_it_prints(toy_run, tmp_path):
    run_dir = copy_run(toy_run, tmp_path)
    res = cli("eval", str(run_dir), "--baseline", "--json", env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    printed, saved = json.loads(res.stdout), json.loads((run_dir / "baseline.json").read_text())
    assert saved["trained"] == printed["trained"] and saved["random_init"] == printed["random_init"]
    assert saved["label"] == "random init" and saved["checkpoint"] == "step-00000020"
    assert not list(run_dir.glob(".baseline.json.tmp-*"))


def test_confusion_matrix_of_a_fine_tuned_classifier(tmp_path):
    recipe = tmp_path / "ft.toml"
    recipe.write_text(FINETUNE.format(out=tmp_path / "ft"))
    res = cli("train", str(recipe), "--no-progress", env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    res = cli("report", str(tmp_path / "ft"))
    assert res.returncode == 0, res.stderr
    text = check_page(tmp_path / "ft" / "report.html", tmp_path / "chromium", "finetune-report.png")
    section = text[text.index('<section id="confusion-matrix-val">'):]
    section = section[:section.index("</section>")]
    matrix = (tmp_path / "ft" / "reports" / "val" / "step-00000020" / "confusion.csv").read_text().splitlines()
    held_out = sum(int(v) for row in matrix[1:] for v in row.split(",")[1:])
    assert "from plugin core" in section and f"columns: predicted ({held_out} held-out samples" in section
    assert section.count("<tr>") == 1 + 4 and "<th>precision</th>" in section  # header + 4 classes


def test_report_of_a_folder_that_is_no_run_fails_cleanly(tmp_path):
    res = cli("report", str(tmp_path))
    assert res.returncode == 2 and "is neither a selfsup run directory" in res.stderr, res.stderr


def test_report_help_loads_no_plotting_library_and_no_torch():
    code = ("import sys\nfrom selfsup.cli import main\ntry:\n    main(['report', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint(sorted(m for m in ('torch', 'matplotlib', 'optuna') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.strip().endswith("[]"), res.stdout + res.stderr
    assert "RUN_OR_SWEEP" in res.stdout


# ------------------------------------------------------------------------------------------ sweep reports


#: A search space as `selfsup sweep` records it in sweep.json (its parsed space file).
SPACE = {"objective": {"metric": "knn/accuracy", "direction": None},
         "sampler": {"type": "tpe", "seed": 0, "startup_trials": 10},
         "pruner": {"type": "median", "startup_trials": 5, "warmup_evaluations": 1, "min_resource": 1,
                    "reduction_factor": 3},
         "fixed": {"train.max_steps": 200},
         "params": {"train.lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True, "step": None,
                                 "choices": None, "when": None},
                    "crop": {"type": "categorical", "low": None, "high": None, "log": False, "step": None,
                             "choices": [[0.5, 1.0], [0.8, 1.0]], "when": None}}}


def make_sweep(root: Path, values: list[float], *, direction: str = "maximize", journal: bool = False) -> Path:
    """A sweep folder made by hand as `selfsup sweep` leaves it: ``values`` as completed trials, then a
    failed trial, a failed trial that was retried (not listed) and a pruned trial."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    root.mkdir(parents=True)
    if journal:
        from optuna.storages.journal import JournalFileBackend

        storage_text, storage = "journal:study.log", optuna.storages.JournalStorage(  # relative: to the sweep
            JournalFileBackend(str(root / "study.log")))
    else:
        storage_text = storage = f"sqlite:///{root / 'study.db'}"
    study = optuna.create_study(study_name="lr-crop", storage=storage, direction=direction)
    space = {"train.lr": FloatDistribution(1e-4, 1e-1, log=True),
             "crop": CategoricalDistribution(["[0.5, 1.0]", "[0.8, 1.0]"])}  # non-scalar choices: JSON text

    def trial(number: int, **kwargs) -> None:
        params = {"train.lr": 10 ** -(1 + number % 3), "crop": ["[0.5, 1.0]", "[0.8, 1.0]"][number % 2]}
        attrs = {"run_dir": str(root / "trials" / f"trial-{number:04d}"), "seconds": 10.0 + number,
                 **kwargs.pop("attrs", {})}
        study.add_trial(create_trial(params=params, distributions=space, user_attrs=attrs, **kwargs))

    for number, value in enumerate(values):
        trial(number, value=value)
    n = len(values)
    trial(n, state=TrialState.FAIL, attrs={"error": "diverged: <loss> is nan"})
    trial(n + 1, state=TrialState.FAIL, attrs={"error": "worker killed", "retried": True})
    trial(n + 2, state=TrialState.PRUNED, intermediate_values={10: 0.25, 20: 0.3})
    (root / "sweep.json").write_text(json.dumps({
        "recipe": "simclr-digits", "overrides": ["train.epochs="], "space": SPACE, "space_file": "space.toml",
        "study": "lr-crop", "storage": storage_text, "objective": {"metric": "knn/accuracy", "direction": direction},
        "sampler": "tpe", "pruner": "median"}))
    return root


def test_sweep_report_from_the_cli_opens_cleanly_in_chromium(tmp_path):
    pytest.importorskip("optuna")
    sweep = make_sweep(tmp_path / "sweep", [0.61, 0.74, 0.55, 0.7])
    (sweep / "trials" / "trial-0001").mkdir(parents=True)
    (sweep / "trials" / "trial-0001" / "report.html").write_text("<!DOCTYPE html><title>trial 1</title>")
    res = cli("report", str(sweep))
    assert res.returncode == 0, res.stderr
    text = check_page(sweep / "report.html", tmp_path / "chromium", "sweep-report.png")
    best = text[text.index('<section id="best-trials">'):text.index('<section id="figures">')]
    assert [int(n) for n in re.findall(r"<tr><td class=\"num\">(\d+)</td>", best)] == [1, 3, 0, 2]  # best first
    assert '<a href="trials/trial-0001/report.html">trial-0001</a>' in best
    assert "<td>train.lr = 0.01, crop = [0.8, 1.0]</td><td class=\"num\">11</td>" in best  # decoded; seconds
    assert text.count("<img ") == 3 and "maximize knn/accuracy" in text
    assert "4 complete, 1 fail, 1 retried, 1 pruned" in text and "0.0001 to 0.1, log scale" in text
    assert "<td>train.max_steps</td><td class=\"num\">200</td>" in text  # fixed in every trial
    failed = text[text.index('<section id="failed-and-pruned-trials">'):]
    assert "diverged: &lt;loss&gt; is nan" in failed and "pruned at step 20 (value 0.3)" in failed
    assert "worker killed" not in failed


def test_sweep_report_with_one_completed_trial_in_a_journal(tmp_path):
    pytest.importorskip("optuna")
    sweep = make_sweep(tmp_path / "sweep", [0.5], direction="minimize", journal=True)
    out = write_report(sweep, tmp_path / "elsewhere" / "sweep.html")
    text = out.read_text()
    assert text.count("<img ") == 1  # the history; parallel coordinates and importances need 2 trials
    assert "parameter importances: needs 2 completed trials, the sweep has 1." in text
    assert "minimize knn/accuracy" in text and '<a href="trials' not in text  # no trial has a report


# ------------------------------------------------------------------------------------------ plugin sections


def test_each_plugin_section_is_isolated_and_failures_are_shown():
    def plugin(body):
        module = types.ModuleType("p")
        module.report_sections = __import__("selfsup").hookimpl(body)
        return module

    pm = PluginManager(load_entry_points=False)
    pm.register(plugin(lambda run: 1 / 0), "divides")
    pm.register(plugin(lambda run: "not sections"), "wrong")
    pm.register(plugin(lambda run: None), "quiet")
    pm.register(plugin(lambda run: [ReportSection("Bad figure", figures=[b"not a png"])]), "badfig")
    pm.register(plugin(lambda run: [ReportSection("Fine", note=f"{len(run.records)} records",
                                                  table=[{"a": 1.23456, "b": None}])]), "fine")
    run = ReportRun(path=Path("."), recipe={}, records=[{"kind": "train", "step": 1, "loss": 1.0}])
    with pytest.warns(PluginWarning) as caught:
        rendered = plugin_sections(pm, run)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 3 and "'divides' failed in hook report_sections" in messages[0], messages
    assert "report_sections returned str" in messages[1] and "report section Bad figure" in messages[2]
    titles = [title for title, _, _ in rendered]
    assert titles == ["divides: section failed", "wrong: section failed", "badfig: section failed", "Fine"]
    assert "section failed: ZeroDivisionError: division by zero" in rendered[0][1][0]
    assert "not a list of selfsup.report_api.ReportSection" in rendered[1][1][0]
    assert "must be PNG data" in rendered[2][1][0]
    assert "1 records" in rendered[3][1][0] and '<td class="num">1.235</td><td></td>' in rendered[3][1][1]


def test_model_loading_errors_are_raised_each_time_without_reloading():
    calls = []

    def loader():
        calls.append(1)
        raise FileNotFoundError("no checkpoint")

    run = ReportRun(path=Path("."), recipe={}, _loader=loader)
    for _ in range(2):
        with pytest.raises(FileNotFoundError):
            run.model  # noqa: B018
    assert calls == [1]


# ------------------------------------------------------------------------------------------ the pieces


def test_collapse_warnings_fire_on_each_transition_and_name_the_metric():
    history = [
        {"kind": "train", "step": 5, "health/t/std": 0.4, "health/t/rankme": 9.0, "health/t/collapsed": 0.0},
        {"kind": "train", "step": 10, "health/t/std": 0.01, "health/t/rankme": 9.0, "health/t/collapsed": 1.0},
        {"kind": "eval", "step": 10, "health/t/std": 0.01, "health/t/collapsed": 1.0},  # the same warning
        {"kind": "train", "step": 15, "health/t/std": 0.3, "health/t/collapsed": 0.0},
        {"kind": "train", "step": 20, "health/t/std": 0.3, "health/t/rankme": 1.2, "health/t/collapsed": 1.0},
        {"kind": "train", "step": 20, "health/c/a/code_perplexity": 1.1, "health/c/collapsed": 1.0},
    ]
    events = records.collapses(history, {"std": 0.05, "rankme": 1.5})
    assert [(e.task, e.step) for e in events] == [("t", 10), ("t", 20), ("c", 20)]
    assert events[0].message() == ("Collapse warning: task 't' at step 10: std = 0.01 < 0.05: the embeddings "
                                   "collapsed to (nearly) a single point.")
    assert events[1].reasons[0].startswith("rankme = 1.2 < 1.5") and events[2].reasons[0].startswith("a: code_")
    custom = records.collapses(history[:2], {"std": 0.001, "rankme": 1.5})  # none below: the one that moved most
    assert custom[0].reasons == ["std = 0.01 (first 0.4)"]
    assert records.health_metrics(history) == {"t": ["std", "rankme"], "c": ["a/code_perplexity"]}


def test_evaluation_rows_put_evaluator_baselines_beside_their_metric():
    trained = {"knn/accuracy": 0.9, "knn/raw_accuracy": 0.8, "probe/accuracy": 0.7, "probe/mfcc_accuracy": 0.6,
               "ppl/perplexity": 20.0, "ppl/unigram_perplexity": 200.0, "other/raw_thing": 1.0}
    rows, columns = records.evaluation_rows(trained, {"knn/accuracy": 0.5}, "random init")
    assert columns == ["metric", "trained", "random init", "raw input", "MFCC", "unigram"]
    assert rows[0] == {"metric": "knn/accuracy", "trained": 0.9, "random init": 0.5, "raw input": 0.8}
    assert {"metric": "other/raw_thing", "trained": 1.0, "random init": None} in rows  # no "other/thing" beside
    assert [r["metric"] for r in rows] == ["knn/accuracy", "probe/accuracy", "ppl/perplexity", "other/raw_thing"]


def test_series_and_groups_read_non_finite_values_and_skip_health():
    history = [{"kind": "train", "step": 1, "loss": 2.0, "loss/a": 2.0, "a/acc": 0.1, "lr": 0.1, "samples_per_s": 9},
               {"kind": "train", "step": 2, "loss": "nan", "health/a/std": 0.3},
               {"kind": "eval", "step": 2, "knn/accuracy": 0.5, "health/a/std": 0.3}]
    steps, values = records.series(history, "loss", "train")
    assert steps == [1, 2] and values[0] == 2.0 and values[1] != values[1]
    assert records.train_groups(history, ["a"]) == {"loss": ["loss", "loss/a"], "task a": ["a/acc"],
                                                    "learning rate": ["lr"], "throughput and other": ["samples_per_s"]}
    assert records.eval_groups(history) == {"knn": ["knn/accuracy"]}


def test_recipe_toml_reads_back_as_the_recipe_without_nulls():
    recipe = {"name": "x y", "seed": 0, "description": 'say "hi"\nthere', "note": None,
              "data": {"train": {"type": "blobs", "options": {"n": 8, "split": "train", "maybe": None}}},
              "tasks": {"t": {"type": "toy", "augment": [], "options": {"w": [0.5, 1e-3], "flag": True}}},
              "train": {"lr": 3e-3, "health": {"enabled": True, "thresholds": {"std": 0.05}}, "device": None}}
    text = recipe_toml(recipe)
    assert "[data.train]" in text and "[train]" in text and "note" not in text
    assert tomllib.loads(text) == {
        "name": "x y", "seed": 0, "description": 'say "hi"\nthere',
        "data": {"train": {"type": "blobs", "options": {"n": 8, "split": "train"}}},
        "tasks": {"t": {"type": "toy", "augment": [], "options": {"w": [0.5, 1e-3], "flag": True}}},
        "train": {"lr": 3e-3, "health": {"enabled": True, "thresholds": {"std": 0.05}}}}


def test_html_helpers_escape_and_refuse_what_would_load_or_run():
    assert html.esc('<a href="x">&') == "&lt;a href=&quot;x&quot;&gt;&amp;"
    assert html.table([{"<k>": "<v>", "n": 2}]) == ('<table><thead><tr><th>&lt;k&gt;</th><th>n</th></tr></thead>'
                                                    '<tbody><tr><td>&lt;v&gt;</td><td class="num">2</td></tr></tbody>'
                                                    '</table>')
    for href in ("https://x.org/a", "javascript:alert(1)", "//x.org/a", "data:text/html,x"):
        with pytest.raises(ValueError):
            html.link(href, "x")
    assert html.link("trials/t 1/report.html", "<t>") == '<a href="trials/t 1/report.html">&lt;t&gt;</a>'
    with pytest.raises(ValueError, match="PNG"):
        html.figure(b"<svg onload=alert(1)>")
    page = html.page("<T>", "s", [], [("Same", ["a"], ""), ("Same", ["b"], "plugin p")])
    assert '<section id="same">' in page and '<section id="same-2">' in page and "<title>&lt;T&gt;</title>" in page
    assert f'content="{html.CSP}"' in page and "img-src data:" in html.CSP


def test_samples_spread_over_a_map_source_and_take_the_first_of_a_stream():
    class Stream:
        def iterate(self, *, epoch, rank, world_size, seed):
            return iter({"x": i, "y": -i} for i in range(100))

    class Loaded:
        data = {"map": [{"x": i, "y": -i} for i in range(10)], "stream": Stream()}

    run = ReportRun(path=Path("."), recipe={"seed": 3}, _loader=lambda: (Loaded(), None))
    assert [s["x"] for s in run.samples("map", 4)] == [0, 2, 5, 7]
    assert run.samples("map", 50, keys=("x",)) == [{"x": i} for i in range(10)]
    assert [s["x"] for s in run.samples("stream", 3)] == [0, 1, 2]
