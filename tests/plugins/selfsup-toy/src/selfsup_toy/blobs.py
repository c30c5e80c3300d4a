"""Gaussian blobs with a nuisance offset, and noisy multi-view augmentation."""

from __future__ import annotations

from typing import Any

import torch

from selfsup.lib import split_indices


class Blobs:
    """``classes`` Gaussian clusters in ``dim`` dimensions; each point also gets a large random
    offset along a few shared nuisance directions, so raw-feature kNN is hard and learning helps."""

    def __init__(self, options: Any):
        g = torch.Generator().manual_seed(options.seed)
        centres = torch.randn(options.classes, options.dim, generator=g) * 2.0
        labels = torch.arange(options.n) % options.classes
        x = centres[labels] + options.spread * torch.randn(options.n, options.dim, generator=g)
        if options.nuisance:
            basis = torch.randn(2, options.dim, generator=g)
            x = x + options.nuisance * torch.randn(options.n, 2, generator=g) @ basis
        idx = torch.as_tensor(split_indices(options.n, options.split, seed=options.seed, labels=labels.numpy()))
        self.x, self.labels = x[idx].contiguous(), labels[idx].contiguous()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input": self.x[i], "label": self.labels[i]}


class NoisyViews:
    def __init__(self, options: Any):
        self.std, self.views = options.std, options.views

    def __call__(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        x = sample["input"]  # [D]
        noise = torch.randn((self.views, *x.shape), generator=generator) * self.std  # [V, D]
        return {**sample, "views": x.unsqueeze(0) + noise}
