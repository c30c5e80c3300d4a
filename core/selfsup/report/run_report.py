"""The report of one run: summary, warnings, evaluation beside its baselines, training and evaluation
curves, health diagnostics, plugin sections, the recipe and the environment."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from selfsup import __version__
from selfsup.report import html, records
from selfsup.report.figures import Panel, grid
from selfsup.report.sections import Section, plugin_sections
from selfsup.report.toml_text import recipe_toml
from selfsup.report_api import ReportRun, TrainedComponents


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file, or ``{}`` when it is absent or unreadable."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def load_components(run_dir: Path, pm: Any, device: str) -> tuple[TrainedComponents, Any]:
    """The run rebuilt with its best (else newest intact) checkpoint: components and the user's model."""
    from selfsup.model import load_trained, model_of

    built, recipe, base_dir, path = load_trained(run_dir, pm)
    built.model.eval().to(device)
    model = model_of(built, recipe, base_dir, path, run_dir, device)
    components = TrainedComponents(backbones=dict(built.model.backbones), tasks=dict(built.model.tasks),
                                   task_backbones={t: built.model.backbone_of(t) for t in built.model.tasks},
                                   data=dict(built.data), checkpoint=path, device=device)
    return components, model


def run_report(run_dir: Path, pm: Any, *, baseline: bool = False, device: str = "cpu") -> str:
    """The HTML report of ``run_dir``. ``baseline``: run ``selfsup eval --baseline`` first when the run
    has no ``baseline.json``."""
    from selfsup.engine.metrics import read_metrics
    from selfsup.evaluation import read_baseline

    run_dir = Path(run_dir)
    recipe = read_json(run_dir / "recipe.json").get("recipe") or {}
    history = read_metrics(run_dir)
    base, problem = read_baseline(run_dir), ""
    if base is None and baseline:
        base, problem = compute_baseline(run_dir, pm, device)
    run = ReportRun(path=run_dir, recipe=recipe, records=history, environment=read_json(run_dir / "environment.json"),
                    device=device, _loader=lambda: load_components(run_dir, pm, device))
    thresholds = ((recipe.get("train") or {}).get("health") or {}).get("thresholds")
    events = records.collapses(history, thresholds)
    banners = [html.banner(event.message()) for event in events]
    banners += [html.banner(text, "error") for text in divergence(history)]
    sections: list[Section] = [("Summary", summary(run), ""),
                               ("Evaluation", evaluation(run, base, problem), "")]
    sections += curves(run, events)
    sections += plugin_sections(pm, run)
    started = starting_weights(read_json(run_dir / "pretrained.json"))
    sections += [("Recipe", [html.pre(recipe_toml(recipe))], ""),
                 ("Environment", environment(run.environment) + started, "")]
    name = recipe.get("name") or run_dir.name
    subtitle = f"{run_dir.resolve()} · written {time.strftime('%Y-%m-%d %H:%M')} · selfsup {__version__}"
    return html.page(f"Run report: {name}", subtitle, banners, sections)


def compute_baseline(run_dir: Path, pm: Any, device: str) -> tuple[dict[str, Any] | None, str]:
    """``selfsup eval --baseline`` (saved to ``baseline.json``), or ``(None, why it failed)``."""
    from selfsup.evaluation import evaluate_with_baseline
    from selfsup.recipe import RecipeError

    try:
        return evaluate_with_baseline(run_dir, pm, device=device), ""
    except (RecipeError, FileNotFoundError, ValueError) as err:
        return None, f"the baseline could not be evaluated: {err}"


def divergence(history: list[dict[str, Any]]) -> list[str]:
    """A message for the first train record whose loss is not finite, if any."""
    for record in history:
        value = records.as_float(record.get("loss")) if record.get("kind") == "train" else None
        if value is not None and not math.isfinite(value):
            return [f"Training diverged: the loss is {record['loss']} at step {record.get('step')}."]
    return []


def summary(run: ReportRun) -> list[str]:
    """What the run is and how far it got."""
    recipe, history = run.recipe, run.records
    steps = [int(r["step"]) for r in history if isinstance(r.get("step"), (int, float))]
    times = [float(r["time"]) for r in history if isinstance(r.get("time"), (int, float))]
    checkpoints = sorted(p.name for p in (run.path / "checkpoints").glob("step-*") if p.is_dir())
    train = recipe.get("train") or {}
    planned = train.get("max_steps") or (f"{train['epochs']} epochs" if train.get("epochs") else None)
    last_loss = next((r.get("loss") for r in reversed(history) if r.get("kind") == "train" and "loss" in r), None)
    rows = [("description", recipe.get("description")),
            ("tasks", ", ".join(f"{k} ({t})" for k, t in run.task_types().items())),
            ("last logged step", max(steps) if steps else None), ("planned", planned),
            ("last loss", records.as_float(last_loss)),
            ("wall time of the logged steps", f"{times[-1] - times[0]:.1f} s" if len(times) > 1 else None),
            ("checkpoints", ", ".join(checkpoints) or "none"),
            ("records", f"{sum(r.get('kind') == 'train' for r in history)} train, "
                        f"{sum(r.get('kind') == 'eval' for r in history)} eval")]
    return [html.table([{"": k, "value": v} for k, v in rows if v not in (None, "")], ["", "value"])]


