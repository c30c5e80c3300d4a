"""``selfsup sweep show DIR``: the best trials, the best recipe as TOML, parameter importances."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from selfsup.engine.checkpoint import write_text_atomic
from selfsup.sweep.space import Space

BEST = "best.toml"


def summary(study: Any, space: Space, top: int = 10) -> dict[str, Any]:
    """Counts by state, the ``top`` best complete trials, every failed/pruned trial's reason, importances."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts: dict[str, int] = {}
    for t in trials:
        key = "retried" if t.user_attrs.get("retried") else t.state.name.lower()
        counts[key] = counts.get(key, 0) + 1
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    maximize = space.objective.resolved_direction() == "maximize"
    complete.sort(key=lambda t: t.value, reverse=maximize)
    rows = [row(t, space) for t in complete[:top]]
    problems = [row(t, space) for t in trials if t.state in (TrialState.FAIL, TrialState.PRUNED)
                and not t.user_attrs.get("retried")]
    return {"counts": counts, "best": rows, "problems": problems, "importances": importances(study)}


def row(t: Any, space: Space) -> dict[str, Any]:
    return {"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": space.decode(t.params),
            "seconds": t.user_attrs.get("seconds"), "steps": t.user_attrs.get("steps"),
            "run_dir": t.user_attrs.get("run_dir"), "error": t.user_attrs.get("error"),
            "pruned_at": t.last_step if t.state.name == "PRUNED" else None}


def importances(study: Any) -> dict[str, float] | str:
    """fANOVA importances of the parameters (Optuna's default evaluator), or why there are none."""
    import optuna
    from optuna.trial import TrialState

    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if len(complete) < 2:
        return f"importances need at least 2 complete trials ({len(complete)} so far)"
    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError) as err:
        return f"importances could not be computed: {err}".splitlines()[0]


def best_recipe_text(study: Any, meta: dict[str, Any], space: Space, registry: Any) -> tuple[str, Any]:
    """The sweep's recipe with the best trial's values (and the space's fixed fields), as TOML."""
    import tomli_w

    from selfsup.recipe import apply_overrides, parse_toml, resolve_source, set_value

    best = study.best_trial
    text, label, base_dir, _ = resolve_source(meta["recipe"], registry)
    data = apply_overrides(parse_toml(text, label), list(meta.get("overrides", [])))
    for key, value in {**space.fixed, **space.decode(best.params)}.items():
        set_value(data, key, value)
    header = (f"# The best trial ({best.number}) of the sweep {meta['study']!r}: "
              f"{space.objective.metric} = {best.value:.6g}.\n"
              f"# Its recipe {meta['recipe']} with the searched values and the space's fixed fields.\n")
    if label != meta["recipe"] or Path(str(meta["recipe"])).suffix == ".toml":
        header += f"# Relative paths in it are relative to {base_dir}.\n"
    return header + tomli_w.dumps(data), best


def write_best(sweep_dir: Path, study: Any, meta: dict[str, Any], space: Space, registry: Any) -> Path:
    text, _ = best_recipe_text(study, meta, space, registry)
    path = Path(sweep_dir) / BEST
    write_text_atomic(path, text)
    return path


def short_names(paths: list[str]) -> dict[str, str]:
    """Column names for recipe paths: the last segment, or as many as make it unique."""
    names = {}
    for path in paths:
        parts = path.split(".")
        for n in range(1, len(parts) + 1):
            name = ".".join(parts[-n:])
            if sum(1 for other in paths if other == name or other.endswith("." + name)) == 1:
                break
        names[path] = name
    return names


def fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    if isinstance(value, list):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return str(value)
