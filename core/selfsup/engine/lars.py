"""LARS: layer-wise adaptive rate scaling.

You, Gitman and Ginsburg, Large Batch Training of Convolutional Networks, 2017
(arXiv:1708.03888), as used by SimCLR, BYOL and SwAV: each parameter's step is scaled by
``trust_coefficient * ||w|| / ||g + wd * w||``; biases and normalization weights (1-D tensors)
are neither decayed nor adapted when ``exclude_bias_and_norm`` is set.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch


class LARS(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
        exclude_bias_and_norm: bool = True,
    ):
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            trust_coefficient=trust_coefficient,
            eps=eps,
            exclude_bias_and_norm=exclude_bias_and_norm,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                adapt = not (group["exclude_bias_and_norm"] and p.ndim <= 1)
                if adapt:
                    if group["weight_decay"]:
                        grad = grad.add(p, alpha=group["weight_decay"])
                    p_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(grad)
                    trust = torch.where(
                        (p_norm > 0) & (g_norm > 0),
                        group["trust_coefficient"] * p_norm / (g_norm + group["eps"]),
                        torch.ones_like(p_norm),
                    )
                    grad = grad.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.clone(grad).detach()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss
