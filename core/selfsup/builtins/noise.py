"""Additive Gaussian noise on a float tensor field."""

from __future__ import annotations

from typing import Any

import torch

from selfsup.builtins.options import NoiseOptions


class GaussianNoise:
    def __init__(self, options: NoiseOptions):
        self.std = options.std
        self.key = options.key

    def __call__(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        x = sample[self.key]
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) * self.std
        return {**sample, self.key: x + noise}
