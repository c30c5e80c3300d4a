"""The report of a sweep: a folder holding ``sweep.json`` (written by ``selfsup sweep``) whose trials
are runs under ``trials/trial-NNNN/`` and whose optuna study is in ``storage``.

``sweep.json``: ``{"study", "storage" (an optuna storage URL, default ``sqlite:///<sweep>/study.db``,
or ``journal:<path>`` for a journal file), "recipe", "objective": {"metric", "direction"}, "space",
"sampler", "pruner"}``. Each optuna trial has the user attribute ``run_dir``, and ``error`` when it failed.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

from selfsup import __version__
from selfsup.report import REPORT_FILE, html
from selfsup.report.figures import png
from selfsup.report.sections import Section

BEST_ROWS = 10


def storage_path(text: str, sweep_dir: Path) -> Path:
    """A storage file path as recorded: absolute, else relative to the folder ``selfsup sweep`` ran in
    (tried first, from here) or to the sweep folder."""
    path = Path(text).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return Path(sweep_dir) / path


def load_study(sweep_dir: Path, spec: dict[str, Any]) -> Any:
    """The sweep's optuna study, read from its ``storage`` without creating anything: a missing
    journal or SQLite file is an error, not a new empty study."""
    import optuna

    storage = str(spec.get("storage") or f"sqlite:///{Path(sweep_dir).resolve() / 'study.db'}")
    if storage.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = storage_path(storage[len("journal:"):], sweep_dir)
        if not path.is_file():
            raise FileNotFoundError(f"the sweep's journal {path} does not exist")
        backend: Any = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    elif storage.startswith("sqlite:///"):
        path = storage_path(storage[len("sqlite:///"):], sweep_dir)
        if not path.is_file():
            raise FileNotFoundError(f"the sweep's study database {path} does not exist")
        backend = f"sqlite:///{path.resolve()}"
    else:
        backend = storage
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=spec.get("study"), storage=backend)


def sweep_report(sweep_dir: Path, out: Path) -> str:
    """The HTML report of ``sweep_dir``; ``out`` is where it is written (trial report links are relative to it)."""
    sweep_dir = Path(sweep_dir)
    spec = json.loads((sweep_dir / "sweep.json").read_text())
    study = load_study(sweep_dir, spec)
    trials = study.get_trials(deepcopy=False)
    objective = spec.get("objective") or {}
    direction = str(objective.get("direction") or study.direction.name.lower())
    space = spec.get("space") if isinstance(spec.get("space"), dict) else {}
    sections: list[Section] = [("Objective", overview(spec, trials, direction), ""),
                               ("Best trials", best(trials, direction, space, sweep_dir, Path(out)), ""),
                               ("Figures", plots(study, trials), ""),
                               ("Failed and pruned trials", unfinished(trials, space, sweep_dir, Path(out)), "")]
    subtitle = f"{sweep_dir.resolve()} · written {time.strftime('%Y-%m-%d %H:%M')} · selfsup {__version__}"
    banners = [html.banner("No trial has completed yet.")] if not completed(trials) else []
    return html.page(f"Sweep report: {spec.get('study') or sweep_dir.name}", subtitle, banners, sections)


def completed(trials: list[Any]) -> list[Any]:
    return [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]


def state_of(trial: Any) -> str:
    """``complete``, ``fail``, ``pruned``, ``running``... or ``retried`` (a failed trial run again)."""
    return "retried" if trial.user_attrs.get("retried") else trial.state.name.lower()


def overview(spec: dict[str, Any], trials: list[Any], direction: str) -> list[str]:
    """What is optimised, how, over which space, and how many trials ended how."""
    objective = spec.get("objective") or {}
    counts: dict[str, int] = {}
    for trial in trials:
        counts[state_of(trial)] = counts.get(state_of(trial), 0) + 1
    rows = [("objective", f"{direction} {objective.get('metric', '?')}"), ("recipe", spec.get("recipe")),
            ("overrides", " ".join(spec.get("overrides") or []) or None), ("sampler", spec.get("sampler")),
            ("pruner", spec.get("pruner")), ("study", spec.get("study")), ("storage", spec.get("storage")),
            ("trials", ", ".join(f"{n} {state}" for state, n in counts.items()) or "none")]
    parts = [html.table([{"": k, "value": v} for k, v in rows if v is not None], ["", "value"])]
    space = spec.get("space") or {}
    params = space.get("params") if isinstance(space.get("params"), dict) else None
    if params:
        parts += [html.heading("search space"), html.table([param_row(name, p) for name, p in params.items()],
                                                           ["parameter", "type", "values", "when"])]
    elif space:
        parts += [html.heading("search space"), html.table([{"": k, "value": v} for k, v in space.items()])]
    if space.get("fixed"):
        parts += [html.heading("fixed in every trial"),
                  html.table([{"field": k, "value": v} for k, v in space["fixed"].items()], ["field", "value"])]
    return parts


def param_row(name: str, param: Any) -> dict[str, Any]:
    """One searched parameter: its type, its range (log scale, step) or its choices, its condition."""
    if not isinstance(param, dict):
        return {"parameter": name, "values": param}
    if param.get("choices") is not None:
        values = ", ".join(json.dumps(c) for c in param["choices"])
    else:
        values = f"{param.get('low')} to {param.get('high')}" + (", log scale" if param.get("log") else "") + (
            f", step {param['step']}" if param.get("step") is not None else "")
    return {"parameter": name, "type": param.get("type"), "values": values, "when": param.get("when")}


def decoded_params(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    """The trial's parameters as recipe values: a categorical parameter whose choices are not plain
    scalars (lists, tables) is stored by optuna as JSON text, and decoded here."""
    params = space.get("params") if isinstance(space.get("params"), dict) else {}
    out = {}
    for name, value in trial.params.items():
        choices = (params.get(name) or {}).get("choices") if isinstance(params.get(name), dict) else None
        encoded = choices is not None and any(not isinstance(c, (str, int, float, bool)) for c in choices)
        out[name] = json.loads(value) if encoded and isinstance(value, str) else value
    return out


def duration(trial: Any) -> float | None:
    """Seconds the trial ran: the ``seconds`` it recorded, else its start and completion times."""
    if isinstance(trial.user_attrs.get("seconds"), (int, float)):
        return round(float(trial.user_attrs["seconds"]), 1)
    if trial.datetime_start is None or trial.datetime_complete is None:
        return None
    return round((trial.datetime_complete - trial.datetime_start).total_seconds(), 1)


def run_link(trial: Any, sweep_dir: Path, out: Path) -> Any:
    """A link to the trial's own run report when it has one, else its run folder's name."""
    run_dir = Path(trial.user_attrs.get("run_dir") or sweep_dir / "trials" / f"trial-{trial.number:04d}")
    run_dir = run_dir if run_dir.is_absolute() else sweep_dir / run_dir
    report = run_dir / REPORT_FILE
    if report.is_file():
        return html.link(Path(os.path.relpath(report.resolve(), out.resolve().parent)).as_posix(), run_dir.name)
    return run_dir.name if run_dir.is_dir() else ""


def params_text(trial: Any, space: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {json.dumps(v)}"
                     for k, v in decoded_params(trial, space).items())


def best(trials: list[Any], direction: str, space: dict[str, Any], sweep_dir: Path, out: Path) -> list[str]:
    """The best completed trials, best first."""
    done = sorted(completed(trials), key=lambda t: t.value, reverse=direction == "maximize")
    if not done:
        return [html.paragraph("No completed trial yet.", "note")]
    rows = [{"trial": t.number, "value": t.value, "state": t.state.name.lower(), "params": params_text(t, space),
             "duration (s)": duration(t), "run": run_link(t, sweep_dir, out)} for t in done[:BEST_ROWS]]
    more = f" (the best {BEST_ROWS} of {len(done)})" if len(done) > BEST_ROWS else ""
    return [html.paragraph(f"Completed trials by objective value{more}.", "note"), html.table(rows)]


def unfinished(trials: list[Any], space: dict[str, Any], sweep_dir: Path, out: Path) -> list[str]:
    """Failed and pruned trials with their error, or the last value reported before pruning (a failed
    trial that was run again, ``retried``, is left out)."""
    rows = []
    for t in trials:
        if t.state.name not in ("FAIL", "PRUNED") or t.user_attrs.get("retried"):
            continue
        last = max(t.intermediate_values.items(), default=None)
        reason = t.user_attrs.get("error") or (f"pruned at step {last[0]} (value {last[1]:.4g})" if last else "")
        rows.append({"trial": t.number, "state": t.state.name.lower(), "params": params_text(t, space),
                     "error or last value": reason, "run": run_link(t, sweep_dir, out)})
    return [html.table(rows)] if rows else [html.paragraph("None: every finished trial completed.", "note")]


def plots(study: Any, trials: list[Any]) -> list[str]:
    """Optimisation history, parallel coordinates and parameter importances (optuna's matplotlib
    plots), each replaced by a note when the trials cannot support it."""
    import matplotlib
    from optuna.visualization import matplotlib as ovm

    from selfsup.report.figures import use_agg

    use_agg()
    done = completed(trials)
    parts: list[str] = []
    wanted = [("optimisation history", ovm.plot_optimization_history, 1),
              ("parallel coordinates", ovm.plot_parallel_coordinate, 2),
              ("parameter importances", ovm.plot_param_importances, 2)]
    for title, plot, needed in wanted:
        if len(done) < needed:
            parts.append(html.paragraph(f"{title}: needs {needed} completed trial{'s' * (needed > 1)}, "
                                        f"the sweep has {len(done)}.", "note"))
            continue
        try:  # optuna sets pyplot's style: rc_context puts the caller's back afterwards
            with warnings.catch_warnings(), matplotlib.rc_context():
                warnings.simplefilter("ignore")  # optuna's ExperimentalWarning for its matplotlib plots
                axes = plot(study)
                figure = getattr(axes, "figure", None) or axes.flat[0].figure
                figure.set_size_inches(8, 4.5)
                parts.append(html.figure(png(figure), title, alt=title))
        except Exception as exc:  # noqa: BLE001 - e.g. importances of parameters that never varied
            parts.append(html.paragraph(f"{title}: not available ({type(exc).__name__}: {exc})", "note"))
    return parts
