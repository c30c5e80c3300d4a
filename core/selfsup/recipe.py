"""Recipes: one TOML file = one run, validated by pydantic in two passes.

1. :class:`Recipe` checks the structure (``extra="forbid"`` everywhere, types, ranges).
2. :func:`check_components` checks every ``type`` against the registry (suggesting the nearest
   name, or the distribution to install), every component's ``options`` against the model its
   plugin registered, and every cross-reference (a task's ``data``, ``backbone``, ``augment``).

Errors are collected and raised together as one :class:`RecipeError` naming each field path.
Both passes also apply :mod:`selfsup.limits` (finite floats, bounded integers, nesting depth,
identifier-like component keys, short messages). See docs/recipes.md for every field.
"""

from __future__ import annotations

import re
import sys
import typing
from importlib import import_module
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from selfsup import limits
from selfsup.catalog import load_catalog
from selfsup.lib.health import HealthThresholds
from selfsup.registry import HOOK_OF_KIND, LABEL_OF_KIND, Kind, Registry, lazy_target

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


#: The most rounds a recipe may train in (``[rounds] count``).
MAX_ROUNDS = 1000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------------ structure


def _component_key(key: str) -> str:
    problem = limits.key_problem(key)
    if problem:
        raise ValueError(problem)
    return key


#: A key of a component table (``[backbones.<key>]``): identifier-like, see :func:`selfsup.limits.key_problem`.
ComponentKey = Annotated[str, AfterValidator(_component_key)]


class ComponentSpec(_Strict):
    type: str = Field(description="Registered component name.")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Validated by the component's own model.",
        json_schema_extra={limits.RAW_TABLE: True},  # its limits are checked on the parsed options
    )


class DataSpec(ComponentSpec):
    """``[data.<name>]``: a data source."""


class AugmentationSpec(ComponentSpec):
    """``[augmentations.<name>]``: one augmentation; tasks list them in order."""


class InitSpec(_Strict):
    """``[backbones.<name>.init]``: start a backbone from trained weights instead of its seed."""

    path: str = Field(description="A run directory (its best checkpoint if it recorded one, else its newest "
                                  "intact one), one of its checkpoints, or a `selfsup export --format selfsup` folder; "
                                  "relative to the recipe's directory.")
    backbone: str | None = Field(None, description="The backbone's key there; default: the same key, or the only one.")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        problem = limits.plain_path_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class BackboneSpec(ComponentSpec):
    """``[backbones.<name>]``: an encoder, shareable by several tasks."""

    init: InitSpec | None = Field(None, description="Load the backbone's weights from a trained run or export.")


BackboneRef = str | dict[str, str]  # a backbone key, or {role: backbone key} for tasks with several encoders


def backbone_keys(ref: BackboneRef | None) -> list[tuple[str, str]]:
    """``[(field suffix, backbone key)]`` of a task's or evaluator's ``backbone`` field."""
    if ref is None:
        return []
    if isinstance(ref, str):
        return [("", ref)]
    return [(f".{role}", key) for role, key in ref.items()]


class TaskSpec(ComponentSpec):
    """``[tasks.<name>]``: a pretext task with its data, augmentation pipeline, backbone and weight."""

    data: str
    backbone: BackboneRef = Field(
        description="A key of [backbones], or a table {role = key} for a task with several encoders (cross-modal)."
    )
    augment: list[str] = Field(default_factory=list)
    weight: float = Field(1.0, gt=0, description="Loss weight (sum/round_robin) or sampling weight (sample).")
    batch_size: int | None = Field(None, gt=0, description="Global batch for this task; default train.batch_size.")
    group_by_length: bool = Field(
        False, description="Batch samples of similar length together (the data source must define lengths())."
    )
    from_round: int = Field(0, ge=0, le=MAX_ROUNDS - 1,
                            description="[rounds]: the first round (0-based) the task trains in; a task that "
                                        "reads a field the feedback adds starts at 1.")


class EvaluatorSpec(ComponentSpec):
    """``[evaluators.<name>]``: measures a backbone every ``every`` steps and/or at the end."""

    data: str
    fit_data: str | None = None
    backbone: BackboneRef | None = None
    augment: list[str] = Field(default_factory=list)
    every: int = Field(0, ge=0, description="Run every N optimizer steps; 0 = only at the end.")
    at_end: bool = True
    batch_size: int = Field(256, gt=0)


class AdamOptions(_Strict):
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    fused: bool | None = Field(None, description="One fused kernel for all parameters (CUDA, and CPU in recent torch); "
                                                 "unset: torch's default.")


