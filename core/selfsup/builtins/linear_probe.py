"""Linear probe: multinomial logistic regression on frozen (standardized) features, fitted with
full-batch L-BFGS; reports held-out accuracy (and fit accuracy, to show over-fitting)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from selfsup.builtins.options import LinearProbeOptions
from selfsup.components import EvalContext


def fit_linear_probe(
    x: torch.Tensor,  # [N, D]
    y: torch.Tensor,  # [N]
    *,
    num_classes: int,
    weight_decay: float,
    max_iter: int,
) -> torch.nn.Linear:
    head = torch.nn.Linear(x.shape[1], num_classes).to(x.device)
    with torch.no_grad():  # the problem is convex: start from zero, no RNG involved
        head.weight.zero_()
        head.bias.zero_()
    opt = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(head(x), y) + weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return head


class LinearProbe:
    needs_fit_data = True

    def __init__(self, options: LinearProbeOptions):
        self.options = options

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        x_fit, y_fit = context.features(context.fit_data)
        x_val, y_val = context.features(context.data)
        if y_fit is None or y_val is None:
            raise ValueError(f"evaluator {context.name!r}: a linear probe needs data sources that give a 'label'")
        x_fit, x_val = x_fit.float(), x_val.float()
        if self.options.standardize:
            mean, std = x_fit.mean(0), x_fit.std(0).clamp_min(1e-6)
            x_fit, x_val = (x_fit - mean) / std, (x_val - mean) / std
        num_classes = int(max(y_fit.max(), y_val.max())) + 1
        head = fit_linear_probe(
            x_fit, y_fit, num_classes=num_classes, weight_decay=self.options.weight_decay, max_iter=self.options.max_iter
        )
        with torch.no_grad():
            fit_acc = (head(x_fit).argmax(1) == y_fit).float().mean().item()
            acc = (head(x_val).argmax(1) == y_val).float().mean().item()
        return {"accuracy": acc, "fit_accuracy": fit_acc}
