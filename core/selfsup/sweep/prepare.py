"""Check a sweep before its first trial, and create (or reopen) its folder and study.

Every searched field is tried in the recipe once (at its lowest value or first choice), so a typo in
a parameter's path or a value a component refuses is an error naming the space's field before any
training, not a column of failed trials.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from selfsup.recipe import LoadedRecipe, RecipeError, _loc, load_recipe
from selfsup.sweep.space import Param, Space, field, find_space, load_space
from selfsup.sweep.study import (
    META,
    SweepError,
    check_same_sweep,
    default_storage,
    make_pruner,
    make_sampler,
    open_storage,
    read_meta,
    write_meta,
)


def check_space(space: Space, space_label: str, recipe: str, overrides: list[str], registry: Any) -> LoadedRecipe:
    """The recipe with the space's fixed fields, after checking the objective and every parameter."""
    try:
        loaded = load_recipe(recipe, registry, overrides, values=dict(space.fixed))
    except RecipeError as err:
        if space.fixed and any(path in space.fixed for path, _ in err.problems):
            raise RecipeError(space_label, [(_loc(("fixed", p)), m) for p, m in err.problems]) from None
        raise
    evaluators = loaded.recipe.evaluators
    name = space.objective.evaluator
    if name not in evaluators:
        raise RecipeError(space_label, [("objective.metric", f"the recipe has no evaluator {name!r} (it has "
                                         f"{', '.join(evaluators) or 'none'}): the metric is <evaluator>/<metric>")])
    for path, param in space.params.items():
        try:
            condition = {other: (a[0] if isinstance(a, list) else a) for other, a in (param.when or {}).items()}
            load_recipe(recipe, registry, overrides, values={**space.fixed, **condition, path: sample_value(param)})
        except RecipeError as err:
            raise RecipeError(space_label, [(field(path), m if p == path else f"{p}: {m}")
                                            for p, m in err.problems]) from None
    if space.pruner.type != "none" and not evaluators[name].every:
        warnings.warn(f"{space_label}: the pruner has nothing to go on: evaluator {name!r} runs only at the end; "
                      f"set evaluators.{name}.every in the space's [fixed] table", stacklevel=2)
    return loaded


def sample_value(param: Param) -> Any:
    if param.type == "categorical":
        return param.choices[0]
    return int(param.low) if param.type == "int" else param.low


def prepare_sweep(recipe: str, space_path: str | Path, *, pm: Any, out: Path | None, storage: str | None,
                  study_name: str | None, overrides: list[str], worker: int = 0,
                  workers: int = 1) -> tuple[Path, Any, Space, dict[str, Any]]:
    """(sweep folder, Optuna study, space, sweep.json contents), the study created or reopened."""
    import optuna

    space_path = find_space(space_path, pm)
    space, _ = load_space(str(space_path))
    loaded = check_space(space, str(space_path), recipe, overrides, pm.registry)
    path = Path(recipe)
    reference = str(path.resolve()) if path.suffix == ".toml" or path.exists() else recipe
    sweep_dir = out or Path("runs") / f"sweep-{loaded.recipe.name or 'run'}"
    meta = {
        "recipe": reference, "overrides": overrides, "space": space.model_dump(mode="json"),
        "space_file": str(Path(space_path).resolve()), "study": study_name or sweep_dir.resolve().name,
        "storage": storage or default_storage(sweep_dir),
        "objective": {"metric": space.objective.metric, "direction": space.objective.resolved_direction()},
        "sampler": space.sampler.type, "pruner": space.pruner.type,
    }
    if (sweep_dir / META).is_file():
        old = read_meta(sweep_dir)
        check_same_sweep(old, {**meta, "study": study_name or old["study"]}, sweep_dir)
        meta = {**old, "storage": storage or old["storage"]}
    elif worker == 0:
        write_meta(sweep_dir, meta)
    try:
        study = optuna.create_study(
            study_name=meta["study"], storage=open_storage(meta["storage"]), load_if_exists=True,
            direction=meta["objective"]["direction"], sampler=make_sampler(space, worker, workers),
            pruner=make_pruner(space, loaded.recipe.evaluators[space.objective.evaluator].every))
    except ValueError as err:  # e.g. the stored study's direction differs
        raise SweepError(f"the study {meta['study']!r} in {meta['storage']} cannot be used: {err}") from None
    done = len(study.get_trials(deepcopy=False))
    if done:  # a resumed study: fresh random draws, not a replay of the first trials' parameters
        study.sampler = make_sampler(space, worker, workers, done)
    return sweep_dir, study, space, meta