class SGDOptions(_Strict):
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False

    @model_validator(mode="after")
    def _nesterov(self) -> SGDOptions:
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        return self


class LARSOptions(_Strict):
    momentum: float = Field(0.9, ge=0, lt=1)
    trust_coefficient: float = Field(0.001, gt=0)
    eps: float = Field(1e-8, gt=0)
    exclude_bias_and_norm: bool = True


class AdagradOptions(_Strict):
    lr_decay: float = Field(0.0, ge=0)
    eps: float = Field(1e-10, gt=0)


OPTIMIZER_OPTIONS: dict[str, type[BaseModel]] = {
    "adamw": AdamOptions,
    "adam": AdamOptions,
    "sgd": SGDOptions,
    "lars": LARSOptions,
    "adagrad": AdagradOptions,
}

class BestSpec(_Strict):
    """``[train.best]``: track a validation metric, keep its best checkpoint, stop early."""

    metric: str = Field(description="'<evaluator>/<metric>' of an evaluator with every > 0, e.g. 'val/f1_macro'.")
    mode: Literal["max", "min"] = "max"
    patience: int | None = Field(None, gt=0, description="Stop after this many evaluations without improvement; "
                                                         "unset: never stop early.")
    min_delta: float = Field(0.0, ge=0, description="An improvement smaller than this does not count.")
    restore: bool = Field(True, description="Evaluate and export the best checkpoint's weights at the end.")

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if value.count("/") < 1 or not all(value.split("/", 1)):
            raise ValueError("must be '<evaluator>/<metric>', e.g. 'val/f1_macro'")
        return value


_HEALTH = HealthThresholds()


class HealthThresholdsSpec(_Strict):
    """``[train.health.thresholds]``: below these a task counts as collapsed (``selfsup.lib.HealthThresholds``)."""

    std: float = Field(_HEALTH.std, ge=0, description="embedding_std (1.0: isotropic, 0.0: one point).")
    rankme: float = Field(_HEALTH.rankme, ge=0, description="Effective rank (RankMe); the threshold is "
                                                            "max(rankme, rankme_fraction * min(samples, dimension)).")
    rankme_fraction: float = Field(_HEALTH.rankme_fraction, ge=0, le=1, description="See rankme.")
    code_perplexity: float = Field(_HEALTH.code_perplexity, ge=0, description="Codes in use per codebook group.")
    cluster_entropy: float = Field(_HEALTH.cluster_entropy, ge=0, le=1,
                                   description="Normalised entropy of the cluster sizes (1.0: equal sizes).")

    def thresholds(self) -> HealthThresholds:
        """These values as the :class:`selfsup.lib.HealthThresholds` the checks compare with."""
        return HealthThresholds(**self.model_dump())


class HealthSpec(_Strict):
    """``[train.health]``: training-health diagnostics of every task's embeddings (docs/health.md)."""

    enabled: bool = True
    every: int = Field(0, ge=0, description="Check every N steps (a multiple of train.log_every), in the train "
                                            "record; 0 = only at evaluations and at the end of training.")
    samples: int = Field(256, ge=2, le=8192, description="Probe samples per task (evenly spaced over its data).")
    grace_steps: int = Field(20, ge=0, description="No collapse is reported before this step: embeddings at random "
                                                   "initialisation can look degenerate (docs/health.md).")
    thresholds: HealthThresholdsSpec = Field(default_factory=HealthThresholdsSpec)


class FeedbackSpec(ComponentSpec):
    """``[rounds.feedback]``: the self-evaluation step run after every round but the last."""

    data: str = Field(description="The [data] key the feedback looks at and reshapes: every task on this data "
                                  "draws its samples by the feedback's weights and sees its fields.")
    backbone: str | None = Field(None, description="The [backbones] key it reads; required when there are several.")
    augment: list[str] = Field(default_factory=list, description="Augmentations applied before the backbone embeds "
                                                                 "the data (e.g. only normalisation).")
    batch_size: int = Field(256, gt=0, description="Batch size of the feedback's passes over the data.")


class RoundsSpec(_Strict):
    """``[rounds]``: train in rounds; after each round but the last a feedback component reshapes the data."""

    count: int = Field(ge=2, le=MAX_ROUNDS, description="Number of rounds.")
    steps_per_round: int | None = Field(
        None, gt=0, description="Optimizer steps of each round but the last, which runs to the end of training; "
                                "unset: the run's steps split evenly.")
    feedback: FeedbackSpec = Field(description="The feedback component and its data.")


