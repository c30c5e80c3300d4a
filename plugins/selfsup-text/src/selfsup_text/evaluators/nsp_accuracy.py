"""``nsp_accuracy``: accuracy of an encoder's next-sentence head on held-out pairs.

Pairs are built from the held-out documents exactly as the ``nsp`` task builds them
(:func:`selfsup_text.tasks.nsp.make_pairs`), with a generator seeded from the evaluator's ``seed`` and the
documents' positions, so every evaluation sees the same pairs. With ``rounds = R`` every document is
paired R times, each round with its own seed (``seed + round``): a new cut point and, for NotNext
pairs, another random document, so a small held-out split gives R times as many pairs. Reports
``accuracy``, ``loss`` (mean cross entropy), ``pairs`` and ``is_next`` (the fraction of IsNext pairs:
the majority-class baseline is ``max(is_next, 1 - is_next)``).
"""

from __future__ import annotations

from typing import Any

import torch

from selfsup.components import BuildContext, EvalContext
from selfsup.lib import frozen, to_device
from selfsup_text.evaluators.batches import sample_batches
from selfsup_text.tasks.common import batch_generator, check_data, require_encoder
from selfsup_text.tasks.nsp import IS_NEXT, check_sentence_source, make_pairs, nsp_loss


class NSPAccuracy:
    def __init__(self, options: Any):
        self.options = options

    @torch.no_grad()
    def evaluate(self, context: EvalContext) -> dict[str, float]:
        backbone, o = context.backbone, self.options
        check_sentence_source(backbone, context.data, f"evaluator {context.name!r}", o.max_length)
        loss_sum, correct, pairs, is_next = 0.0, 0, 0, 0
        with frozen(backbone):
            rounds = ((r, chunk) for r in range(o.rounds)
                      for chunk in sample_batches(context.data, context.batch_size, context.seed, o.max_batches))
            for r, chunk in rounds:
                generator = batch_generator(o.seed + r, "nsp_accuracy", chunk)
                batch = make_pairs(chunk, context.data, generator, max_length=o.max_length,
                                   next_probability=o.next_probability, tokenizer=backbone.tokenizer)
                batch = to_device(batch, context.device)
                hidden = backbone.hidden_states(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
                loss, right = nsp_loss(backbone, hidden, batch["nsp_label"])
                n = int(right.numel())
                loss_sum += float(loss) * n
                correct, pairs = correct + int(right.sum()), pairs + n
                is_next += int((batch["nsp_label"] == IS_NEXT).sum())
        return {"accuracy": correct / pairs, "loss": loss_sum / pairs, "pairs": float(pairs),
                "is_next": is_next / pairs}


def build(options: Any, context: BuildContext) -> NSPAccuracy:
    who = f"evaluator {context.name!r} (nsp_accuracy)"
    if context.backbone is not None:
        require_encoder(context.backbone, who)
        if context.data is not None:
            check_data(context.backbone, context.data, who)
            check_sentence_source(context.backbone, context.data, who, options.max_length)
    return NSPAccuracy(options)
