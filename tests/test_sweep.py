"""selfsup sweep: the space file, trials as runs, pruning, failures, shared studies, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import cli, write_toy_recipe

pytest.importorskip("optuna")

from selfsup.plugins import get_plugin_manager  # noqa: E402
from selfsup.recipe import RecipeError, load_recipe  # noqa: E402
from selfsup.sweep.prepare import prepare_sweep  # noqa: E402
from selfsup.sweep.space import load_space  # noqa: E402
from selfsup.sweep.study import load_study  # noqa: E402
from selfsup.sweep.worker import run_worker  # noqa: E402

SPACE = """
[objective]
metric = "knn/accuracy"
direction = "maximize"
[sampler]
type = "{sampler}"
startup_trials = 2
[pruner]
type = "{pruner}"
startup_trials = 1
warmup_evaluations = 0
[fixed]
"evaluators.knn.every" = 10
{params}
"""

LR_AND_TEMPERATURE = """
[params."train.lr"]
type = "float"
low = 1e-4
high = 3e-2
log = true
[params."tasks.infonce.options.temperature"]
type = "float"
low = 0.05
high = 1.0
log = true
"""


def _setup(tmp_path, params=LR_AND_TEMPERATURE, sampler="tpe", pruner="median", **recipe):
    recipe_path = write_toy_recipe(tmp_path, **{"max_steps": 40, **recipe})
    space = tmp_path / "space.toml"
    space.write_text(SPACE.format(sampler=sampler, pruner=pruner, params=params))
    return recipe_path, space


def _sweep(tmp_path, recipe_path, space, trials, **kw):
    pm = get_plugin_manager()
    sweep_dir, study, sp, meta = prepare_sweep(str(recipe_path), space, pm=pm, out=tmp_path / "sweep", storage=None,
                                               study_name=None, overrides=[], **kw)
    outcomes = run_worker(study, sp, sweep_dir=sweep_dir, recipe=meta["recipe"], overrides=[], trials=trials, pm=pm,
                          log=lambda _m: None)
    return sweep_dir, study, outcomes


def _space_error(tmp_path, text, recipe_path=None):
    space = tmp_path / "bad.toml"
    space.write_text(text)
    recipe_path = recipe_path or write_toy_recipe(tmp_path)
    with pytest.raises(RecipeError) as err:
        prepare_sweep(str(recipe_path), space, pm=get_plugin_manager(), out=tmp_path / "s", storage=None,
                      study_name=None, overrides=[])
    return str(err.value)


# ------------------------------------------------------------------------------------------ the space


@pytest.mark.parametrize("params, expected", [
    ('[params."train.lr"]\ntype = "float"\nlow = 1e-2\nhigh = 1e-3',
     "params['train.lr']: low must be smaller than high"),
    ('[params."train.lr"]\ntype = "float"\nlow = 0\nhigh = 1\nlog = true', "log = true needs low > 0"),
    ('[params."train.lr"]\ntype = "categorical"', "needs choices"),
    ('[params."train.lr"]\ntype = "float"\nlow = 1e-3\nhigh = 1e-1\nlogg = true', "unknown field; did you mean 'log'"),
    ('[params."train.lr"]\ntype = "number"\nlow = 1\nhigh = 2', "params['train.lr'].type"),
    ('[params."train.lr"]\ntype = "float"\nlow = 1e-3\nhigh = 1e-1\nwhen = { "train.optimizer" = "sgd" }',
     "'train.optimizer' is not a parameter defined before it"),
])
def test_space_errors_name_the_field_and_value(tmp_path, params, expected):
    text = '[objective]\nmetric = "knn/accuracy"\n' + params
    assert expected in _space_error(tmp_path, text)


def test_a_misspelt_recipe_path_is_an_error_before_any_trial(tmp_path):
    text = ('[objective]\nmetric = "knn/accuracy"\n[params."tasks.infonce.options.temprature"]\n'
            'type = "float"\nlow = 0.1\nhigh = 1.0\n')
    message = _space_error(tmp_path, text)
    assert "params['tasks.infonce.options.temprature']" in message and "did you mean 'temperature'" in message
    assert not (tmp_path / "s" / "trials").exists()


def test_the_objective_must_name_an_evaluator_of_the_recipe(tmp_path):
    text = '[objective]\nmetric = "probe/accuracy"\n[params."train.lr"]\ntype = "float"\nlow = 1e-3\nhigh = 1e-2\n'
    assert "objective.metric: the recipe has no evaluator 'probe' (it has knn)" in _space_error(tmp_path, text)


def test_the_grid_sampler_needs_finite_parameters(tmp_path):
    text = ('[objective]\nmetric = "knn/accuracy"\n[sampler]\ntype = "grid"\n[params."train.lr"]\ntype = "float"\n'
            'low = 1e-3\nhigh = 1e-2\n')
    assert "the grid sampler needs a finite parameter" in _space_error(tmp_path, text)


def test_conditional_and_structured_choices(tmp_path):
    params = """
