"""Linear probe: multinomial logistic regression on frozen (standardized) features, fitted with
full-batch L-BFGS (:func:`selfsup.lib.fit_linear_probe`); reports held-out accuracy (and fit accuracy,
to show over-fitting)."""

from __future__ import annotations

import torch

from selfsup.builtins.options import LinearProbeOptions
from selfsup.components import EvalContext
from selfsup.lib.probes import fit_linear_probe, standardize_features


class LinearProbe:
    needs_fit_data = True

    def __init__(self, options: LinearProbeOptions):
        self.options = options

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        x_fit, y_fit = context.features(context.fit_data)
        x_val, y_val = context.features(context.data)
        if y_fit is None or y_val is None:
            raise ValueError(f"evaluator {context.name!r}: a linear probe needs data sources that give a 'label'")
        if self.options.standardize:
            x_fit, x_val = standardize_features(x_fit, x_val)
        else:
            x_fit, x_val = x_fit.float(), x_val.float()
        num_classes = int(max(y_fit.max(), y_val.max())) + 1
        head = fit_linear_probe(
            x_fit, y_fit, num_classes=num_classes, weight_decay=self.options.weight_decay,
            max_iter=self.options.max_iter
        )
        with torch.no_grad():
            fit_acc = (head(x_fit).argmax(1) == y_fit).float().mean().item()
            acc = (head(x_val).argmax(1) == y_val).float().mean().item()
        return {"accuracy": acc, "fit_accuracy": fit_acc}
