"""One sweep worker: ask Optuna for a trial, train it as a normal selfsup run, tell the result.

Each trial is a run in ``<sweep>/trials/trial-NNNN`` (its own checkpoints, metrics and ``log.txt``,
with every guarantee of ``selfsup train``). The objective's evaluations are reported to Optuna as
they happen (``on_evaluation_end``); when the pruner says so, the run is asked to stop after that
step (``run.request_stop``) and the trial is recorded as pruned. A trial that fails or diverges is
recorded as failed with its error; the sweep goes on.

Workers share the study through its storage and never run the same trial. A worker records a
heartbeat on its running trial; a trial whose worker died (a kill on this machine: its process is
gone; elsewhere: no heartbeat for ``GRACE_S``) is marked failed and queued again with the same
parameters and run directory, so the next trial resumes it from its newest checkpoint.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import selfsup
from selfsup.sweep.space import Space
from selfsup.sweep.study import trial_dir

HEARTBEAT_S = float(os.environ.get("SELFSUP_SWEEP_HEARTBEAT_S", "20"))
GRACE_S = float(os.environ.get("SELFSUP_SWEEP_GRACE_S", "120"))
HOST = socket.gethostname()


@dataclass
class TrialOutcome:
    number: int
    state: str  # "complete", "pruned", "failed", "preempted"
    value: float | None
    params: dict[str, Any]
    seconds: float
    message: str = ""


class SweepInterrupted(RuntimeError):
    """A SIGTERM/SIGINT stopped the sweep during a trial (its checkpoint was saved, it is queued again)."""


class Pruning:
    """The plugin (lifecycle events) that reports a trial's objective to Optuna and stops a pruned run."""

    def __init__(self, metric: str):
        self.metric = metric
        self.trial: Any = None
        self.pruned_at: int | None = None
        self.reported = 0

    @selfsup.hookimpl
    def on_evaluation_end(self, run: Any, step: int, metrics: dict[str, float]) -> None:
        if self.trial is None or self.metric not in metrics:
            return
        self.trial.report(float(metrics[self.metric]), step)
        self.reported += 1
        if self.trial.should_prune():
            self.pruned_at = step
            run.request_stop(f"trial {self.trial.number} pruned: {self.metric} = {metrics[self.metric]:.4g} at "
                             f"step {step} is worse than the pruner's threshold")


def finished_count(study: Any) -> int:
    """Trials that count against ``--trials``: all but those queued again after their worker died and
    their queued copies not yet started (each such pair counts once it runs)."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if not t.user_attrs.get("retried") and t.state.name != "WAITING")


def reap_stale(study: Any, log: Any) -> int:
    """Fail and queue again the running trials whose worker died; returns how many."""
    from optuna.trial import TrialState

    storage, reaped = study._storage, 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
        beat = float(t.user_attrs.get("heartbeat", 0) or (t.datetime_start.timestamp() if t.datetime_start else 0))
        dead_here = host == HOST and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid))
        if not dead_here and time.time() - beat < GRACE_S:
            continue
        try:  # attributes first (a finished trial takes none); only the worker that fails it queues it again
            storage.set_trial_user_attr(t._trial_id, "retried", True)
            storage.set_trial_user_attr(t._trial_id, "error", "its worker stopped (killed or lost); queued again")
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except Exception:  # noqa: BLE001 - another worker reaped it first
            continue
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.user_attrs.get("retry_of", t.number),
                                                  "run_dir": t.user_attrs.get("run_dir")})
        log(f"trial {t.number}: its worker stopped; queued again to resume from its run directory")
        reaped += 1
    return reaped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Heartbeat:
    """Records ``heartbeat`` (a timestamp) on the running trial every ``HEARTBEAT_S`` seconds."""

    def __init__(self, study: Any, trial: Any):
        self.storage, self.trial_id = study._storage, trial._trial_id
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name="selfsup-sweep-heartbeat")

    def _beat(self) -> None:
        while not self.stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):  # a finished trial or a busy database: try next time
                self.storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()


def run_worker(study: Any, space: Space, *, sweep_dir: Path, recipe: str, overrides: list[str], trials: int,
               pm: Any, log: Any = print, timeout_s: float | None = None) -> list[TrialOutcome]:
    """Run trials until the study holds ``trials`` of them (or ``timeout_s`` passed); returns this
    worker's outcomes. A SIGTERM/SIGINT saves the running trial's checkpoint, queues it again and
    raises :class:`SweepInterrupted`."""
    pruning = Pruning(space.objective.metric)
    pm.register(pruning, f"selfsup-sweep-{os.getpid()}-{id(pruning)}")
    outcomes: list[TrialOutcome] = []
    if space.sampler.type == "grid":  # a grid has so many points; more trials would repeat some
        trials = min(trials, math.prod(len(values) for values in space.grid().values()))
    start = time.monotonic()
    while True:
        reap_stale(study, log)
        if finished_count(study) >= trials:
            break
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            log(f"stopping: the sweep's time limit ({timeout_s:g} s) passed")
            break
        outcome = run_trial(study, space, sweep_dir=sweep_dir, recipe=recipe, overrides=overrides, pm=pm,
                            pruning=pruning)
        outcomes.append(outcome)
        log(describe(outcome, space.objective.metric))
        if outcome.state == "preempted":
            raise SweepInterrupted(f"{outcome.message}; trial {outcome.number} is queued again: run the same "
                                   f"`selfsup sweep` command to go on")
    return outcomes


class TrialFailed(Exception):
    """Raised from the objective so that Optuna records the trial as failed (its error is a user attribute)."""


def run_trial(study: Any, space: Space, *, sweep_dir: Path, recipe: str, overrides: list[str], pm: Any,
              pruning: Pruning) -> TrialOutcome:
    """Ask for one trial, train it in this process (its output in its run directory's ``log.txt``),
    and tell Optuna (through ``study.optimize``, which samplers such as the grid's expect)."""
    import optuna

    outcomes: list[TrialOutcome] = []

    def objective(trial: Any) -> float:
        outcome = train_trial(trial, study, space, sweep_dir=sweep_dir, recipe=recipe, overrides=overrides, pm=pm,
                              pruning=pruning)
        outcomes.append(outcome)
        if outcome.state == "complete":
            return outcome.value
        if outcome.state == "pruned":
            raise optuna.TrialPruned(outcome.message)
        trial.set_user_attr("error", outcome.message or outcome.state)
        if outcome.state == "preempted":  # queued again: resumes from its checkpoint at the next start
            trial.set_user_attr("retried", True)
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.user_attrs.get("retry_of", trial.number),
                                                          "run_dir": trial.user_attrs["run_dir"]})
        raise TrialFailed(outcome.message)

    study.optimize(objective, n_trials=1, catch=(TrialFailed,), gc_after_trial=True)
    return outcomes[0]


