"""The core's supervised heads, on a backbone's pooled features ``[B, D]`` (any modality):
single-label classification, multi-label classification and regression. Each sizes itself from
``backbone.output_dim`` and, where its options leave it open, from the targets of the task's data
(number of classes, class weights, target mean and std)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.builtins.options import (
    ClassificationHeadOptions,
    HeadOptions,
    MultiLabelHeadOptions,
    RegressionHeadOptions,
)
from selfsup.components import BuildContext
from selfsup.lib.data import scan_targets


def mlp(in_dim: int, out_dim: int, options: HeadOptions) -> nn.Sequential:
    """Dropout, then ``hidden_dims`` (Linear + GELU + dropout each), then the output layer."""
    layers: list[nn.Module] = [nn.Dropout(options.dropout)] if options.dropout else []
    for width in options.hidden_dims:
        layers += [nn.Linear(in_dim, width), nn.GELU()] + ([nn.Dropout(options.dropout)] if options.dropout else [])
        in_dim = width
    return nn.Sequential(*layers, nn.Linear(in_dim, out_dim))


def _targets(context: BuildContext, key: str, what: str) -> list[Any]:
    if context.data is None:
        raise ValueError(f"{what} is not given and the head has no data to infer it from")
    return scan_targets(context.data, key)


class ClassificationHead(nn.Module):
    """One class per sample: logits ``[B, C]``, (weighted, smoothed) cross entropy, argmax."""

    problem = "single_label"

    def __init__(self, options: ClassificationHeadOptions, context: BuildContext):
        super().__init__()
        self.target = options.target
        labels = None
        if options.num_classes is None or options.class_weights == "balanced":
            labels = torch.as_tensor(_targets(context, options.target, "num_classes")).long().flatten()
            if labels.numel() == 0 or labels.min() < 0:
                raise ValueError(f"the task's data has no non-negative {options.target!r} labels")
        self.num_classes = options.num_classes or int(labels.max()) + 1
        if labels is not None and int(labels.max()) >= self.num_classes:
            raise ValueError(f"label {int(labels.max())} found, but num_classes is {self.num_classes}")
        weights = None
        if options.class_weights == "balanced":  # N / (C * count), scikit-learn's compute_class_weight
            counts = torch.bincount(labels, minlength=self.num_classes).double()
            weights = torch.where(counts > 0, labels.numel() / (self.num_classes * counts.clamp_min(1)), 0.0)
        elif isinstance(options.class_weights, list):
            if len(options.class_weights) != self.num_classes:
                raise ValueError(f"class_weights has {len(options.class_weights)} values for {self.num_classes} "
                                 f"classes")
            weights = torch.tensor(options.class_weights, dtype=torch.float64)
        self.register_buffer("class_weights", torch.ones(self.num_classes) if weights is None else weights.float())
        self.label_smoothing = options.label_smoothing
        self.options = options
        self.net = mlp(context.backbone.output_dim, self.num_classes, options)

    def export_options(self) -> dict[str, Any]:
        """Options that rebuild this head without data (sizes resolved; buffers come with the weights)."""
        return {**self.options.model_dump(), "num_classes": self.num_classes, "class_weights": "none"}

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # [B, D] -> [B, C]
        return self.net(features)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs.float(), targets.long(), weight=self.class_weights,
                               label_smoothing=self.label_smoothing)

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:  # [B]
        return outputs.argmax(-1)


class MultiLabelHead(nn.Module):
    """Any number of labels per sample: logits ``[B, C]``, binary cross entropy per label, threshold."""

    problem = "multi_label"

    def __init__(self, options: MultiLabelHeadOptions, context: BuildContext):
        super().__init__()
        self.target, self.threshold = options.target, options.threshold
        targets = None
        if options.num_labels is None or options.pos_weight == "balanced":
            targets = torch.stack([torch.as_tensor(t).float().flatten()
                                   for t in _targets(context, options.target, "num_labels")])  # [N, C]
        self.num_labels = options.num_labels or targets.shape[1]
        pos_weight = None
        if options.pos_weight == "balanced":
            positives = targets.sum(0)
            pos_weight = torch.where(positives > 0, (len(targets) - positives) / positives.clamp_min(1), 1.0)
        self.register_buffer("pos_weight", torch.ones(self.num_labels) if pos_weight is None else pos_weight)
        self.options = options
        self.net = mlp(context.backbone.output_dim, self.num_labels, options)

    def export_options(self) -> dict[str, Any]:
        """Options that rebuild this head without data (sizes resolved; buffers come with the weights)."""
        return {**self.options.model_dump(), "num_labels": self.num_labels, "pos_weight": "none"}

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # [B, D] -> [B, C]
        return self.net(features)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(outputs.float(), targets.float(), pos_weight=self.pos_weight)

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:  # [B, C] of 0/1
        return (outputs.float().sigmoid() > self.threshold).long()


class RegressionHead(nn.Module):
    """Real values: ``[B, K]``, mean squared error or Huber loss on standardised targets."""

    problem = "regression"

    def __init__(self, options: RegressionHeadOptions, context: BuildContext):
        super().__init__()
        self.target, self.kind = options.target, options.loss
        mean, std = torch.zeros(options.num_outputs), torch.ones(options.num_outputs)
        if options.standardize:
            values = torch.stack([torch.as_tensor(v).float().reshape(-1)
                                  for v in _targets(context, options.target, "the target scale")])  # [N, K]
            if values.shape[1] != options.num_outputs:
                raise ValueError(f"targets have {values.shape[1]} values each, but num_outputs is "
                                 f"{options.num_outputs}")
            mean, std = values.mean(0), values.std(0).clamp_min(1e-6) if len(values) > 1 else std
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.options = options
        self.net = mlp(context.backbone.output_dim, options.num_outputs, options)

    def export_options(self) -> dict[str, Any]:
        """Options that rebuild this head without data (the target scale comes with the weights)."""
        return {**self.options.model_dump(), "standardize": False}

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # [B, D] -> [B, K], standardised scale
        return self.net(features)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        scaled = (targets.float().reshape(outputs.shape) - self.mean) / self.std
        if self.kind == "huber":
            return F.huber_loss(outputs.float(), scaled)
        return F.mse_loss(outputs.float(), scaled)

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:  # [B, K] in the targets' units
        return outputs.float() * self.std + self.mean
