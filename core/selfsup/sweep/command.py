"""``selfsup sweep``: hyper-parameter search on Optuna (``sweep RECIPE ...``, ``sweep show DIR``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

EXIT_PREEMPTED = 75  # as `selfsup train`: stopped on a signal, resumable


class _DefaultRun(click.Group):
    """``selfsup sweep RECIPE ...`` means ``selfsup sweep run RECIPE ...``; ``show`` is the other command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_DefaultRun)
def sweep() -> None:
    """Search hyper-parameters with Optuna: every trial is a normal run of RECIPE with values drawn
    from SPACE.toml, pruned early when its evaluations lag (docs/sweeps.md).

    \b
    selfsup sweep RECIPE --space SPACE.toml --trials N [--jobs J] [--storage URL] [--out DIR]
    selfsup sweep show DIR"""


@sweep.command(name="run")
@click.argument("recipe")
@click.option("--space", "space_path", required=True,
              help="The search space: a TOML file (objective, sampler, pruner, fixed fields, params) or the name of "
                   "one a plugin ships (simclr-digits, wav2vec2-quickstart).")
@click.option("--trials", type=click.IntRange(min=1), required=True,
              help="Trials in the study in all (all workers together; a resumed sweep counts those it has).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes on this machine, sharing the study (and the CPU cores).")
@click.option("--storage", default=None,
              help="Optuna storage shared by workers: an RDB URL (sqlite:///f.db, postgresql://...) or journal:PATH. "
                   "Default: sqlite in the sweep folder.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The sweep folder. Default: runs/sweep-<recipe name>.")
@click.option("--study", "study_name", default=None, help="Study name in the storage. Default: the folder's name.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe field in every trial.")
@click.option("--timeout", "timeout_s", type=float, default=None, help="Start no trial after this many seconds.")
@click.option("--worker-index", type=int, default=0, hidden=True)
def run(recipe: str, space_path: str, trials: int, jobs: int, storage: str | None, out: Path | None,
        study_name: str | None, overrides: tuple[str, ...], timeout_s: float | None, worker_index: int) -> None:
    """Run (or continue) a sweep of RECIPE over SPACE.toml."""
    import optuna

    from selfsup.cli import _fail, _pm
    from selfsup.recipe import RecipeError
    from selfsup.sweep.prepare import prepare_sweep
    from selfsup.sweep.study import SweepError
    from selfsup.sweep.worker import SweepInterrupted, run_worker, stderr_log

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials are reported by the worker, with the error
    pm = _pm()
    try:
        sweep_dir, study, space, meta = prepare_sweep(
            recipe, space_path, pm=pm, out=out, storage=storage, study_name=study_name, overrides=list(overrides),
            worker=worker_index, workers=jobs if worker_index == 0 else max(jobs, worker_index + 1))
    except (RecipeError, SweepError) as err:
        _fail(str(err))
    if worker_index == 0:
        stderr_log(f"sweep {meta['study']} in {sweep_dir}: {trials} trials, {space.objective.metric} "
                   f"({space.objective.resolved_direction()}), sampler {space.sampler.type}, pruner "
                   f"{space.pruner.type}, storage {meta['storage']}")
    if jobs > 1 and worker_index == 0:
        code = _run_workers(jobs, sweep_dir, meta["storage"])
        if code:
            sys.exit(code)
    else:
        try:
            run_worker(study, space, sweep_dir=sweep_dir, recipe=meta["recipe"], overrides=list(overrides),
                       trials=trials, pm=pm, log=stderr_log, timeout_s=timeout_s)
        except SweepInterrupted as err:
            _fail(str(err), EXIT_PREEMPTED)
    if worker_index == 0:
        _print_summary(sweep_dir, storage, top=5)


def _run_workers(jobs: int, sweep_dir: Path, storage: str) -> int:
    """``jobs`` copies of this command as worker processes (index 1..jobs), each with its share of the
    cores; a SIGTERM to this process reaches them all."""
    import signal

    from selfsup.sweep.worker import thread_env

    base, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg in ("--jobs", "--worker-index", "--storage", "--out"):
            skip = True
            continue
        if arg.startswith(("--jobs=", "--worker-index=", "--storage=", "--out=")):
            continue
        base.append(arg)
    if base and base[0] == "sweep":
        base = base[1:]
    if base and base[0] != "run":
        base = ["run", *base]
    env = thread_env(jobs)
    children = [subprocess.Popen([sys.executable, "-m", "selfsup", "sweep", *base, "--out", str(sweep_dir),
                                  "--storage", storage, "--jobs", "1", "--worker-index", str(i)], env=env)
                for i in range(1, jobs + 1)]

    def relay(signum: int, _frame: Any) -> None:
        for child in children:
            child.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, relay)
    try:
        codes = [child.wait() for child in children]
    finally:
        signal.signal(signal.SIGTERM, previous)
    return next((c for c in codes if c), 0)


@sweep.command()
@click.argument("sweep_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="Best trials to list.")
@click.option("--storage", default=None, help="The storage, when it is not the one recorded in sweep.json.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def show(sweep_dir: Path, top: int, storage: str | None, as_json: bool) -> None:
    """The best trials of the sweep in SWEEP_DIR, its best recipe (written to SWEEP_DIR/best.toml)
    and the parameters' importances."""
    from selfsup.cli import _fail

    try:
        _print_summary(sweep_dir, storage, top=top, as_json=as_json)
    except Exception as err:  # noqa: BLE001 - SweepError, RecipeError, storage errors: one line
        _fail(str(err).splitlines()[0] if str(err) else type(err).__name__)


def _print_summary(sweep_dir: Path, storage: str | None, *, top: int, as_json: bool = False) -> None:
    import optuna
    from rich.table import Table

    from selfsup.cli import _console, _pm
    from selfsup.sweep.show import fmt, short_names, summary, write_best
    from selfsup.sweep.study import load_study, space_of

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, meta = load_study(sweep_dir, storage)
    space = space_of(meta)
    info = summary(study, space, top=top)
    best_path = None
    if info["best"]:
        best_path = write_best(sweep_dir, study, meta, space, _pm().registry)
    if as_json:
        click.echo(json.dumps({**info, "best_recipe": str(best_path) if best_path else None}, indent=2, default=str))
        return
    console = _console()
    counts = ", ".join(f"{n} {state}" for state, n in sorted(info["counts"].items()))
    console.print(f"sweep {meta['study']}: {counts or 'no trials yet'}")
    table = Table(title=f"best trials ({space.objective.metric}, {space.objective.resolved_direction()})",
                  title_justify="left")
    names = short_names(list(space.params))
    for column in ("trial", "value", *names.values(), "seconds", "run"):
        table.add_column(column, justify="left" if column == "run" else "right", no_wrap=column == "run")
    for r in info["best"]:
        table.add_row(str(r["number"]), fmt(r["value"]), *(fmt(r["params"].get(p)) for p in space.params),
                      f"{r['seconds']:.0f}" if r["seconds"] is not None else "", str(r["run_dir"] or ""))
    console.print(table)
    for r in info["problems"]:
        console.print(f"trial {r['number']} {r['state']}: {r['error'] or ('at step ' + str(r['pruned_at']))}")
    if isinstance(info["importances"], dict):
        console.print("importances: " + ", ".join(f"{names.get(k, k)} {v:.2f}" for k, v in info["importances"].items()))
    else:
        console.print(info["importances"])
    if best_path is not None:
        console.print(f"best recipe: {best_path} (train it: selfsup train {best_path})")