_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?|mps)$")


class FSDPSpec(_Strict):
    """``[train.fsdp]``: how ``strategy = "fsdp"`` shards (docs/distributed.md)."""

    reshard_after_forward: bool = Field(
        True, description="Free each block's gathered weights after its forward (gather again for the backward): "
                          "least memory; false keeps them until the backward (less communication).")
    mixed_precision: bool = Field(
        True, description="Compute in train.precision (bf16) with float32 shards and float32 gradient reduction.")
    activation_checkpointing: bool = Field(
        False, description="Recompute each block's activations in the backward instead of keeping them.")


class TrainSpec(_Strict):
    """``[train]``: optimisation and run settings."""

    optimizer: Literal["adamw", "adam", "adagrad", "sgd", "lars"] = "adamw"
    optimizer_options: dict[str, Any] = Field(default_factory=dict, json_schema_extra={limits.RAW_TABLE: True})
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    min_lr: float = Field(0.0, ge=0)
    batch_size: int = Field(64, gt=0)
    grad_accum: int = Field(1, gt=0)
    max_steps: int | None = Field(None, gt=0)
    epochs: float | None = Field(None, gt=0)
    grad_clip: float | None = Field(None, gt=0)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False
    device: str = "auto"
    workers: int = Field(0, ge=0)
    task_policy: Literal["sum", "sample", "round_robin", "proportional"] = "sum"
    log_every: int = Field(10, gt=0)
    checkpoint_every: int = Field(0, ge=0, description="0 = only at the end.")
    keep_checkpoints: int = Field(3, gt=0)
    deterministic: bool = False
    tensorboard: bool = True
    find_unused_parameters: bool | None = None
    strategy: Literal["ddp", "fsdp"] = Field(
        "ddp", description="ddp: every process holds the whole model; fsdp: parameters, gradients and optimizer "
                           "state sharded across processes (FSDP2), sharded checkpoints.")
    fsdp: FSDPSpec = Field(default_factory=FSDPSpec, description="Sharding settings of strategy = 'fsdp'.")
    best: BestSpec | None = Field(None, description="Best-checkpoint selection and early stopping.")
    health: HealthSpec = Field(default_factory=HealthSpec, description="Training-health diagnostics.")

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE.match(value):
            raise ValueError("must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
        return value

    @model_validator(mode="after")
    def _length(self) -> TrainSpec:
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError(
                "set exactly one of max_steps and epochs (on the command line an empty value removes "
                "one: --set train.epochs= --set train.max_steps=500)"
            )
        if self.warmup_steps and self.max_steps is not None and self.warmup_steps >= self.max_steps:
            raise ValueError("warmup_steps must be smaller than max_steps")
        if self.min_lr > self.lr:
            raise ValueError("min_lr must not exceed lr")
        if self.strategy == "fsdp" and self.precision == "fp16":
            raise ValueError("strategy 'fsdp' trains in fp32 or bf16 (fp16 needs a sharded grad scaler): "
                             "use precision = 'bf16'")
        if self.strategy == "fsdp" and self.optimizer == "lars":
            raise ValueError("strategy 'fsdp' does not support the lars optimizer (its trust ratio needs each "
                             "tensor's full norm): use adamw or sgd")
        return self


class Recipe(_Strict):
    """A whole run."""

    name: str | None = Field(None, description="Run name; defaults to the recipe file's stem. One folder name.")
    description: str = ""
    seed: int = Field(0, ge=0, le=limits.SEED_MAX)
    output_dir: str | None = Field(
        None, description="Default runs/<name>; relative to the working directory; '~' is not expanded."
    )
    data: dict[ComponentKey, DataSpec] = Field(min_length=1)
    augmentations: dict[ComponentKey, AugmentationSpec] = Field(default_factory=dict)
    backbones: dict[ComponentKey, BackboneSpec] = Field(min_length=1)
    tasks: dict[ComponentKey, TaskSpec] = Field(min_length=1)
    evaluators: dict[ComponentKey, EvaluatorSpec] = Field(default_factory=dict)
    train: TrainSpec
    rounds: RoundsSpec | None = Field(None, description="Train in rounds with a feedback step between them "
                                                        "(docs/autonomous.md).")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        problem = None if value is None else limits.path_component_problem(value)
        if problem:
            raise ValueError(f"{problem} (the name is the folder under runs/)")
        return value

    @field_validator("output_dir")
    @classmethod
    def _output_dir(cls, value: str | None) -> str | None:
        problem = None if value is None else limits.plain_path_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    def run_dir(self) -> Path:
        """``output_dir`` as written (``~`` is not expanded), or ``runs/<name>``."""
        return Path(self.output_dir or f"runs/{self.name or 'run'}")


# ------------------------------------------------------------------------------------ errors


class RecipeError(Exception):
    """A recipe is invalid. ``problems`` is a list of ``(field path, message)``."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = limits.short_text(str(source), word=200, total=300)
        self.problems = [(limits.short_text(p, total=300), limits.short_text(m)) for p, m in problems]
        super().__init__(self.render())

    def render(self) -> str:
        if len(self.problems) == 1:
            path, msg = self.problems[0]
            return f"{self.source}: {path}: {msg}" if path else f"{self.source}: {msg}"
        lines = [f"{self.source}: {len(self.problems)} problems"]
        lines += [f"  {path}: {msg}" if path else f"  {msg}" for path, msg in self.problems]
        return "\n".join(lines)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = limits.key_text(part)
            out += text if text.startswith("[") else ("." if out else "") + text
    return out


def _short(value: Any, limit: int = 60) -> str:
    """A value as it is quoted in a message: ``repr``, cut to ``limit`` characters."""
    return limits.short(value, limit)


def _known_fields(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> list[str]:
    """The field names of the (nested) model holding the field at ``loc`` (the path without the
    field itself): models are entered through their fields, ``dict[str, Model]`` through one key."""
    pending_key = False  # the previous field was a dict of models: this part is its key
    for part in loc:
        if model is None:
            return []
        if pending_key:
            pending_key = False
            continue
        info = model.model_fields.get(str(part))
        if info is None:
            return []
        ann, model = info.annotation, None
        if typing.get_origin(ann) is dict:
            ann, pending_key = typing.get_args(ann)[-1], True
        for candidate in (ann, *typing.get_args(ann)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
    return [] if model is None or pending_key else list(model.model_fields)


def pydantic_problems(
    err: ValidationError, prefix: str = "", model: type[BaseModel] | None = None
) -> list[tuple[str, str]]:
    """Turn pydantic's errors into ``(path, message)`` pairs, with the offending value; an
    unknown field gets the nearest field name of ``model`` (the validated model) when one is close."""
    import difflib

    problems = []
    for e in err.errors():
        if e["loc"] and e["loc"][-1] == "[key]":  # a dict key failed its own validator
            path = _loc(tuple(e["loc"][:-1]))
            path = f"{prefix}.{path}" if prefix and path else (prefix or path)
            problems.append((path, e["msg"].removeprefix("Value error, ")))
            continue
        path = _loc(tuple(e["loc"]))
        path = f"{prefix}.{path}" if prefix and path else (prefix or path)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
            loc = tuple(e["loc"])
            near = difflib.get_close_matches(str(loc[-1]), _known_fields(model, loc[:-1]), n=1, cutoff=0.5)
            if near:
                msg += f"; did you mean {near[0]!r}?"
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if e["type"] not in ("missing",) and "input" in e and not isinstance(e["input"], dict):
            msg += f" (got {_short(e['input'])})"
        problems.append((path, msg))
    return problems


# ------------------------------------------------------------------------------------ loading


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """Parse a recipe's TOML text; too deep nesting (see :data:`selfsup.limits.MAX_DEPTH`) and
    syntax errors raise :class:`RecipeError`."""
    return _loads(text, source, "invalid TOML: ")


def _loads(text: str, source: str, prefix: str) -> dict[str, Any]:
    line = limits.toml_depth_problem(text)
    if line is not None:
        raise RecipeError(source, [("", f"arrays and tables nest more than {limits.MAX_DEPTH} levels deep "
                                        f"(line {line})")])
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(source, [("", f"{prefix}{exc}")]) from None
    except RecursionError:  # the scan above should have caught it
        message = f"arrays and tables nest too deeply (at most {limits.MAX_DEPTH} levels)"
        raise RecipeError(source, [("", message)]) from None


def decode_recipe(raw: bytes, source: str) -> str:
    """The text of a recipe file's bytes, which must be UTF-8 (a leading byte-order mark is dropped)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise RecipeError(source, [("", f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start} "
                                        f"(line {line}) is invalid; save the recipe as UTF-8")]) from None
    return text.removeprefix("\ufeff")


