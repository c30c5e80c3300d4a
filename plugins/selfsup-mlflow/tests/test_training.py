"""End to end: tiny runs trained with the plugin active, in this process (``selfsup.train``) and
through the command line, then the MLflow store read back with ``MlflowClient`` and compared with
what the core itself wrote (``metrics.jsonl``)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import warnings

import pytest
from conftest import cli_command
from mlflow import MlflowClient

import selfsup
import selfsup_mlflow as plugin


def store(path):
    return MlflowClient(f"sqlite:///{path.as_posix()}")


def records(run_dir, kind):
    """The core's own records of ``kind`` (``train``/``eval``), after the last resume marker's cut."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == kind]


def history(client, run_id, key):
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def test_a_run_is_logged_with_params_metrics_evaluations_status_and_files(tmp_path, write_recipe, monkeypatch,
                                                                          runs_store):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # artifacts go beside the store, not to ./mlruns
    result = selfsup.train(write_recipe(), progress=False)
    assert result.status == "completed" and result.step == 6
    run_dir = tmp_path / "runs" / "tiny"

    client = store(tmp_path / "runs" / "mlflow.db")
    experiment = client.get_experiment_by_name("tiny")  # the recipe's name
    (logged,) = client.search_runs([experiment.experiment_id])
    run_id = logged.info.run_id
    assert json.loads((run_dir / "mlflow.json").read_text())["run_id"] == run_id
    assert logged.info.status == "FINISHED" and logged.info.run_name == "tiny"

    params = logged.data.params
    assert params["train.max_steps"] == "6" and params["train.lr"] == "0.01"
    assert params["tasks.classify.type"] == "finetune" and params["backbones.mlp.options.hidden_dims"] == "[16]"
    tags = logged.data.tags
    assert tags["selfsup.device"] == "cpu" and tags["selfsup.world_size"] == "1"
    assert int(tags["selfsup.parameters"]) > 0 and tags["selfsup.status"] == "completed"
    assert tags["selfsup.checkpoint"].endswith("step-00000006") and tags["selfsup.checkpoint_step"] == "6"

    train = records(run_dir, "train")
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    for key in ("loss", "lr", "loss/classify"):
        assert history(client, run_id, key) == [(r["step"], r[key]) for r in train], key
    evals = records(run_dir, "eval")
    assert [r["step"] for r in evals] == [2, 4, 6]  # every 2 steps, and at the end
    assert history(client, run_id, "knn/accuracy") == [(r["step"], r["knn/accuracy"]) for r in evals]

    files = {a.path for a in client.list_artifacts(run_id)}
    assert {"recipe.json", "metrics.jsonl"} <= files
    local = client.download_artifacts(run_id, "metrics.jsonl", str(tmp_path / "download"))
    assert open(local).read() == (run_dir / "metrics.jsonl").read_text()
    assert not (elsewhere / "mlruns").exists() and not (elsewhere / "mlflow.db").exists()


def test_raising_max_steps_on_resume_continues_the_same_mlflow_run(tmp_path, write_recipe, runs_store):
    path = write_recipe(max_steps=4, checkpoint_every=2)
    assert selfsup.train(path).status == "completed"
    run_dir = tmp_path / "runs" / "tiny"
    first = json.loads((run_dir / "mlflow.json").read_text())["run_id"]

    resumed = selfsup.train(path, overrides={"train.max_steps": 8}, resume=True)
    assert resumed.status == "completed" and resumed.step == 8
    assert json.loads((run_dir / "mlflow.json").read_text())["run_id"] == first
    client = store(tmp_path / "runs" / "mlflow.db")
    (logged,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert logged.info.run_id == first and logged.info.status == "FINISHED"
    assert [s for s, _ in history(client, first, "loss")] == list(range(1, 9))
    assert logged.data.params["train.max_steps"] == "4"  # MLflow params never change; the change is a tag
    assert logged.data.tags["changed/train.max_steps"] == "4 -> 8 (resumed at step 4)"
    assert logged.data.tags["selfsup.resumed_from_step"] == "4"


@pytest.mark.slow
def test_sigterm_then_resume_on_the_command_line_keeps_one_mlflow_run(tmp_path, write_recipe):
    """Also the one test where the plugin creates its store from nothing."""
    path = write_recipe(max_steps=100_000, eval_every=0, checkpoint_every=0)
    run_dir = tmp_path / "runs" / "tiny"
    proc = subprocess.Popen(cli_command("train", str(path), "--no-progress"), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        metrics = run_dir / "metrics.jsonl"
        while not (metrics.is_file() and '"kind": "train"' in metrics.read_text()):  # training has begun
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    client = store(tmp_path / "runs" / "mlflow.db")
    run_id = json.loads((run_dir / "mlflow.json").read_text())["run_id"]
    stopped = client.get_run(run_id)
    assert stopped.info.status == "KILLED" and stopped.data.tags["selfsup.status"] == "preempted", output
    step = int(stopped.data.tags["selfsup.checkpoint_step"])  # the checkpoint written on SIGTERM

    res = subprocess.run(cli_command("train", str(path), "--resume", "--no-progress",
                                     "--set", f"train.max_steps={step + 2}"),
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads((run_dir / "mlflow.json").read_text())["run_id"] == run_id
    (logged,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert logged.info.run_id == run_id and logged.info.status == "FINISHED"
    assert [s for s, _ in history(client, run_id, "loss")] == list(range(1, step + 3))


def test_a_failing_tracker_warns_once_and_training_goes_on(tmp_path, write_recipe, monkeypatch):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    monkeypatch.setenv("SELFSUP_MLFLOW_URI", f"sqlite:///{not_a_dir.as_posix()}/mlflow.db")
    with pytest.warns(plugin.MlflowLoggingWarning, match="starting the MLflow run failed") as caught:
        result = selfsup.train(write_recipe())
    assert result.status == "completed" and result.step == 6
    assert len([w for w in caught if w.category is plugin.MlflowLoggingWarning]) == 1
    assert not (tmp_path / "runs" / "tiny" / "mlflow.json").exists()


def test_an_error_mid_run_stops_the_logging_but_still_ends_the_mlflow_run(tmp_path, write_recipe, monkeypatch,
                                                                          runs_store):
    calls = []
    log_batch = MlflowClient.log_batch

    def flaky(self, run_id, metrics=(), *args, **kwargs):
        steps = {m.step for m in metrics}
        calls.append(steps)
        if 3 in steps:
            raise ConnectionError("tracking server went away")
        return log_batch(self, run_id, metrics, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", flaky)
    with pytest.warns(plugin.MlflowLoggingWarning, match="metrics of step 3 failed .*went away") as caught:
        result = selfsup.train(write_recipe(eval_every=0))
    assert result.status == "completed" and result.step == 6
    assert len([w for w in caught if w.category is plugin.MlflowLoggingWarning]) == 1
    assert calls[-1] == {3}  # nothing was sent after the error
    client = store(tmp_path / "runs" / "mlflow.db")
    logged = client.get_run(json.loads((tmp_path / "runs" / "tiny" / "mlflow.json").read_text())["run_id"])
    assert logged.info.status == "FINISHED"  # the run is still ended, not left RUNNING
    assert [s for s, _ in history(client, logged.info.run_id, "loss")] == [1, 2]


def test_runs_one_after_another_in_one_process_each_get_their_own_run_and_the_uris_are_honoured(
        tmp_path, write_recipe, monkeypatch, new_store):
    monkeypatch.setenv("SELFSUP_MLFLOW_EXPERIMENT", "sweep")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", new_store(tmp_path / "a.db"))
    selfsup.train(write_recipe("one", max_steps=3))
    selfsup.train(write_recipe("two", max_steps=5))
    monkeypatch.setenv("SELFSUP_MLFLOW_URI", new_store(tmp_path / "b.db"))  # wins over MLFLOW_TRACKING_URI
    selfsup.train(write_recipe("three", max_steps=2))
    assert not (tmp_path / "runs" / "mlflow.db").exists()

    a, b = store(tmp_path / "a.db"), store(tmp_path / "b.db")
    runs = a.search_runs([a.get_experiment_by_name("sweep").experiment_id], order_by=["attributes.start_time"])
    assert [r.info.run_name for r in runs] == ["one", "two"]
    for run, name in zip(runs, ["one", "two"]):
        train = records(tmp_path / "runs" / name, "train")
        assert history(a, run.info.run_id, "loss") == [(r["step"], r["loss"]) for r in train]
    (third,) = b.search_runs([b.get_experiment_by_name("sweep").experiment_id])
    assert third.info.run_name == "three" and [s for s, _ in history(b, third.info.run_id, "loss")] == [1, 2]


def test_disabled_it_writes_nothing(tmp_path, write_recipe, monkeypatch):
    monkeypatch.setenv("SELFSUP_MLFLOW", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error", plugin.MlflowLoggingWarning)
        result = selfsup.train(write_recipe())
    assert result.status == "completed"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["tiny"]
    assert not (tmp_path / "runs" / "tiny" / "mlflow.json").exists()
