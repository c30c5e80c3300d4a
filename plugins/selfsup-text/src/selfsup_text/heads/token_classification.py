"""Token classification: a linear layer on every position's last hidden state (the BERT recipe for
named-entity recognition; Devlin et al., BERT, NAACL 2019, section 4.3): logits ``[B, T, C]``,
cross entropy over the positions whose target is not -100 (padding, special tokens, the sub-words
after a word's first)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.components import BuildContext
from selfsup.lib.data import scan_targets
from selfsup_text.heads.options import TokenClassificationOptions

IGNORE = -100


class TokenClassificationHead(nn.Module):
    problem = "token"

    def __init__(self, options: TokenClassificationOptions, context: BuildContext):
        super().__init__()
        if not callable(getattr(context.backbone, "hidden_states", None)):
            raise ValueError("token_classification needs a backbone with per-token states (the transformer backbone)")
        self.target = options.target
        num_classes = options.num_classes
        if num_classes is None:
            if context.data is None:
                raise ValueError("num_classes is not given and the head has no data to infer it from")
            values = [torch.as_tensor(t).long().flatten() for t in scan_targets(context.data, options.target)]
            labelled = torch.cat(values)[torch.cat(values) != IGNORE]
            if labelled.numel() == 0:
                raise ValueError(f"the task's data has no {options.target!r} class other than {IGNORE}")
            num_classes = int(labelled.max()) + 1
        self.num_classes = num_classes
        self.options = options
        self.dropout = nn.Dropout(options.dropout)
        self.linear = nn.Linear(context.backbone.output_dim, num_classes)

    def export_options(self) -> dict[str, Any]:
        return {**self.options.model_dump(), "num_classes": self.num_classes}

    def inputs(self, batch: Mapping[str, Any], backbone: Any) -> torch.Tensor:
        """The backbone's last hidden states ``[B, T, D]`` (not pooled)."""
        return backbone(batch)

    def forward(self, states: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, T, C]
        return self.linear(self.dropout(states))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.long()[:, : outputs.shape[1]]  # [B, T]
        return F.cross_entropy(outputs.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE)

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:  # [B, T]
        return outputs.argmax(-1)


def build(options: TokenClassificationOptions, context: BuildContext) -> TokenClassificationHead:
    return TokenClassificationHead(options, context)
