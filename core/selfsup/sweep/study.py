"""A sweep's folder and its Optuna study: ``sweep.json``, the storage, the sampler and the pruner.

Folder layout::

    <sweep>/sweep.json         what the sweep is: recipe, space, objective, study name and storage
    <sweep>/study.db           the default storage (SQLite), unless --storage names another
    <sweep>/trials/trial-0007/ each trial's own run directory (checkpoints, metrics, log.txt)
    <sweep>/best.toml          written by ``selfsup sweep show``

Storage: Optuna's RDB storage (an SQLAlchemy URL such as ``sqlite:///path.db``,
``postgresql://user@host/db``, ``mysql+pymysql://...``) or a journal file (``journal:PATH``, Optuna's
``JournalFileBackend``, safe for several processes on one file system and simple to copy).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selfsup.engine.checkpoint import write_text_atomic
from selfsup.recipe import RecipeError
from selfsup.sweep.space import Space

META = "sweep.json"
TRIALS = "trials"


class SweepError(RuntimeError):
    """The sweep cannot start or go on (a changed space, an unreadable storage...)."""


def default_storage(sweep_dir: Path) -> str:
    return f"sqlite:///{(Path(sweep_dir) / 'study.db').resolve()}"


def trial_dir(sweep_dir: Path, number: int) -> Path:
    return Path(sweep_dir) / TRIALS / f"trial-{number:04d}"


def open_storage(url: str) -> Any:
    """An Optuna storage for ``url``: ``journal:PATH`` (a journal file) or an RDB URL."""
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len("journal:"):]).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):  # several worker processes write to one file: wait for the lock, don't fail
        kwargs = {"connect_args": {"timeout": 120}}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as err:  # noqa: BLE001 - SQLAlchemy and driver errors of every kind
        raise SweepError(f"cannot open the storage {url!r}: {type(err).__name__}: {err}".splitlines()[0]) from None


def make_sampler(space: Space, worker: int = 0, workers: int = 1, done: int = 0) -> Any:
    """The space's sampler. Its seed is the space's, moved by the worker index (parallel workers) and
    by the number of trials the study already holds (``done``: a resumed sweep), so no two workers
    and no resumed process replay the same random draws; a fresh single-worker sweep is reproducible.
    With several workers TPE assumes a poor value for running trials (constant liar)."""
    import optuna

    spec = space.sampler
    seed = spec.seed + 1_000_003 * worker + done
    if spec.type == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.type == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if spec.type == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=spec.startup_trials,
                                            warn_independent_sampling=False)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.startup_trials, constant_liar=workers > 1,
                                      multivariate=True, group=any(p.when for p in space.params.values()))


def make_pruner(space: Space, every: int = 1) -> Any:
    """The space's pruner. Trials report at optimizer steps (every ``every`` steps, the objective's
    evaluator interval), so the space's counts of evaluations become steps here."""
    import optuna

    spec, every = space.pruner, max(1, every)
    if spec.type == "none":
        return optuna.pruners.NopPruner()
    if spec.type == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=spec.min_resource * every,
                                              reduction_factor=spec.reduction_factor)
    # Optuna prunes from step == n_warmup_steps on: the warmup_evaluations-th evaluation at the earliest
    return optuna.pruners.MedianPruner(n_startup_trials=spec.startup_trials,
                                       n_warmup_steps=spec.warmup_evaluations * every)


def write_meta(sweep_dir: Path, meta: dict[str, Any]) -> None:
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    write_text_atomic(Path(sweep_dir) / META, json.dumps(meta, indent=2))


def read_meta(sweep_dir: Path) -> dict[str, Any]:
    path = Path(sweep_dir) / META
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SweepError(f"{sweep_dir} is not a sweep folder (no {META})") from None
    except (OSError, ValueError) as err:
        raise SweepError(f"{path} cannot be read: {err}") from None


def check_same_sweep(old: dict[str, Any], new: dict[str, Any], sweep_dir: Path) -> None:
    """A sweep folder goes on only with the recipe and space it started with."""
    changed = [key for key in ("recipe", "overrides", "space", "study") if old.get(key) != new.get(key)]
    if changed:
        raise SweepError(f"{sweep_dir} holds a sweep with another {' and '.join(changed)}; continue it with the "
                         f"same recipe, --set values and space, or choose another folder (--out)")


def load_study(sweep_dir: Path, storage: str | None = None) -> tuple[Any, dict[str, Any]]:
    """The study of a sweep folder (``storage`` overrides the URL recorded in ``sweep.json``)."""
    import optuna

    meta = read_meta(sweep_dir)
    url = storage or meta["storage"]
    try:
        study = optuna.load_study(study_name=meta["study"], storage=open_storage(url))
    except KeyError:
        raise SweepError(f"the storage {url} holds no study named {meta['study']!r}") from None
    return study, meta


def space_of(meta: dict[str, Any]) -> Space:
    try:
        return Space.model_validate(meta["space"])
    except Exception as err:  # noqa: BLE001 - a sweep.json edited by hand
        raise RecipeError(META, [("space", str(err).splitlines()[0])]) from None
