"""selfsup-mlflow: log selfsup training runs to MLflow, through the lifecycle events only.

``on_train_start`` creates an MLflow run (or continues the one a resumed selfsup run started: its id
is kept in ``<run_dir>/mlflow.json``) with the recipe as params and the run's description as tags;
``on_step_end`` and ``on_evaluation_end`` log metrics by step; ``on_checkpoint_saved`` tags the
newest checkpoint; ``on_train_end`` logs what is new among the final metrics, uploads the run's
files and ends the MLflow run with the status the selfsup run ended with.

Configured by environment variables (a recipe has no place for a plugin's settings):

* ``SELFSUP_MLFLOW=0`` turns it off (also ``false``, ``no``, ``off``);
* ``SELFSUP_MLFLOW_URI``, else ``MLFLOW_TRACKING_URI``, else ``sqlite:///<run_dir's parent>/mlflow.db``;
* ``SELFSUP_MLFLOW_EXPERIMENT``: the experiment (default: the recipe's name);
* ``SELFSUP_MLFLOW_ARTIFACTS``: ``files`` (default: recipe.json, metrics.jsonl, environment.json),
  ``export`` (those and the ``export/`` directory) or ``none``.

It talks to MLflow through ``MlflowClient`` with explicit run ids, never the fluent active run, so
runs trained one after another in one process (a sweep) each get their own MLflow run. MLflow is
imported on the first ``on_train_start``, so loading the plugin stays fast. A failing tracker never
stops training: the first error is reported as one :class:`MlflowLoggingWarning` and the run goes on
without MLflow.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit, urlunsplit

import selfsup
from selfsup_mlflow.keys import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_OR_TAGS_PER_BATCH,
    MAX_TAG_VALUE,
    chunks,
    numeric,
    recipe_params,
    text_value,
    unique_names,
)

__version__ = "0.1.0"

STATE_FILE = "mlflow.json"  # in the run directory: the MLflow run a resume continues
#: selfsup's end status -> MLflow's run status ("stopped": a plugin, e.g. a sweep's pruner, stopped it).
STATUS = {"completed": "FINISHED", "preempted": "KILLED", "stopped": "KILLED", "diverged": "FAILED", "failed": "FAILED"}
ARTIFACTS = {"none": (), "files": ("recipe.json", "metrics.jsonl", "environment.json")}
ARTIFACTS["export"] = (*ARTIFACTS["files"], "export")


class MlflowLoggingWarning(UserWarning):
    """Logging a run to MLflow failed; training goes on without MLflow."""


def enabled() -> bool:
    """Whether ``SELFSUP_MLFLOW`` leaves the plugin on (anything but ``0``, ``false``, ``no``, ``off``)."""
    return os.environ.get("SELFSUP_MLFLOW", "1").strip().lower() not in ("0", "false", "no", "off")


def tracking_uri(run_dir: Path) -> str:
    """``SELFSUP_MLFLOW_URI``, else ``MLFLOW_TRACKING_URI``, else a SQLite file beside the run
    directory (``<run_dir>/../mlflow.db``), which the runs of one output folder share."""
    uri = os.environ.get("SELFSUP_MLFLOW_URI") or os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{(Path(run_dir).resolve().parent / 'mlflow.db').as_posix()}"


def without_password(uri: str) -> str:
    """``uri`` with any password it holds (``https://user:secret@host``) masked, for files on disk."""
    parts = urlsplit(uri)
    if not parts.password:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))


def artifact_location(uri: str) -> str | None:
    """Where a new experiment of a SQLite store keeps its artifacts: ``mlartifacts/`` beside the
    database (MLflow's default, ``./mlruns``, would follow the current directory). ``None`` for
    other stores: a tracking server chooses."""
    path = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None
    if not path or path == ":memory:":
        return None
    return (Path(path).resolve().parent / "mlartifacts").as_uri()


