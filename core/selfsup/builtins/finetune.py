"""Supervised fine-tuning of a (pretrained) backbone with a registered head, as a task of the
ordinary training loop, so fine-tuning has what ``train`` has: resume, preemption, divergence
checks, checkpoints, evaluators, best-checkpoint selection and early stopping (``[train.best]``).

Modes (``mode``): ``full`` trains every weight; ``linear`` freezes the backbone (eval mode, no
gradients: with a linear head, the linear-probe protocol of SimCLR, Chen et al. 2020, trained by SGD);
``partial`` trains the top ``unfreeze_last`` layer groups of :func:`selfsup.lib.layer_groups`.
Layer-wise learning-rate decay (Clark et al., ELECTRA, ICLR 2020; Bao et al., BEiT, ICLR 2022)
scales group ``i`` of ``L`` by ``layer_decay^(L - i)``: lower layers, which hold the most general
features, move least. The optimizer reads the scales from :meth:`FineTune.lr_scales`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from selfsup.builtins.options import FineTuneOptions
from selfsup.components import BuildContext, TaskOutput
from selfsup.lib.modules import frozen, layer_groups


class FineTune(nn.Module):
    def __init__(self, options: FineTuneOptions, context: BuildContext):
        super().__init__()
        if isinstance(context.backbone, dict):
            raise ValueError("finetune takes one backbone, not a table of roles")
        self.mode, self.options = options.mode, options
        self.head = context.build("heads", options.head, options.head_options)
        groups = layer_groups(context.backbone)  # input side first
        trainable = {"full": len(groups), "linear": 0, "partial": min(options.unfreeze_last, len(groups))}[self.mode]
        self.frozen_groups = len(groups) - trainable
        for group in groups[: self.frozen_groups]:
            for p in group:
                p.requires_grad_(False)
        top = len(groups)  # the head is layer L, at the full lr
        self._scales = {p: options.layer_decay ** (top - i) for i, group in enumerate(groups) for p in group
                        if p.requires_grad and options.layer_decay != 1.0}

    def export_options(self) -> dict[str, Any]:
        """This task's options with its head's resolved ones: rebuilds it without data (an export)."""
        resolved = getattr(self.head, "export_options", None)
        head_options = resolved() if callable(resolved) else dict(self.options.head_options)
        return {**self.options.model_dump(), "head_options": head_options}

    def lr_scales(self) -> dict[nn.Parameter, float]:
        """Learning-rate multiplier of the backbone's trainable parameters (those not listed: 1)."""
        return dict(self._scales)

    def outputs(self, batch: dict[str, Any], backbone: Any) -> torch.Tensor:
        """The head's outputs for a batch: ``head(head.inputs(batch, backbone))``."""
        read = getattr(self.head, "inputs", None)
        if self.mode == "linear":
            with frozen(backbone):
                features = read(batch, backbone) if read else backbone.embed(batch)
        else:
            features = read(batch, backbone) if read else backbone.embed(batch)
        return self.head(features)

    def forward(self, batch: dict[str, Any], backbone: Any) -> TaskOutput:
        if self.head.target not in batch:
            raise KeyError(f"batches have no {self.head.target!r} (the head's target); they have {sorted(batch)}")
        targets = batch[self.head.target]
        outputs = self.outputs(batch, backbone)
        loss = self.head.loss(outputs, targets)
        metrics = {}
        if self.head.problem in ("single_label", "token"):
            with torch.no_grad():
                predicted = self.head.predict(outputs)
                targets = targets.long()[:, : predicted.shape[1]] if self.head.problem == "token" else targets.long()
                keep = targets != -100
                metrics["accuracy"] = (predicted[keep] == targets[keep]).float().mean()
        return TaskOutput(loss=loss, metrics=metrics)
