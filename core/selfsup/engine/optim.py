"""Optimizers and the learning-rate schedule named in ``[train]``."""

from __future__ import annotations

import math

import torch
from torch import nn

from selfsup.engine.lars import LARS
from selfsup.recipe import OPTIMIZER_OPTIONS, TrainSpec


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices and convolution kernels; never biases or normalization weights (1-D)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "decay": True}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "decay": False})
    return groups


def apply_hyperparameters(optimizer: torch.optim.Optimizer, train: TrainSpec) -> None:
    """Write the recipe's lr and weight_decay into every param group (after an optimizer state from
    a checkpoint was loaded, which brings the old values): a resume with a changed lr or weight
    decay trains with the new ones. The scheduler built next takes ``initial_lr`` as its base."""
    for i, group in enumerate(optimizer.param_groups):
        group["lr"] = group["initial_lr"] = train.lr
        if group.get("decay", i == 0 or isinstance(optimizer, LARS)):
            group["weight_decay"] = train.weight_decay


def build_optimizer(model: nn.Module, train: TrainSpec) -> torch.optim.Optimizer:
    opts = OPTIMIZER_OPTIONS[train.optimizer].model_validate(train.optimizer_options)
    if train.optimizer == "lars":  # LARS decides per tensor what to decay and adapt
        params = [p for p in model.parameters() if p.requires_grad]
        return LARS(params, lr=train.lr, weight_decay=train.weight_decay, **opts.model_dump())
    groups = param_groups(model, train.weight_decay)
    if train.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=train.lr, betas=opts.betas, eps=opts.eps)
    if train.optimizer == "adam":  # L2 penalty added to the gradient, as torch's Adam does
        return torch.optim.Adam(groups, lr=train.lr, betas=opts.betas, eps=opts.eps)
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
            group.setdefault("initial_lr", train.lr)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(
            step, total=total_steps, warmup=train.warmup_steps, schedule=train.schedule, min_ratio=min_ratio
        ),
        last_epoch=start - 1,
    )
