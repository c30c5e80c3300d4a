"""SimCSE (the ``simcse`` task): contrastive sentence embeddings.

Gao, Yao and Chen, SimCSE: Simple Contrastive Learning of Sentence Embeddings, EMNLP 2021
(https://arxiv.org/abs/2104.08821).

* Unsupervised: the batch is encoded twice with dropout on (one forward pass over the batch stacked
  twice, so each copy gets its own dropout masks); the positive of sentence i's first encoding
  h_i is its second encoding h'_i, the other second encodings of the batch are its negatives:
  ``l_i = -log exp(sim(h_i, h'_i)/tau) / sum_j exp(sim(h_i, h'_j)/tau)`` (eq. 4), with cosine
  ``sim`` and ``tau = 0.05``.
* Supervised: anchors ``input_ids``, positives ``positive_ids`` and optional hard negatives
  ``negative_ids`` (e.g. NLI entailment/contradiction); candidates are all positives and all hard
  negatives of the batch: ``l_i = -log e^{sim(h_i,h_i+)/tau} / sum_j (e^{sim(h_i,h_j+)/tau} +
  e^{sim(h_i,h_j-)/tau})`` (eq. 5). ``hard_negative_weight`` is added to the logit of each anchor's
  own hard negative (the official code's ``hard_negative_weight``; 0 = the paper's loss).
* Positive pairs without labels: two token augmentations, the first writing ``positive_ids``
  (``out_key``) and the second editing ``input_ids``, give two independent views of one text, and
  the same loss (eq. 5 without hard negatives) contrasts them, dropout still on. With ``span_crop``
  these are two spans of one paragraph, as the crop augmentation of the paper's Table 1 and the
  same-document spans of DeCLUTR (Giorgi et al., ACL 2021); for document-level similarity (the Lee
  ratings) they teach topic where dropout views of an identical text do not (docs/text.md).

Under DDP the candidates (second encodings, positives, hard negatives) are gathered from every rank
with gradients (:func:`selfsup.lib.info_nce` with ``gather``), so the negatives come from the
global batch. Pooling: ``cls`` (the first token, trained through an MLP = Linear + tanh as the paper
does for its CLS representation; ``embed`` and evaluators use the pooled output without the MLP, the
paper's unsupervised setting) or ``mean`` (masked mean).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.components import BuildContext, TaskOutput
from selfsup.lib import info_nce
from selfsup_text.tasks.common import check_data, source_collate


def simcse_loss(
    anchors: torch.Tensor,  # [B, D]
    positives: torch.Tensor,  # [B, D]; row i is the positive of anchors[i]
    negatives: torch.Tensor | None = None,  # [B, D]; row i is the hard negative of anchors[i]
    *,
    temperature: float = 0.05,
    hard_negative_weight: float = 0.0,
    gather: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss, accuracy)``: the SimCSE cross entropy over cosine similarities / temperature, with
    the positives (and hard negatives) of the whole (global) batch as candidates, and the fraction
    of anchors whose most similar candidate is their positive."""
    with torch.autocast(anchors.device.type, enabled=False):  # the loss in float32, also under bf16
        a = F.normalize(anchors.float(), dim=-1)  # [B, D]
        pos = F.normalize(positives.float(), dim=-1)  # [B, D]: the candidates, gathered from every rank
        neg = None if negatives is None else F.normalize(negatives.float(), dim=-1)  # [B, D]
        loss, accuracy = info_nce(a, pos, temperature=temperature, negatives=neg,
                                  hard_negative_weight=hard_negative_weight, gather=gather)
    return loss, accuracy


class SimCSE(nn.Module):
    """The SimCSE task; ``variant`` "auto" is supervised when batches carry ``positive_ids``."""

    def __init__(self, options: Any, backbone: Any, data: Any):
        super().__init__()
        self.options = options
        self.pooling = options.pooling or backbone.pooling
        dim = backbone.output_dim
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.Tanh()) if options.mlp else None
        self._collate = source_collate(data, backbone.tokenizer)

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return self._collate(samples)

    def encode(self, backbone: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """Pooled (and, with ``mlp``, projected) embeddings ``[N, D]``."""
        hidden = backbone.hidden_states(input_ids, attention_mask)  # [N, T, D]
        z = backbone.pool(hidden, attention_mask, self.pooling)  # [N, D]
        return self.mlp(z) if self.mlp is not None else z

    def forward(self, batch: dict[str, Any], backbone: Any) -> TaskOutput:
        o = self.options
        supervised = o.variant == "supervised" or (o.variant == "auto" and "positive_ids" in batch)
        ids, mask = batch["input_ids"], batch.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(ids)
        b = ids.shape[0]
        if not supervised:
            z = self.encode(backbone, torch.cat([ids, ids]), torch.cat([mask, mask]))  # [2B, D]: two dropout views
            loss, accuracy = simcse_loss(z[:b], z[b:], temperature=o.temperature, gather=o.gather_distributed)
            return TaskOutput(loss=loss, metrics={"accuracy": accuracy.detach()})
        if "positive_ids" not in batch:
            raise ValueError("supervised simcse needs batches with 'positive_ids' (a pair data source)")
        groups = [(ids, mask), (batch["positive_ids"], batch.get("positive_attention_mask"))]
        if "negative_ids" in batch:
            groups.append((batch["negative_ids"], batch.get("negative_attention_mask")))
        z = [self.encode(backbone, g_ids, g_mask if g_mask is not None else torch.ones_like(g_ids))
             for g_ids, g_mask in groups]
        loss, accuracy = simcse_loss(
            z[0], z[1], z[2] if len(z) > 2 else None, temperature=o.temperature,
            hard_negative_weight=o.hard_negative_weight, gather=o.gather_distributed,
        )
        return TaskOutput(loss=loss, metrics={"accuracy": accuracy.detach()})


def build(options: Any, context: BuildContext) -> SimCSE:
    who = f"simcse task {context.name!r}"
    check_data(context.backbone, context.data, who)
    data = context.data
    if options.variant == "supervised" and hasattr(data, "__getitem__") and hasattr(data, "__len__") and len(data):
        if "positive_ids" not in data[0]:
            raise ValueError(f"{who}: variant = 'supervised' needs samples with 'positive_ids' (e.g. jsonl with "
                             f"positive_field)")
    return SimCSE(options, context.backbone, context.data)
