"""Resuming with a changed recipe: what changed against the checkpoint's recipe, and whether it can.

Safe changes take effect on resume: the learning rate and its schedule (lr, schedule, warmup_steps,
min_lr), weight_decay (written into the optimizer's param groups), grad_clip, the run's length
(max_steps, epochs), evaluation, logging, health-check and checkpoint settings, task loss weights, and run
settings that do not touch the state (device, workers, compile, deterministic, tensorboard).

Everything else is refused, each changed field listed in one message: model shapes and components
(backbones, tasks, data, augmentations), the optimizer and its options (their state would not
fit), the batch layout and data order (batch_size, grad_accum, seed, task_policy), a precision
change to or from fp16 (the grad scaler's state), ``[rounds]``, and the run's length when ``[rounds]``
splits it evenly into rounds (the boundaries would move). ``--resume-weights-only`` starts a fresh optimizer
from the checkpoint's weights instead, and then allows every change the weights still fit.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

from selfsup.recipe import RecipeError

#: Dotted recipe paths (fnmatch patterns) whose change is applied on resume.
SAFE = (
    "name", "description", "output_dir",
    "train.lr", "train.schedule", "train.warmup_steps", "train.min_lr", "train.weight_decay", "train.grad_clip",
    "train.max_steps", "train.epochs", "train.log_every", "train.checkpoint_every", "train.keep_checkpoints",
    "train.tensorboard", "train.workers", "train.compile", "train.device", "train.deterministic",
    "train.find_unused_parameters", "train.health", "train.health.*", "train.fsdp", "train.fsdp.*",
    "evaluators", "evaluators.*", "tasks.*.weight",
)

#: Why a change is refused, by pattern (first match).
WHY = (
    ("backbones*", "the model's shapes and weights"),
    ("tasks.*.batch_size", "the batch layout and data positions"),
    ("tasks*", "the task heads and their data"),
    ("data*", "the data order and positions"),
    ("augmentations*", "the data the model sees"),
    ("train.optimizer*", "the optimizer's state"),
    ("train.precision", "the fp16 grad scaler's state"),
    ("train.strategy", "the checkpoint's layout (sharded or whole); --resume-weights-only switches"),
    ("train.batch_size", "the batch layout and data positions"),
    ("train.grad_accum", "the batch layout and data positions"),
    ("train.task_policy", "which task runs at each step"),
    ("seed", "the data order and augmentations"),
    ("rounds*", "the rounds, their boundaries and their feedback"),
)

#: Run lengths that move the round boundaries when ``[rounds]`` splits the run's steps evenly.
_ROUND_LENGTHS = ("train.max_steps", "train.epochs")


@dataclass(frozen=True)
class Change:
    path: str
    old: Any
    new: Any
    safe: bool

    def text(self) -> str:
        note = "applied" if self.safe else f"refused: changes {reason(self.path)}"
        return f"{self.path}: {_short(self.old)} -> {_short(self.new)} ({note})"


def reason(path: str) -> str:
    if path in _ROUND_LENGTHS:
        return "the round boundaries ([rounds] splits the run's steps; set rounds.steps_per_round to fix them)"
    return next((why for pattern, why in WHY if fnmatch.fnmatchcase(path, pattern)), "the run's state")


def _short(value: Any, limit: int = 60) -> str:
    text = "(unset)" if value is _MISSING else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_MISSING = object()


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _is_safe(path: str, old: Any, new: Any) -> bool:
    if path == "train.precision":  # bf16 <-> fp32 carry no state; fp16 has the grad scaler's
        return "fp16" not in (old, new)
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in SAFE)


def recipe_changes(saved: dict[str, Any] | None, current: dict[str, Any]) -> list[Change]:
    """Every leaf field that differs between the checkpoint's recipe and the current one."""
    if saved is None:
        return []
    before, after = _flatten(saved), _flatten(current)
    rounds = current.get("rounds") or saved.get("rounds")
    split = isinstance(rounds, dict) and not rounds.get("steps_per_round")  # the boundaries follow the length
    changes = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path, _MISSING), after.get(path, _MISSING)
        if old != new:
            safe = _is_safe(path, old, new) and not (split and path in _ROUND_LENGTHS)
            changes.append(Change(path, old, new, safe))
    return changes


def refuse_unsafe(changes: list[Change], source: str, *, weights_only: bool) -> None:
    """Raise one :class:`RecipeError` listing every change that cannot be resumed with."""
    if weights_only:
        return
    unsafe = [c for c in changes if not c.safe]
    if unsafe:
        problems = [(c.path, f"changed since the checkpoint ({_short(c.old)} -> {_short(c.new)}); this changes "
                             f"{reason(c.path)}") for c in unsafe]
        problems.append(("", "resume refused: restore these values, or pass --resume-weights-only to start a fresh "
                             "optimizer from the checkpoint's weights"))
        raise RecipeError(source, problems)