def train_trial(trial: Any, study: Any, space: Space, *, sweep_dir: Path, recipe: str, overrides: list[str], pm: Any,
                pruning: Pruning) -> TrialOutcome:
    """Train the trial's run (resumed when its run directory holds checkpoints: a trial queued again)."""
    from selfsup.engine.loop import train
    from selfsup.engine.preempt import Preempted
    from selfsup.recipe import load_recipe

    values = space.suggest(trial)
    run_dir = Path(sweep_dir) / trial.user_attrs["run_dir"] if trial.user_attrs.get("run_dir") else None
    run_dir = run_dir or trial_dir(sweep_dir, trial.number)
    trial.set_user_attr("run_dir", str(run_dir.relative_to(sweep_dir)))
    trial.set_user_attr("worker", f"{HOST}:{os.getpid()}")
    trial.set_user_attr("heartbeat", time.time())
    pruning.trial, pruning.pruned_at, pruning.reported = trial, None, 0
    started = time.monotonic()
    state, value, message = "failed", None, ""
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with Heartbeat(study, trial), open(run_dir / "log.txt", "a", encoding="utf-8") as out, \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            loaded = load_recipe(recipe, pm.registry, overrides,
                                 values={**space.fixed, **values, "output_dir": str(run_dir)})
            resume = (run_dir / "checkpoints").is_dir()
            result = train(loaded, pm, resume=resume, progress=False)
        trial.set_user_attr("steps", result.step)
        if result.status == "stopped" and pruning.pruned_at is not None:
            state, message = "pruned", f"pruned at step {pruning.pruned_at}"
        elif space.objective.metric not in result.evaluation:
            message = (f"the run reported no {space.objective.metric!r} (it reported "
                       f"{', '.join(sorted(result.evaluation)) or 'no evaluation'})")
        else:
            value = float(result.evaluation[space.objective.metric])
            state = "complete" if value == value else "failed"  # NaN: failed
            message = "" if state == "complete" else f"{space.objective.metric} is NaN"
    except Preempted as err:
        state, message = "preempted", str(err).splitlines()[0]
    except Exception as err:  # noqa: BLE001 - a failed trial never stops the sweep
        message = f"{type(err).__name__}: {err}".splitlines()[0][:500]
    finally:
        pruning.trial = None
    seconds = time.monotonic() - started
    trial.set_user_attr("seconds", round(seconds, 3))
    return TrialOutcome(trial.number, state, value, space.decode(trial.params), seconds, message)


def describe(outcome: TrialOutcome, metric: str) -> str:
    params = ", ".join(f"{k}={_short(v)}" for k, v in outcome.params.items())
    if outcome.state == "complete":
        result = f"{metric} = {outcome.value:.4g}"
    else:
        result = f"{outcome.state}: {outcome.message}" if outcome.message else outcome.state
    return f"trial {outcome.number} ({outcome.seconds:.0f} s) {params} -> {result}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def thread_env(jobs: int) -> dict[str, str]:
    """Environment for ``jobs`` worker processes sharing this machine's cores (unless set already)."""
    threads = str(max(1, (os.cpu_count() or 1) // max(1, jobs)))
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", threads)
    env.setdefault("MKL_NUM_THREADS", threads)
    return env


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
