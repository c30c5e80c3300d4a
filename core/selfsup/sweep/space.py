"""The search space file of ``selfsup sweep`` (``SPACE.toml``), validated like a recipe.

::

    [objective]
    metric = "knn/accuracy"          # any metric an evaluator of the recipe reports
    direction = "maximize"           # or "minimize"; default: minimize for loss/perplexity/error, else maximize

    [sampler]                        # Optuna sampler: tpe (default), random, grid, cmaes
    type = "tpe"
    seed = 0

    [pruner]                         # median (default), hyperband or none
    type = "median"
    startup_trials = 5               # never prune before this many trials finished
    warmup_evaluations = 1           # nor before a trial reported this many evaluations

    [fixed]                          # recipe fields set for every trial (dotted paths)
    "evaluators.knn.every" = 25

    [params."train.lr"]              # one table per recipe field to search, named by its dotted path
    type = "float"                   # float | int | categorical
    low = 1e-4
    high = 1e-1
    log = true

    [params."train.momentum"]
    type = "float"
    low = 0.8
    high = 0.99
    when = { "train.optimizer" = ["sgd", "lars"] }   # only when an earlier parameter has one of these values

Categorical choices may be any TOML value (numbers, strings, booleans, arrays such as a crop scale
``[0.2, 1.0]``); Optuna sees non-scalar choices as their JSON text.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from selfsup.recipe import RecipeError, _loads, _loc, decode_recipe, pydantic_problems

SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("median", "hyperband", "none")
_MINIMIZE_HINTS = ("loss", "perplexity", "error", "wer", "cer", "mse", "mae_", "distance")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Objective(_Strict):
    metric: str = Field(min_length=3, pattern=r"^[^/\s]+/\S+$",
                        description="<evaluator>/<metric>, e.g. knn/accuracy")
    direction: Literal["maximize", "minimize"] | None = None

    @property
    def evaluator(self) -> str:
        return self.metric.split("/", 1)[0]

    def resolved_direction(self) -> str:
        if self.direction is not None:
            return self.direction
        name = self.metric.lower()
        return "minimize" if any(hint in name for hint in _MINIMIZE_HINTS) else "maximize"


class Sampler(_Strict):
    type: Literal["tpe", "random", "grid", "cmaes"] = "tpe"
    seed: int = 0
    startup_trials: int = Field(10, ge=0, description="tpe/cmaes: random trials before the model is used")


class Pruner(_Strict):
    type: Literal["median", "hyperband", "none"] = "median"
    startup_trials: int = Field(5, ge=0, description="median: trials that must finish before any is pruned")
    warmup_evaluations: int = Field(1, ge=0, description="median: evaluations a trial reports before it may be pruned")
    min_resource: int = Field(1, ge=1, description="hyperband: the smallest number of evaluations a trial gets")
    reduction_factor: int = Field(3, ge=2, description="hyperband: 1/reduction_factor of trials go on at each rung")


class Param(_Strict):
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = Field(None, min_length=1)
    when: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Param:
        if self.type == "categorical":
            if self.choices is None:
                raise ValueError("a categorical parameter needs choices = [...]")
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError("a categorical parameter takes choices, not low/high/log/step")
            return self
        if self.choices is not None:
            raise ValueError(f"a {self.type} parameter takes low and high, not choices")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs low and high")
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ValueError(f"low must be smaller than high (got low={self.low:g}, high={self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"log = true needs low > 0 (got {self.low:g})")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined (Optuna samples a log range continuously)")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("an int parameter needs whole low and high")
        return self

    @property
    def encoded(self) -> bool:
        """Whether Optuna sees the choices as JSON text (some choice is not a plain scalar)."""
        return self.choices is not None and any(not isinstance(c, (str, int, float, bool)) for c in self.choices)

    def grid(self) -> list[Any] | None:
        """Every value of a finite parameter (choices, or low..high by step), else ``None``."""
        if self.type == "categorical":
            return [json.dumps(c) for c in self.choices] if self.encoded else list(self.choices)
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            return None
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [round(self.low + i * self.step, 12) for i in range(count)]


class Space(_Strict):
    objective: Objective
    sampler: Sampler = Sampler()
    pruner: Pruner = Pruner()
    fixed: dict[str, Any] = {}
    params: dict[str, Param] = Field(min_length=1)

    @model_validator(mode="after")
    def _conditions(self) -> Space:
        names = list(self.params)
        for i, (name, param) in enumerate(self.params.items()):
            for other, allowed in (param.when or {}).items():
                if other not in names[:i]:
                    raise ValueError(f"{field(name, 'when')}: {other!r} is not a parameter defined before it")
                values = allowed if isinstance(allowed, list) else [allowed]
                known = self.params[other].choices
                if known is not None and not all(v in known for v in values):
                    raise ValueError(f"{field(name, 'when')}: {values} are not all choices of {other!r} ({known})")
            if name in self.fixed:
                raise ValueError(f"{name!r} is both searched (params) and fixed")
        if self.sampler.type == "grid":
            for name, param in self.params.items():
                if param.when:
                    raise ValueError(f"{field(name, 'when')}: the grid sampler needs a space without conditions")
                if param.grid() is None:
                    raise ValueError(f"{field(name)}: the grid sampler needs a finite parameter (choices, int, or "
                                     f"float with step)")
        return self

    def grid(self) -> dict[str, list[Any]]:
        return {name: param.grid() for name, param in self.params.items()}

    def suggest(self, trial: Any) -> dict[str, Any]:
        """The trial's values (``{recipe path: value}``), asked of Optuna in file order; a conditional
        parameter whose condition does not hold is not sampled (it keeps the recipe's value)."""
        values: dict[str, Any] = {}
        for name, param in self.params.items():
            if not all(values.get(other, _MISSING) in (a if isinstance(a, list) else [a])
                       for other, a in (param.when or {}).items()):
                continue
            values[name] = suggest_one(trial, name, param)
        return values

    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
        """Optuna's stored parameters -> recipe values (JSON-encoded choices decoded)."""
        return {name: json.loads(v) if name in self.params and self.params[name].encoded else v
                for name, v in params.items()}


_MISSING = object()


def field(name: str, *rest: str) -> str:
    """A parameter's field as errors write it: ``params['train.lr'].when``."""
    return _loc(("params", name, *rest))


def suggest_one(trial: Any, name: str, param: Param) -> Any:
    if param.type == "categorical":
        if param.encoded:
            return json.loads(trial.suggest_categorical(name, [json.dumps(c) for c in param.choices]))
        return trial.suggest_categorical(name, param.choices)
    if param.type == "int":
        return trial.suggest_int(name, int(param.low), int(param.high), step=int(param.step or 1), log=param.log)
    return trial.suggest_float(name, param.low, param.high, step=param.step, log=param.log)


def shipped_spaces(pm: Any) -> dict[str, Path]:
    """Search spaces that installed plugins ship (``<package>/sweeps/<name>.toml``), by name."""
    from importlib import resources

    found: dict[str, Path] = {}
    for info in pm.infos.values():
        if not info.module:
            continue
        try:
            folder = resources.files(info.module.split(".")[0]) / "sweeps"
            entries = list(folder.iterdir()) if folder.is_dir() else []
        except (ModuleNotFoundError, TypeError, OSError):
            continue
        for entry in entries:
            if entry.name.endswith(".toml"):
                found.setdefault(entry.name[: -len(".toml")], Path(str(entry)))
    return found


def find_space(reference: str | Path, pm: Any) -> Path:
    """A space file's path, or the name of one a plugin ships (``--space simclr-digits``)."""
    path = Path(reference)
    text = str(reference)
    if path.exists() or path.suffix == ".toml" or "/" in text or "\\" in text:
        return path
    shipped = shipped_spaces(pm)
    if text in shipped:
        return shipped[text]
    names = ", ".join(sorted(shipped)) or "none"
    raise RecipeError(text, [("", f"no such space file, and no installed plugin ships a search space of that name "
                                  f"(shipped: {names})")])


def load_space(path: str) -> tuple[Space, str]:
    """Read and validate a space file; errors name the file, the field and the bad value."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(4 << 20)
    except OSError as err:
        raise RecipeError(str(path), [("", f"cannot read the space file: {err.strerror or err}")]) from None
    text = decode_recipe(raw, str(path))
    data = _loads(text, str(path), "invalid TOML: ")
    try:
        return Space.model_validate(data), text
    except ValidationError as err:
        raise RecipeError(str(path), pydantic_problems(err, model=Space)) from None
