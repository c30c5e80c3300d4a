"""The hooks called directly, as the training loop calls them, with a plain object standing in for
the loop's ``RunInfo`` (the plugin reads its fields only): no training, so the limits, the status
mapping and the artifact choices are checked quickly against a real SQLite store."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import pytest
from mlflow import MlflowClient

import selfsup
import selfsup_mlflow as plugin
from selfsup_mlflow.keys import MAX_PARAM_VALUE, MAX_PARAMS_OR_TAGS_PER_BATCH


@pytest.fixture(autouse=True)
def _store(runs_store):
    """Every test here logs to the default store of ``tmp_path/runs``."""


def fake_run(run_dir, *, name="fake", recipe=None, step=0):
    run_dir.mkdir(parents=True, exist_ok=True)
    return SimpleNamespace(name=name, run_dir=run_dir, recipe=recipe or {"seed": 0}, device="cpu", world_size=1,
                           total_steps=10, step=step, parameters=1234, extras={})


def the_run(tmp_path, name="fake"):
    """The only MLflow run of experiment ``name`` in the default store of runs under ``tmp_path/runs``."""
    client = MlflowClient(f"sqlite:///{tmp_path.as_posix()}/runs/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name(name).experiment_id])
    assert len(runs) == 1, runs
    return client, runs[0]


def test_a_large_recipe_is_logged_in_batches_with_long_values_cut(tmp_path):
    recipe = {"big": {f"k{i:03d}": i for i in range(250)}, "long": "x" * 10_000, "odd key:1": {"v": [1, 2]}}
    run = fake_run(tmp_path / "runs" / "r", recipe=recipe)
    plugin.on_train_start(run)
    plugin.on_train_end(run, "completed", {})
    _, logged = the_run(tmp_path)
    params = logged.data.params
    assert len(params) == 252 > MAX_PARAMS_OR_TAGS_PER_BATCH
    assert params["big.k249"] == "249" and params["odd key_1.v"] == "[1, 2]"
    assert params["long"] == "x" * MAX_PARAM_VALUE
    tags = logged.data.tags
    assert tags["selfsup.version"] == selfsup.__version__ and tags["selfsup.logger"].startswith("selfsup-mlflow ")
    assert (tags["selfsup.device"], tags["selfsup.world_size"], tags["selfsup.parameters"]) == ("cpu", "1", "1234")
    assert tags["selfsup.total_steps"] == "10" and tags["selfsup.recipe"] == "fake"
    assert logged.info.run_name == "r"


@pytest.mark.parametrize("status, expected", [("completed", "FINISHED"), ("preempted", "KILLED"),
                                              ("stopped", "KILLED"), ("diverged", "FAILED"), ("failed", "FAILED")])
def test_the_end_status_is_mapped_to_mlflows(tmp_path, status, expected):
    run = fake_run(tmp_path / "runs" / "r")
    plugin.on_train_start(run)
    plugin.on_train_end(run, status, {})
    _, logged = the_run(tmp_path)
    assert logged.info.status == expected and logged.data.tags["selfsup.status"] == status


def test_metrics_by_step_final_metrics_once_and_the_checkpoint_tag(tmp_path):
    run = fake_run(tmp_path / "runs" / "r")
    plugin.on_train_start(run)
    plugin.on_step_end(run, 1, {"loss": 2.0, "loss:x": 1.0, "ok": True})
    plugin.on_step_end(run, 2, {"loss": 1.5, "loss:x": 0.5})
    plugin.on_evaluation_end(run, 2, {"knn/accuracy": 0.75})
    plugin.on_checkpoint_saved(run, 2, str(run.run_dir / "checkpoints" / "step-00000002"))
    run.step = 2
    plugin.on_train_end(run, "completed", {"loss": 1.5, "knn/accuracy": 0.75, "extra/only_at_end": 3.0, "s": "x"})
    client, logged = the_run(tmp_path)
    history = {k: [(m.step, m.value) for m in client.get_metric_history(logged.info.run_id, k)]
               for k in ("loss", "loss_x", "knn/accuracy", "extra/only_at_end")}
    assert history == {"loss": [(1, 2.0), (2, 1.5)], "loss_x": [(1, 1.0), (2, 0.5)], "knn/accuracy": [(2, 0.75)],
                       "extra/only_at_end": [(2, 3.0)]}  # values already logged are not logged again at the end
    assert set(logged.data.metrics) == {"loss", "loss_x", "knn/accuracy", "extra/only_at_end"}
    assert logged.data.tags["selfsup.checkpoint"].endswith("step-00000002")
    assert logged.data.tags["selfsup.checkpoint_step"] == "2"


@pytest.mark.parametrize("choice, expected", [
    (None, {"recipe.json", "metrics.jsonl"}),
    ("export", {"recipe.json", "metrics.jsonl", "export"}),
    ("none", set()),
])
def test_the_run_files_are_uploaded_as_chosen(tmp_path, monkeypatch, choice, expected):
    if choice:
        monkeypatch.setenv("SELFSUP_MLFLOW_ARTIFACTS", choice)
    run = fake_run(tmp_path / "runs" / "r")
    (run.run_dir / "recipe.json").write_text("{}")
    (run.run_dir / "metrics.jsonl").write_text('{"kind": "train"}\n')
    (run.run_dir / "export" / "mlp").mkdir(parents=True)
    (run.run_dir / "export" / "mlp" / "model.bin").write_bytes(b"weights")
    plugin.on_train_start(run)
    plugin.on_train_end(run, "completed", {})
    client, logged = the_run(tmp_path)
    assert {a.path for a in client.list_artifacts(logged.info.run_id)} == expected
    if "export" in expected:
        assert [a.path for a in client.list_artifacts(logged.info.run_id, "export/mlp")] == ["export/mlp/model.bin"]
    stored = json.loads((run.run_dir / "mlflow.json").read_text())
    assert stored["run_id"] == logged.info.run_id
    assert logged.info.artifact_uri.startswith((tmp_path / "runs" / "mlartifacts").as_uri())


def test_an_unknown_artifact_choice_is_one_warning(tmp_path, monkeypatch, runs_store):
    monkeypatch.setenv("SELFSUP_MLFLOW_ARTIFACTS", "everything")
    run = fake_run(tmp_path / "runs" / "r")
    with pytest.warns(plugin.MlflowLoggingWarning, match="SELFSUP_MLFLOW_ARTIFACTS='everything'") as caught:
        plugin.on_train_start(run)
        plugin.on_step_end(run, 1, {"loss": 1.0})
        plugin.on_train_end(run, "completed", {})
    assert len([w for w in caught if w.category is plugin.MlflowLoggingWarning]) == 1
    assert MlflowClient(runs_store).get_experiment_by_name("fake") is None  # nothing was logged
    assert not (run.run_dir / "mlflow.json").exists()


def test_a_password_in_the_uri_is_not_written_to_the_run_directory():
    assert plugin.without_password("https://me:s3cret@host/path") == "https://me:***@host/path"
    assert plugin.without_password("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"


def test_resuming_without_a_stored_run_starts_a_new_one_and_says_from_where(tmp_path):
    run = fake_run(tmp_path / "runs" / "r", step=40)
    with warnings.catch_warnings():
        warnings.simplefilter("error", plugin.MlflowLoggingWarning)
        plugin.on_train_start(run)
        plugin.on_train_end(run, "completed", {})
    _, logged = the_run(tmp_path)
    assert logged.data.tags["selfsup.resumed_from_step"] == "40" and logged.info.status == "FINISHED"