UNSET = object()


def parse_override(expr: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` -> ``(["train", "lr"], 3e-4)``. Values are TOML (numbers, booleans,
    strings, arrays, inline tables); a bare word that is not valid TOML is taken as a string.
    An empty value (``"train.max_steps="``) gives :data:`UNSET`: the key is removed."""
    if "=" not in expr:
        raise RecipeError("--set", [(expr, "expected KEY=VALUE, e.g. train.lr=3e-4")])
    key, raw = expr.split("=", 1)
    path = [p.strip() for p in key.strip().split(".")]
    if not all(path):
        raise RecipeError("--set", [(key, "empty key segment")])
    if not raw.strip():
        return path, UNSET
    try:
        value = _loads(f"v = {raw.strip()}", "--set", "")["v"]
    except RecipeError as err:
        if "nest" in err.problems[0][1]:
            raise RecipeError("--set", [(key, err.problems[0][1].split(" (line")[0])]) from None
        value = raw.strip()
    return path, value


def set_value(data: dict[str, Any], key: str, value: Any) -> None:
    """``data`` with the field at dotted ``key`` set to ``value`` (``None`` removes it): the Python
    form of ``--set KEY=VALUE``, for values that are already Python objects."""
    path = [part.strip() for part in key.split(".")]
    if not all(path):
        raise RecipeError("overrides", [(key, "empty key segment")])
    _set_path(data, path, UNSET if value is None else value, "overrides")


def _set_path(data: dict[str, Any], path: list[str], value: Any, source: str) -> None:
    """Set (or, for :data:`UNSET`, remove) the field at ``path``, creating tables on the way."""
    node = data
    for i, part in enumerate(path[:-1]):
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise RecipeError(source, [(".".join(path[: i + 1]), f"is {_short(nxt)}, not a table")])
        node = nxt
    if value is UNSET:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


def with_pretrained(data: dict[str, Any], pretrained: Path, wanted: str | None, source: str) -> dict[str, Any]:
    """The recipe ``data`` with its pretrained backbone taken from ``pretrained`` (a run directory, a
    checkpoint or a ``selfsup export --format selfsup`` folder): ``[backbones.pretrained]`` (or the
    recipe's only backbone) gets the type and options it was trained with and ``init`` pointing at
    it. ``wanted``: the backbone's key there, when it has several."""
    from selfsup.engine.init import locate

    backbones = dict(data.get("backbones") or {})
    target = "pretrained" if "pretrained" in backbones or not backbones else (
        next(iter(backbones)) if len(backbones) == 1 else None)
    if target is None:
        raise RecipeError(source, [("backbones", "name the backbone to start from the pretrained weights "
                                                 "'pretrained' (the recipe has several)")])
    try:
        found = locate(pretrained.resolve(), target, wanted)
    except ValueError as err:
        raise RecipeError(source, [(f"backbones.{target}.init", str(err))]) from None
    if found.type is None:
        raise RecipeError(source, [(f"backbones.{target}.init", f"{found.description}: the backbone's type and "
                                                                 f"options were not recorded")])
    backbones[target] = {"type": found.type, "options": dict(found.options or {}),
                         "init": {"path": str(pretrained.resolve()), "backbone": found.key}}
    return {**data, "backbones": backbones}


def _run_name(path: Path) -> str:
    """The name of the run a pretrained path belongs to (a checkpoint's run, an export's folder)."""
    path = path.resolve()
    return path.parent.parent.name if path.parent.name == "checkpoints" else path.name


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for expr in overrides:
        path, value = parse_override(expr)
        _set_path(data, path, value, "--set")
    return data


def parse_recipe(data: dict[str, Any], source: str, default_name: str | None = None) -> Recipe:
    """The structure pass: nesting depth, then :class:`Recipe`'s model, then the value limits."""
    where = limits.depth_problem(data)
    if where is not None:
        raise RecipeError(source, [(where, f"nests more than {limits.MAX_DEPTH} levels deep")])
    if default_name and "name" not in data:
        data = {**data, "name": default_name}
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as err:
        raise RecipeError(source, pydantic_problems(err, model=Recipe)) from None
    problems = limits.value_problems(recipe)
    if problems:
        raise RecipeError(source, problems)
    return recipe


# ------------------------------------------------------------------------------------ components


def _failures(registry: Registry, kind: Kind, name: str, distribution: str | None = None) -> tuple[list[str], bool]:
    """How the plugins that failed to load (or to register this kind) read in an unknown-name
    message, and whether one of them is likely the provider: its plugin or distribution name
    (without ``selfsup-``) and ``name`` contain one another, or it is ``distribution`` (the
    catalogue's provider of ``name``). Those come first; for a catalogued name, only its provider's
    failure is listed."""
    hook = HOOK_OF_KIND[kind]
    wanted = name.lower().replace("-", "_")

    def matches(f: Any) -> bool:
        if distribution is not None:
            return f.distribution == distribution
        owners = {re.sub(r"^selfsup_", "", (who or "").lower().replace("-", "_")) for who in (f.plugin, f.distribution)}
        return any(len(o) >= 3 and (o in wanted or wanted in o) for o in owners)

    relevant = [f for f in registry.failures if f.stage in ("import", "compatibility", hook)]
    if distribution is not None:
        relevant = [f for f in relevant if matches(f)]
    relevant.sort(key=lambda f: not matches(f))
    texts = []
    for f in relevant[:3]:
        who = f.distribution or f.plugin
        if f.stage == "compatibility":
            texts.append(f"plugin {who!r} was not loaded: {f.message}")
        elif f.stage == "import" and not f.loaded:
            texts.append(f"plugin {who!r} failed to load: {f.message}")
        elif f.stage == "import":
            texts.append(f"plugin {who!r}: {f.message}")
        else:
            texts.append(f"plugin {who!r} failed in {f.stage}: {f.message}")
    if len(relevant) > 3:
        texts.append(f"{len(relevant) - 3} more plugin errors")
    return texts, any(matches(f) for f in relevant)


def _unknown_name(registry: Registry, kind: Kind, name: str) -> str:
    """The message for a ``type`` that names no registered component: the plugin that failed to
    provide it, the distribution to install, or the nearest name."""
    label = LABEL_OF_KIND[kind]
    catalog = {e.name: e for e in load_catalog()} if kind == "pretext_task" else {}
    known = registry.names(kind)
    failures, likely = _failures(registry, kind, name, catalog[name].distribution if name in catalog else None)
    why = "; ".join(failures) + " (`selfsup plugins --verbose` shows the traceback)"
    suggestion = registry.closest(kind, name, extra=list(catalog))
    if likely:  # the plugin that would have provided it is broken: say that first
        msg = f"unknown {label} {_short(name)}: {why}"
        return msg + (f"; did you mean {suggestion!r}?" if suggestion and suggestion != name else "")
    if name in catalog:
        dist = catalog[name].distribution
        return f"{label} {name!r} is provided by {dist}, which is not installed: run `selfsup install {dist}`"
    msg = f"unknown {label} {_short(name)}"
    if suggestion in catalog and suggestion not in known:
        msg += f"; did you mean {suggestion!r} (from {catalog[suggestion].distribution}, not installed)?"
    elif suggestion:
        msg += f"; did you mean {suggestion!r}?"
    elif known:
        msg += f"; installed: {', '.join(known)}"
    else:
        msg += f"; no {label}s are installed"
    return msg + (f"; note: {why}" if failures else "")


def _reference(section: str, table: dict[str, Any], name: str) -> str:
    import difflib

    msg = f"no [{section}.{limits.key_text(name)}] in the recipe"
    near = difflib.get_close_matches(name, list(table), n=1)
    if near:
        msg += f"; did you mean {near[0]!r}?"
    elif table:
        msg += f"; defined: {', '.join(sorted(table))}"
    return msg


def check_components(recipe: Recipe, registry: Registry, source: str, base_dir: Path) -> dict[str, BaseModel]:
    """Validate names, options and references against the installed plugins. Returns the parsed
    options of every component by recipe path (``"tasks.simclr"``): building uses these, so options
    are validated once."""
    problems: list[tuple[str, str]] = []
    context = {"base_dir": base_dir}
    parsed: dict[str, BaseModel] = {}

    def check(kind: Kind, path: str, spec: ComponentSpec) -> None:
        component = registry.get(kind, spec.type)
        if component is None:
            problems.append((f"{path}.type", _unknown_name(registry, kind, spec.type)))
            return
        try:
            parsed[path] = component.options.model_validate(spec.options, context=context)
        except ValidationError as err:
            problems.extend(pydantic_problems(err, prefix=f"{path}.options", model=component.options))
        except Exception as exc:  # noqa: BLE001 - a validator that raised something else (OSError...)
            problems.append((f"{path}.options", f"could not be validated: {type(exc).__name__}: {exc}"))
        else:
            problems.extend(limits.value_problems(parsed[path], f"{path}.options"))
        problem = _factory_problem(component)
        if problem:
            problems.append((f"{path}.type", problem))

    def ref(path: str, section: str, table: dict[str, Any], name: str | None) -> None:
        if name is not None and name not in table:
            problems.append((path, _reference(section, table, name)))

    for name, spec in recipe.data.items():
        check("data_source", f"data.{name}", spec)
    for name, spec in recipe.augmentations.items():
        check("augmentation", f"augmentations.{name}", spec)
    for name, spec in recipe.backbones.items():
        check("backbone", f"backbones.{name}", spec)
    for name, spec in recipe.tasks.items():
        check("pretext_task", f"tasks.{name}", spec)
        ref(f"tasks.{name}.data", "data", recipe.data, spec.data)
        for suffix, key in backbone_keys(spec.backbone):
            ref(f"tasks.{name}.backbone{suffix}", "backbones", recipe.backbones, key)
        for i, aug in enumerate(spec.augment):
            ref(f"tasks.{name}.augment[{i}]", "augmentations", recipe.augmentations, aug)
    for name, spec in recipe.evaluators.items():
        check("evaluator", f"evaluators.{name}", spec)
        evaluator = registry.get("evaluator", spec.type)
        if evaluator is not None and getattr(evaluator.options, "needs_fit_data", False) and spec.fit_data is None:
            problems.append((f"evaluators.{name}.fit_data", f"{spec.type!r} needs fit_data (the set it fits on)"))
        ref(f"evaluators.{name}.data", "data", recipe.data, spec.data)
        ref(f"evaluators.{name}.fit_data", "data", recipe.data, spec.fit_data)
        if spec.backbone is None and len(recipe.backbones) > 1:
            problems.append((f"evaluators.{name}.backbone", "required when the recipe has several backbones"))
        for suffix, key in backbone_keys(spec.backbone):
            ref(f"evaluators.{name}.backbone{suffix}", "backbones", recipe.backbones, key)
        for i, aug in enumerate(spec.augment):
            ref(f"evaluators.{name}.augment[{i}]", "augmentations", recipe.augmentations, aug)

    problems.extend(_rounds_problems(recipe, registry, check, ref))

    best = recipe.train.best
    if best is not None:
        evaluator = best.metric.split("/", 1)[0]
        if evaluator not in recipe.evaluators:
            problems.append(("train.best.metric", _reference("evaluators", recipe.evaluators, evaluator)))
        elif not recipe.evaluators[evaluator].every:
            problems.append(("train.best.metric", f"evaluator {evaluator!r} runs only at the end: set "
                                                  f"evaluators.{evaluator}.every (steps between evaluations)"))

    health, log_every = recipe.train.health, recipe.train.log_every
    if health.enabled and health.every % log_every:
        problems.append(("train.health.every", f"{health.every} is not a multiple of train.log_every ({log_every}): "
                                               f"checks are merged into the train records"))

    opt_model = OPTIMIZER_OPTIONS[recipe.train.optimizer]
    try:
        optimizer_options = opt_model.model_validate(recipe.train.optimizer_options)
    except ValidationError as err:
        problems.extend(pydantic_problems(err, prefix="train.optimizer_options", model=opt_model))
    else:
        problems.extend(limits.value_problems(optimizer_options, "train.optimizer_options"))

    from selfsup.contract import check_contract  # sample keys flow as declared (skips what did not resolve)

    problems.extend(check_contract(recipe, registry, parsed))
    if problems:
        raise RecipeError(source, problems)
    return parsed


def _rounds_problems(recipe: Recipe, registry: Registry, check: Any, ref: Any) -> list[tuple[str, str]]:
    """``[rounds]`` against the rest of the recipe: the feedback's name, options and references, and
    each task's ``from_round``. ``check``/``ref`` are :func:`check_components`'s own (they add to its list)."""
    problems: list[tuple[str, str]] = []
    rounds = recipe.rounds
    late = {name: spec.from_round for name, spec in recipe.tasks.items() if spec.from_round}
    if rounds is None:
        problems += [(f"tasks.{name}.from_round", "needs a [rounds] table (the recipe trains in one round)")
                     for name in late]
        return problems
    feedback = rounds.feedback
    check("feedback", "rounds.feedback", feedback)
    ref("rounds.feedback.data", "data", recipe.data, feedback.data)
    if feedback.backbone is None and len(recipe.backbones) > 1:
        problems.append(("rounds.feedback.backbone", "required when the recipe has several backbones"))
    ref("rounds.feedback.backbone", "backbones", recipe.backbones, feedback.backbone)
    for i, aug in enumerate(feedback.augment):
        ref(f"rounds.feedback.augment[{i}]", "augmentations", recipe.augmentations, aug)
    for name, first in late.items():
        if first >= rounds.count:
            problems.append((f"tasks.{name}.from_round", f"{first} is not a round of rounds.count = {rounds.count} "
                                                         f"(rounds 0 to {rounds.count - 1})"))
    if len(late) == len(recipe.tasks):
        problems.append(("tasks", "every task has from_round > 0: round 0 would train nothing"))
    train = recipe.train
    if rounds.steps_per_round is not None and train.max_steps is not None:
        if (rounds.count - 1) * rounds.steps_per_round >= train.max_steps:
            problems.append(("rounds.steps_per_round", f"{rounds.count - 1} rounds of {rounds.steps_per_round} steps "
                                                       f"leave no step of train.max_steps = {train.max_steps} for "
                                                       f"the last round"))
    elif train.max_steps is not None and train.max_steps < rounds.count:
        problems.append(("rounds.count", f"{rounds.count} rounds need at least as many steps; train.max_steps is "
                                         f"{train.max_steps}"))
    return problems


def _factory_problem(component: Any) -> str | None:
    """Why the ``lazy("pkg.mod:fn")`` factory of ``component`` cannot be imported, or None. The
    import happens here, at validation, so a typo in a plugin is found before ``train``."""
    target = lazy_target(component.factory)
    if target is None:
        return None
    module, _, attr = target.partition(":")
    try:
        getattr(import_module(module), attr)
    except Exception as exc:  # noqa: BLE001 - whatever the plugin's module raises
        who = component.distribution or component.plugin
        return (f"{LABEL_OF_KIND[component.kind]} {component.name!r} of plugin {who!r} cannot be built: its factory "
                f"{target!r} does not import ({type(exc).__name__}: {exc})")
    return None


def resolve_source(source: str, registry: Registry) -> tuple[str, str, Path, str]:
    """A recipe file path or a registered recipe name -> (TOML text, label, base dir, default name)."""
    path = Path(source)
    try:
        is_file = path.suffix == ".toml" or path.exists()
        if is_file and not path.is_file():
            raise RecipeError(source, [("", "recipe file not found")])
    except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte
        raise RecipeError(source, [("", f"cannot read the recipe: {exc}")]) from None
    if is_file:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise RecipeError(source, [("", f"cannot read the recipe: {exc.strerror or exc}")]) from None
        return decode_recipe(raw, str(path)), str(path), path.resolve().parent, path.stem
    component = registry.get("recipe", source)
    if component is None:
        near = registry.closest("recipe", source)
        hint = f"; did you mean {near!r}?" if near else "; `selfsup recipes` lists the shipped ones"
        raise RecipeError(source, [("", f"no recipe file or shipped recipe named {source!r}{hint}")])
    return component.factory(), f"recipe {source!r} ({component.plugin})", Path.cwd(), source


def load_recipe(source: str, registry: Registry, overrides: list[str] | tuple[str, ...] = (), *,
                pretrained: str | Path | None = None, pretrained_backbone: str | None = None,
                values: dict[str, Any] | None = None) -> LoadedRecipe:
    """Read, override and fully validate a recipe. ``values``: overrides as ``{"train.lr": 3e-4}``
    (after the ``KEY=VALUE`` strings). ``pretrained`` (a run, checkpoint or export; ``selfsup
    finetune``) becomes the recipe's pretrained backbone, see :func:`with_pretrained`."""
    text, label, base_dir, default_name = resolve_source(source, registry)
    data = apply_overrides(parse_toml(text, label), list(overrides))
    for key, value in (values or {}).items():
        set_value(data, key, value)
    if pretrained is not None:
        data = with_pretrained(data, Path(pretrained), pretrained_backbone, label)
        if "name" not in data and "output_dir" not in data:
            data["name"] = f"{default_name}-{_run_name(Path(pretrained))}"
    recipe = parse_recipe(data, label, default_name)
    options = check_components(recipe, registry, label, base_dir)
    return LoadedRecipe(recipe=recipe, source=label, base_dir=base_dir, options=options)


class LoadedRecipe(BaseModel):
    """A validated recipe and where it came from."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    recipe: Recipe
    source: str
    base_dir: Path
    options: dict[str, Any] = {}  # parsed component options by recipe path ("tasks.simclr"), from check_components