[params."train.optimizer"]
type = "categorical"
choices = ["adamw", "sgd"]
[params."train.optimizer_options.momentum"]
type = "float"
low = 0.8
high = 0.95
when = { "train.optimizer" = "sgd" }
[params."augmentations.views.options.std"]
type = "categorical"
choices = [0.2, 0.4]
"""
    recipe_path, space = _setup(tmp_path, params=params, sampler="random", pruner="none")
    sweep_dir, study, outcomes = _sweep(tmp_path, recipe_path, space, trials=6)
    assert all(o.state == "complete" for o in outcomes), outcomes
    for o in outcomes:  # momentum exists exactly when the optimizer is sgd
        assert ("train.optimizer_options.momentum" in o.params) == (o.params["train.optimizer"] == "sgd"), o.params
        saved = json.loads((sweep_dir / f"trials/trial-{o.number:04d}/recipe.json").read_text())["recipe"]
        assert saved["train"]["optimizer"] == o.params["train.optimizer"]
        assert saved["augmentations"]["views"]["options"]["std"] == o.params["augmentations.views.options.std"]
    assert {o.params["train.optimizer"] for o in outcomes} == {"adamw", "sgd"}


# ------------------------------------------------------------------------------------------ trials


def test_each_trial_is_a_run_and_the_best_recipe_is_written(tmp_path):
    recipe_path, space = _setup(tmp_path, pruner="none")
    run = cli("sweep", str(recipe_path), "--space", str(space), "--trials", "5", "--out", str(tmp_path / "sweep"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.count("-> knn/accuracy = ") == 5, run.stderr
    study, meta = load_study(tmp_path / "sweep")
    assert len(study.trials) == 5 and meta["objective"] == {"metric": "knn/accuracy", "direction": "maximize"}
    for t in study.trials:  # a normal run directory per trial, its objective from its own final evaluation
        run_dir = tmp_path / "sweep" / t.user_attrs["run_dir"]
        evals = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert [r for r in evals if r["kind"] == "eval"][-1]["knn/accuracy"] == t.value
        assert (run_dir / "checkpoints" / "latest").is_file()
    best = tmp_path / "sweep" / "best.toml"
    loaded = load_recipe(str(best), get_plugin_manager().registry)  # the written recipe is valid
    assert loaded.recipe.train.lr == pytest.approx(study.best_params["train.lr"])
    assert loaded.recipe.evaluators["knn"].every == 10  # the space's fixed fields are in it
    shown = cli("sweep", "show", str(tmp_path / "sweep"), "--json")
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert info["best"][0]["number"] == study.best_trial.number and info["counts"] == {"complete": 5}
    assert set(info["importances"]) == {"train.lr", "tasks.infonce.options.temperature"}


def test_a_failed_or_diverged_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    params = '[params."train.lr"]\ntype = "categorical"\nchoices = [1e30, 3e-3, 1e-3]\n'
    recipe_path, space = _setup(tmp_path, params=params, sampler="grid", pruner="none")
    sweep_dir, study, outcomes = _sweep(tmp_path, recipe_path, space, trials=3)
    states = {o.params["train.lr"]: o.state for o in outcomes}
    assert states == {1e30: "failed", 3e-3: "complete", 1e-3: "complete"}, outcomes
    failed = next(t for t in study.trials if t.params["train.lr"] == 1e30)
    assert failed.state.name == "FAIL" and "non-finite" in failed.user_attrs["error"]


def test_pruned_trials_stop_within_one_evaluation_interval(tmp_path):
    params = '[params."train.lr"]\ntype = "categorical"\nchoices = [3e-3, 1e-6, 2e-6, 3e-6]\n'
    recipe_path, space = _setup(tmp_path, params=params, sampler="grid", max_steps=60)
    sweep_dir, study, outcomes = _sweep(tmp_path, recipe_path, space, trials=4)
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned, [(o.params, o.state) for o in outcomes]
    for t in pruned:  # its evaluation was below the median of the earlier trials' at the same step
        step, value = t.last_step, t.intermediate_values[t.last_step]
        earlier = sorted(o.intermediate_values[step] for o in study.trials if o.number < t.number
                         and step in o.intermediate_values)
        assert earlier and value < earlier[len(earlier) // 2] + 1e-12, (value, earlier)
        records = [json.loads(line) for line in (sweep_dir / t.user_attrs["run_dir"] / "metrics.jsonl").open()]
        last_eval = max(r["step"] for r in records if r["kind"] == "eval")
        assert t.user_attrs["steps"] == last_eval == t.last_step < 60  # stopped right after that evaluation


@pytest.mark.parametrize("sampler", ["random", "cmaes"])
def test_other_samplers(tmp_path, sampler):
    recipe_path, space = _setup(tmp_path, sampler=sampler, pruner="hyperband")
    _, study, outcomes = _sweep(tmp_path, recipe_path, space, trials=4)
    assert len(outcomes) == 4 and all(o.state in ("complete", "pruned") for o in outcomes)
    assert len({o.params["train.lr"] for o in outcomes}) == 4


# ------------------------------------------------------------------------------------------ shared studies


@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_two_workers_share_one_study_without_duplicated_trials(tmp_path, storage):
    recipe_path, space = _setup(tmp_path, pruner="none", max_steps=150)
    url = f"journal:{tmp_path / 'journal.log'}" if storage == "journal" else f"sqlite:///{tmp_path / 'shared.db'}"
    run = cli("sweep", str(recipe_path), "--space", str(space), "--trials", "8", "--jobs", "2",
              "--storage", url, "--out", str(tmp_path / "sweep"))
    assert run.returncode == 0, run.stderr[-3000:]
    study, _ = load_study(tmp_path / "sweep")
    trials = study.trials
    assert len(trials) == 8 and sorted(t.number for t in trials) == list(range(8))
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers ran trials
    run_dirs = [t.user_attrs["run_dir"] for t in trials]
    assert len(set(run_dirs)) == 8
    for d in run_dirs:  # each trial trained once, by one worker: one run, no resume in its history
        kinds = [json.loads(line)["kind"] for line in (tmp_path / "sweep" / d / "metrics.jsonl").open()]
        assert "resume" not in kinds


def test_a_killed_sweep_resumes_its_interrupted_trial(tmp_path):
    recipe_path, space = _setup(tmp_path, pruner="none", max_steps=2000, checkpoint_every=100, log_every=50)
    args = [sys.executable, "-m", "selfsup", "sweep", str(recipe_path), "--space", str(space), "--trials", "1",
            "--out", str(tmp_path / "sweep")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    checkpoints = tmp_path / "sweep" / "trials" / "trial-0000" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(checkpoints.glob("step-*"))) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert len(list(checkpoints.glob("step-*"))) >= 1, "the first trial never saved a checkpoint"
    again = cli("sweep", str(recipe_path), "--space", str(space), "--trials", "1", "--out", str(tmp_path / "sweep"),
                timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "trial 0: its worker stopped; queued again" in again.stderr
    study, _ = load_study(tmp_path / "sweep")
    states = {t.number: (t.state.name, t.user_attrs.get("retried"), t.user_attrs.get("retry_of")) for t in study.trials}
    assert states == {0: ("FAIL", True, None), 1: ("COMPLETE", None, 0)}, states  # the retry is the 1 trial
    retry = study.trials[1]
    assert retry.user_attrs["run_dir"] == "trials/trial-0000" and retry.params == study.trials[0].params
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "sweep/trials/trial-0000/metrics.jsonl").open()]
    assert "resume" in kinds  # continued from its checkpoint, not restarted


def test_a_sweep_folder_refuses_another_space(tmp_path):
    recipe_path, space = _setup(tmp_path, pruner="none")
    _sweep(tmp_path, recipe_path, space, trials=1)
    space.write_text(space.read_text().replace("high = 3e-2", "high = 1e-1"))
    from selfsup.sweep.study import SweepError

    with pytest.raises(SweepError, match="holds a sweep with another space"):
        prepare_sweep(str(recipe_path), space, pm=get_plugin_manager(), out=tmp_path / "sweep", storage=None,
                      study_name=None, overrides=[])


def test_load_space_reads_the_shipped_examples():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spaces = sorted(root.glob("plugins/*/src/*/sweeps/*.toml"))
    assert spaces, "no shipped search spaces"
    for path in spaces:
        space, _ = load_space(str(path))
        assert space.params


def test_sigterm_saves_the_running_trial_and_queues_it_again(tmp_path):
    recipe_path, space = _setup(tmp_path, pruner="none", max_steps=2000, log_every=50)
    proc = subprocess.Popen([sys.executable, "-m", "selfsup", "sweep", str(recipe_path), "--space", str(space),
                             "--trials", "3", "--out", str(tmp_path / "sweep")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "sweep" / "trials" / "trial-0000" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.is_file() and metrics.stat().st_size > 0):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err[-3000:]
    assert "trial 0 is queued again: run the same `selfsup sweep` command to go on" in err
    study, _ = load_study(tmp_path / "sweep")
    first, queued = study.trials
    assert first.state.name == "FAIL" and first.user_attrs["retried"] and "SIGTERM" in first.user_attrs["error"]
    assert queued.state.name == "WAITING" and queued.user_attrs["run_dir"] == "trials/trial-0000"
    assert list((tmp_path / "sweep" / "trials" / "trial-0000" / "checkpoints").glob("step-*"))  # saved


def test_a_resumed_sweep_does_not_replay_the_first_parameters(tmp_path):
    recipe_path, space = _setup(tmp_path, sampler="random", pruner="none")
    _, _, first = _sweep(tmp_path, recipe_path, space, trials=3)
    _, study, more = _sweep(tmp_path, recipe_path, space, trials=6)  # the same folder, reopened
    assert [o.number for o in more] == [3, 4, 5]
    lrs = [t.params["train.lr"] for t in study.trials]
    assert len(set(lrs)) == 6, lrs
