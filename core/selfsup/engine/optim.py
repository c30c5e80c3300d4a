"""Optimizers and the learning-rate schedule named in ``[train]``."""

from __future__ import annotations

import math

import torch
from torch import nn

from selfsup.engine.lars import LARS
from selfsup.recipe import OPTIMIZER_OPTIONS, TrainSpec


def lr_scales(model: nn.Module) -> dict[int, float]:
    """``{id(parameter): lr multiplier}`` from every task that defines ``lr_scales()`` (fine-tuning's
    layer-wise decay); a parameter two tasks scale gets the smaller multiplier."""
    scales: dict[int, float] = {}
    for task in getattr(model, "tasks", {}).values():
        own = getattr(task, "lr_scales", None)
        for p, scale in (own() if callable(own) else {}).items():
            scales[id(p)] = min(scale, scales.get(id(p), scale))
    return scales


def param_groups(model: nn.Module, weight_decay: float, lr: float | None = None) -> list[dict]:
    """Decay matrices and convolution kernels; never biases or normalization weights (1-D). Parameters
    a task scales (:func:`lr_scales`) go to groups of their own, with ``lr_scale`` (and ``lr``, when given)."""
    scales = lr_scales(model)
    groups: dict[tuple[bool, float], list] = {(True, 1.0): []}  # the first group, even when empty (as always)
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault((p.ndim > 1, scales.get(id(p), 1.0)), []).append(p)
    out = []
    for (decay, scale), params in sorted(groups.items(), key=lambda kv: (not kv[0][0], -kv[0][1])):
        if not params and (decay, scale) != (True, 1.0):
            continue
        group = {"params": params, "weight_decay": weight_decay if decay else 0.0, "decay": decay}
        if scale != 1.0 or len({s for _, s in groups}) > 1:
            group["lr_scale"] = scale
            if lr is not None:
                group["lr"] = lr * scale
        out.append(group)
    return out


def apply_hyperparameters(optimizer: torch.optim.Optimizer, train: TrainSpec) -> None:
    """Write the recipe's lr and weight_decay into every param group (after an optimizer state from
    a checkpoint was loaded, which brings the old values): a resume with a changed lr or weight
    decay trains with the new ones. The scheduler built next takes ``initial_lr`` as its base."""
    for i, group in enumerate(optimizer.param_groups):
        group["lr"] = group["initial_lr"] = train.lr * group.get("lr_scale", 1.0)
        if group.get("decay", i == 0 or isinstance(optimizer, LARS)):
            group["weight_decay"] = train.weight_decay


def build_optimizer(model: nn.Module, train: TrainSpec) -> torch.optim.Optimizer:
    opts = OPTIMIZER_OPTIONS[train.optimizer].model_validate(train.optimizer_options)
    if train.optimizer == "lars":  # LARS decides per tensor what to decay and adapt
        scales = lr_scales(model)
        if not scales:
            params = [p for p in model.parameters() if p.requires_grad]
            return LARS(params, lr=train.lr, weight_decay=train.weight_decay, **opts.model_dump())
        by_scale: dict[float, list] = {}
        for p in model.parameters():
            if p.requires_grad:
                by_scale.setdefault(scales.get(id(p), 1.0), []).append(p)
        groups = [{"params": ps, "lr": train.lr * s, "lr_scale": s} for s, ps in by_scale.items()]
        return LARS(groups, lr=train.lr, weight_decay=train.weight_decay, **opts.model_dump())
    groups = param_groups(model, train.weight_decay, train.lr)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=train.lr, betas=opts.betas, eps=opts.eps, fused=opts.fused)
    if train.optimizer == "adam":  # L2 penalty added to the gradient, as torch's Adam does
        return torch.optim.Adam(groups, lr=train.lr, betas=opts.betas, eps=opts.eps, fused=opts.fused)
    if train.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=train.lr, momentum=opts.momentum, nesterov=opts.nesterov)
    if train.optimizer == "adagrad":
        return torch.optim.Adagrad(groups, lr=train.lr, lr_decay=opts.lr_decay, eps=opts.eps)
    raise ValueError(f"train.optimizer: unknown optimizer {train.optimizer!r}")  # unreachable: validated


def lr_factor(step: int, *, total: int, warmup: int, schedule: str, min_ratio: float) -> float:
    """Multiplier of the base lr at ``step`` (0-based): linear warmup, then cosine/linear/constant
    decay to ``min_ratio``."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return min_ratio + (1 - min_ratio) * (1 - progress)  # linear


def build_scheduler(
    optimizer: torch.optim.Optimizer, train: TrainSpec, total_steps: int, *, start: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """The recipe's schedule over ``total_steps``, positioned after ``start`` optimizer steps (a
    resumed run): the lr it sets is the one an uninterrupted run would have at that step."""
    min_ratio = train.min_lr / train.lr
    if start:
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", train.lr * group.get("lr_scale", 1.0))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(
            step, total=total_steps, warmup=train.warmup_steps, schedule=train.schedule, min_ratio=min_ratio
        ),
        last_epoch=start - 1,
    )