def evaluation(run: ReportRun, base: dict[str, Any] | None, problem: str) -> list[str]:
    """The evaluation metrics beside the random-init baseline and the evaluators' own baselines."""
    parts: list[str] = []
    if base is not None:
        label = str(base.get("label") or "random init")
        untrained = base.get("random_init", base.get("starting_weights"))
        trained = base["trained"]
        parts.append(html.paragraph(f"Checkpoint {base.get('checkpoint')} (step {base.get('step')}) against the "
                                    f"same model at its {label} (baseline.json, from selfsup eval --baseline).",
                                    "note"))
    else:
        label, untrained = "random init", None
        trained, step = records.last_eval(run.records)
        if not trained:
            return [html.paragraph("No evaluation yet: the run has no eval records and no baseline.json.", "note"),
                    *([html.paragraph(problem, "failed")] if problem else [])]
        parts.append(html.paragraph(
            f"The last evaluation (step {step}). Compare with the random init: selfsup report --baseline "
            f"(or selfsup eval RUN --baseline) writes baseline.json.", "note"))
    if problem:
        parts.append(html.paragraph(problem, "failed"))
    rows, columns = records.evaluation_rows(trained, untrained if isinstance(untrained, dict) else None, label)
    parts.append(html.table(rows, columns))
    return parts


def curves(run: ReportRun, events: list[records.Collapse]) -> list[Section]:
    """Training curves (loss, lr, each task's metrics), evaluation curves and health diagnostics
    (``events``: the collapse warnings, marked on the health plots)."""
    history = run.records
    marks: dict[str, list[float]] = {}
    for event in events:
        marks.setdefault(event.task, []).append(event.step)
    out: list[Section] = []
    panels = []
    for name, keys in records.train_groups(history, list(run.task_types())).items():
        if name == "loss":  # the total and each task's loss in one plot
            panels.append(Panel("loss", [(key, *records.series(history, key, "train")) for key in keys]))
        else:
            panels += [Panel(key, [(key, *records.series(history, key, "train"))]) for key in keys]
    if panels:
        out.append(("Training curves", figures(panels, "training curves"), ""))
    panels = [Panel(key, [(key, *records.series(history, key, "eval"))])
              for keys in records.eval_groups(history).values() for key in keys]
    if panels:
        out.append(("Evaluation curves", figures(panels, "metrics at each evaluation"), ""))
    health = records.health_metrics(history)
    if health:
        parts = [html.paragraph("Representation health per task (dashed red lines: a collapse warning fired).",
                                "note")]
        for task, metrics in health.items():
            panels = []
            for metric in metrics:
                key = f"{records.HEALTH}{task}/{metric}"
                lines = [(f"{kind}", *records.series(history, key, kind)) for kind in ("train", "eval")]
                panels.append(Panel(metric, [line for line in lines if line[1]], marks=marks.get(task, [])))
            parts += [html.heading(f"task {task}"), *figures(panels, f"health of {task}")]
        out.append(("Health", parts, ""))
    return out


def figures(panels: list[Panel], alt: str, per_figure: int = 9) -> list[str]:
    """Panels three a row, in figures of at most ``per_figure`` panels."""
    return [html.figure(grid(panels[i:i + per_figure]), alt=alt) for i in range(0, len(panels), per_figure)]


def environment(env: dict[str, Any]) -> list[str]:
    """``environment.json`` as tables: the machine and libraries, then the plugins and their versions."""
    if not env:
        return [html.paragraph("The run has no environment.json (runs from before it was recorded).", "note")]
    plugins = env.get("plugins")
    rows = [{"": k, "value": v} for k, v in env.items() if k != "plugins" and v is not None]
    parts = [html.table(rows, ["", "value"])]
    if isinstance(plugins, dict) and plugins:
        parts.append(html.heading("plugins"))
        parts.append(html.table([{"plugin": name, **(info if isinstance(info, dict) else {"version": info})}
                                 for name, info in plugins.items()]))
    return parts


def starting_weights(pretrained: dict[str, Any]) -> list[str]:
    """``pretrained.json`` as a table: each backbone's pretrained source, its revision, files and load report."""
    backbones = (pretrained or {}).get("backbones")
    if not isinstance(backbones, dict) or not backbones:
        return []
    rows = []
    for key, record in backbones.items():
        files = "; ".join(f"{name} (sha256 {info.get('sha256', '')[:12]}, {info.get('bytes', 0):,} bytes)"
                          for name, info in (record.get("files") or {}).items())
        rows.append({"backbone": key, "pretrained": record.get("spec"), "revision": record.get("revision") or "",
                     "files": files, "loaded": record.get("summary", "")})
    return [html.heading("pretrained weights"), html.table(rows, ["backbone", "pretrained", "revision", "files",
                                                                  "loaded"])]