def artifact_choice() -> tuple[str, ...]:
    """The run files ``SELFSUP_MLFLOW_ARTIFACTS`` asks to upload at the end."""
    value = os.environ.get("SELFSUP_MLFLOW_ARTIFACTS", "files").strip().lower() or "files"
    if value not in ARTIFACTS:
        raise ValueError(f"SELFSUP_MLFLOW_ARTIFACTS={value!r}: use one of {', '.join(ARTIFACTS)}")
    return ARTIFACTS[value]


def write_state(run_dir: Path, state: dict[str, Any]) -> None:
    """``<run_dir>/mlflow.json``, written atomically (a temporary file renamed over it)."""
    fd, tmp = tempfile.mkstemp(prefix=".mlflow-", suffix=".tmp", dir=run_dir)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, indent=2)
        os.replace(tmp, run_dir / STATE_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_state(run_dir: Path) -> dict[str, Any]:
    """What :func:`write_state` wrote (empty when there is no readable file)."""
    try:
        state = json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


class Tracker:
    """One selfsup run's MLflow run: the client, the run id and the last value logged of each metric."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.client: Any = None
        self.run_id: str | None = None
        self.artifacts: tuple[str, ...] = ()
        self.logged: dict[str, float] = {}  # metric -> the value last logged
        self.failed = False  # an MLflow call failed: nothing more is logged for this run

    def guard(self, what: str, call: Callable[..., Any], *args: Any, always: bool = False) -> None:
        """Run ``call(*args)``; the first error is one warning and ends the logging of this run
        (``always``: try even after an earlier error, e.g. to end the MLflow run)."""
        if (self.failed and not always) or (always and self.run_id is None):
            return
        try:
            call(*args)
        except Exception as err:  # an MLflow, database or network error must never stop training
            if not self.failed:
                detail = (str(err).strip().splitlines() or [""])[0][:300]
                warnings.warn(f"selfsup-mlflow: {what} failed ({type(err).__name__}: {detail}); "
                              f"{self.run_dir} trains on without MLflow logging", MlflowLoggingWarning, stacklevel=2)
            self.failed = True

    # ------------------------------------------------------------------------------------ start

    def start(self, run: Any) -> None:
        """Create the MLflow run, or continue the one ``mlflow.json`` names when selfsup resumes."""
        from mlflow import MlflowClient

        self.artifacts = artifact_choice()
        uri = tracking_uri(self.run_dir)
        self.client = MlflowClient(uri)
        previous = self._previous_run() if run.step > 0 else None
        if previous is not None:
            self.run_id = previous.info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            old_params = previous.data.params
        else:
            experiment = self._experiment(os.environ.get("SELFSUP_MLFLOW_EXPERIMENT") or run.name, uri)
            self.run_id = self.client.create_run(experiment, run_name=self.run_dir.name).info.run_id
            old_params = {}
        write_state(self.run_dir, {"run_id": self.run_id, "tracking_uri": without_password(uri)})

        params = recipe_params(run.recipe)
        new = {k: v for k, v in params.items() if k not in old_params}
        tags = {
            "selfsup.version": selfsup.__version__,
            "selfsup.logger": f"selfsup-mlflow {__version__}",
            "selfsup.recipe": run.name,
            "selfsup.run_dir": str(self.run_dir.resolve()),
            "selfsup.device": run.device,
            "selfsup.world_size": run.world_size,
            "selfsup.parameters": run.parameters,
            "selfsup.total_steps": run.total_steps,
        }
        if run.step > 0:
            tags["selfsup.resumed_from_step"] = run.step
        for key, value in params.items():  # MLflow params are immutable: a resume's recipe changes become tags
            if key in old_params and old_params[key] != value:
                tags[f"changed/{key}"] = f"{old_params[key]} -> {value} (resumed at step {run.step})"
        self.log(params=new, tags=tags)

    def _previous_run(self) -> Any:
        """The MLflow run ``mlflow.json`` names, if this store has it (not deleted)."""
        from mlflow.exceptions import MlflowException

        run_id = read_state(self.run_dir).get("run_id")
        if not isinstance(run_id, str):
            return None
        try:
            found = self.client.get_run(run_id)
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":  # another store, or removed from this one
                return None
            raise
        return found if found.info.lifecycle_stage == "active" else None

    def _experiment(self, name: str, uri: str) -> str:
        """The id of the experiment ``name``, created if needed (a concurrent creation is fine)."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=artifact_location(uri))
        except MlflowException:
            found = self.client.get_experiment_by_name(name)  # another process created it first
            if found is None:
                raise
            return found.experiment_id

    # ------------------------------------------------------------------------------------ logging

    def log(self, *, step: int = 0, metrics: Mapping[str, Any] | None = None,
            params: Mapping[str, str] | None = None, tags: Mapping[str, Any] | None = None) -> None:
        """One or more ``log_batch`` calls within MLflow's limits per call."""
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        values = [Metric(k, v, now, step) for k, v in numeric(metrics or {}).items()]
        for batch in chunks(values, MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=batch)
        self.logged.update({m.key: m.value for m in values})
        for batch in chunks([Param(k, v) for k, v in (params or {}).items()], MAX_PARAMS_OR_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=batch)
        named = unique_names((k, text_value(v, MAX_TAG_VALUE)) for k, v in (tags or {}).items())
        tag_list = [RunTag(k, v) for k, v in named.items()]
        for batch in chunks(tag_list, MAX_PARAMS_OR_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=batch)

    def finish(self, run: Any, status: str, metrics: Mapping[str, Any]) -> None:
        """The final metrics not logged yet (at the run's last step), the end status, the run's files."""
        fresh = {k: v for k, v in numeric(metrics).items() if not _same(self.logged.get(k), v)}
        tags = {"selfsup.status": status}
        if getattr(run, "stop_reason", None):
            tags["selfsup.stop_reason"] = run.stop_reason
        self.log(step=run.step, metrics=fresh, tags=tags)
        for name in self.artifacts:
            path = self.run_dir / name
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_path=name)
            elif path.is_file():
                self.client.log_artifact(self.run_id, str(path))


