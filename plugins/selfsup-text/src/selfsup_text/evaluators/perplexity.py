"""``perplexity``: held-out loss and perplexity of a decoder, beside a unigram baseline.

The held-out windows (a source with ``window``) go through the decoder exactly as in the ``clm``
task (:func:`selfsup_text.tasks.clm.clm_forward`, including its document isolation and its choice of
ignored targets); ``loss`` is the mean next-token cross entropy (nats) over the kept targets and
``perplexity = exp(loss)``. With ``fit_data``, a unigram model is fitted on its token counts with
add-one (Laplace) smoothing, ``p(t) = (count(t) + 1) / (N + V)``, and scored on the same targets:
``unigram_perplexity`` is the bar a language model must clear.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from selfsup.components import BuildContext, EvalContext
from selfsup.lib import frozen, to_device
from selfsup_text.evaluators.batches import sample_batches, samples_of
from selfsup_text.tasks.clm import clm_forward, require_decoder, require_window
from selfsup_text.tasks.common import check_data, source_collate


def unigram_log_probs(source: Any, vocab_size: int, seed: int) -> torch.Tensor:
    """``[V]`` log-probabilities of the add-one smoothed unigram model of ``source``'s tokens."""
    counts = torch.zeros(vocab_size, dtype=torch.float64)
    for sample in samples_of(source, seed):
        ids = torch.as_tensor(sample["input_ids"]).long().flatten()
        counts += torch.bincount(ids, minlength=vocab_size)[:vocab_size].double()
    return torch.log((counts + 1) / (counts.sum() + vocab_size))


class Perplexity:
    def __init__(self, options: Any):
        self.options = options

    @torch.no_grad()
    def evaluate(self, context: EvalContext) -> dict[str, float]:
        backbone = context.backbone
        require_decoder(backbone, f"evaluator {context.name!r}")
        collate = source_collate(context.data, backbone.tokenizer)
        unigram = None
        if context.fit_data is not None:
            unigram = unigram_log_probs(context.fit_data, len(backbone.tokenizer), context.seed).to(context.device)
        nll = torch.zeros((), dtype=torch.float64, device=context.device)
        unigram_nll = torch.zeros((), dtype=torch.float64, device=context.device)
        count = 0
        with frozen(backbone):
            for chunk in sample_batches(context.data, context.batch_size, context.seed, self.options.max_batches):
                batch = to_device(collate(chunk), context.device)
                logits, targets = clm_forward(
                    backbone, batch, cross_document_attention=self.options.cross_document_attention
                )  # [B, T, V], [B, T]
                kept = targets != -100
                nll += F.cross_entropy(logits.float()[kept], targets[kept], reduction="sum").double()
                if unigram is not None:
                    unigram_nll -= unigram[targets[kept]].sum()
                count += int(kept.sum())
        if count == 0:
            raise ValueError(f"evaluator {context.name!r}: the held-out data gave no targets")
        loss = float(nll) / count
        metrics = {"loss": loss, "perplexity": math.exp(loss), "tokens": float(count)}
        if unigram is not None:
            metrics["unigram_perplexity"] = math.exp(float(unigram_nll) / count)
        return metrics


def build(options: Any, context: BuildContext) -> Perplexity:
    who = f"evaluator {context.name!r} (perplexity)"
    if context.backbone is not None:
        require_decoder(context.backbone, who)
        if context.data is not None:
            require_window(context.backbone, context.data, who)
            check_data(context.backbone, context.data, who)
    return Perplexity(options)