def _same(a: float | None, b: float) -> bool:
    return a == b or (a != a and b != b)  # NaN == NaN here: a NaN already logged is not new


_trackers: dict[str, Tracker] = {}  # run directory -> its tracker, from on_train_start to on_train_end


def _tracker(run: Any) -> Tracker | None:
    return _trackers.get(str(Path(run.run_dir).resolve()))


@selfsup.hookimpl
def on_train_start(run):
    """Create (or, on resume, continue) the MLflow run; log the recipe as params and the run's tags."""
    key = str(Path(run.run_dir).resolve())
    _trackers.pop(key, None)
    if not enabled():
        return
    tracker = _trackers[key] = Tracker(Path(run.run_dir))
    tracker.guard("starting the MLflow run", tracker.start, run)


@selfsup.hookimpl
def on_step_end(run, step, metrics):
    """Log the training metrics of ``step``."""
    tracker = _tracker(run)
    if tracker is not None:
        tracker.guard(f"logging the metrics of step {step}", lambda: tracker.log(step=step, metrics=metrics))


@selfsup.hookimpl
def on_evaluation_end(run, step, metrics):
    """Log the evaluation metrics (``<evaluator>/<metric>``) of ``step``."""
    tracker = _tracker(run)
    if tracker is not None:
        tracker.guard(f"logging the evaluation of step {step}", lambda: tracker.log(step=step, metrics=metrics))


@selfsup.hookimpl
def on_checkpoint_saved(run, step, path):
    """Tag the newest checkpoint's path and step."""
    tracker = _tracker(run)
    if tracker is not None:
        tags = {"selfsup.checkpoint": path, "selfsup.checkpoint_step": step}
        tracker.guard("tagging the checkpoint", lambda: tracker.log(tags=tags))


@selfsup.hookimpl
def on_train_end(run, status, metrics):
    """Log the final metrics and the run's files, then end the MLflow run with the mapped status."""
    tracker = _trackers.pop(str(Path(run.run_dir).resolve()), None)
    if tracker is None:
        return
    tracker.guard("logging the end of the run", tracker.finish, run, status, metrics)
    tracker.guard("ending the MLflow run", lambda: tracker.client.set_terminated(tracker.run_id,
                                                                                 STATUS.get(status, "FAILED")),
                  always=True)
