"""``mlm_accuracy``: masked-token accuracy and loss of an encoder on held-out text.

Each batch of held-out samples is masked by :func:`selfsup_text.tasks.mlm.mask_tokens` with a generator
seeded from the evaluator's ``seed`` and the samples' positions, so every evaluation (and every
checkpoint) is scored on the same masked positions. Reports ``accuracy`` (argmax of the MLM head
equals the original token, over all selected positions, including the 10% random and 10% kept
ones, as BERT's evaluation does), ``loss`` (mean cross entropy over them) and ``masked`` (how many).
"""

from __future__ import annotations

from typing import Any

import torch

from selfsup.components import BuildContext, EvalContext
from selfsup.lib import frozen, to_device
from selfsup_text.evaluators.batches import sample_batches
from selfsup_text.tasks.common import batch_generator, check_data, require_encoder, source_collate
from selfsup_text.tasks.mlm import mask_batch, mlm_loss, word_start_table


class MLMAccuracy:
    def __init__(self, options: Any):
        self.options = options

    @torch.no_grad()
    def evaluate(self, context: EvalContext) -> dict[str, float]:
        backbone = context.backbone
        require_encoder(backbone, f"evaluator {context.name!r}")
        collate = source_collate(context.data, backbone.tokenizer)
        loss_sum, correct, count = 0.0, 0, 0
        with frozen(backbone):
            for chunk in sample_batches(context.data, context.batch_size, context.seed, self.options.max_batches):
                generator = batch_generator(self.options.seed, "mlm_accuracy", chunk)
                batch = mask_batch(collate(chunk), backbone.tokenizer, self.options, generator, len(backbone.tokenizer))
                batch = to_device(batch, context.device)
                hidden = backbone.hidden_states(batch["input_ids"], batch.get("attention_mask"),
                                                batch.get("token_type_ids"))
                loss, right, n = mlm_loss(backbone, hidden, batch["mlm_labels"])
                loss_sum += float(loss) * int(n)
                correct, count = correct + int(right), count + int(n)
        if count == 0:
            raise ValueError(f"evaluator {context.name!r}: no token was masked (documents too short?)")
        return {"accuracy": correct / count, "loss": loss_sum / count, "masked": float(count)}


def check_masking_evaluator(options: Any, context: BuildContext, kind: str) -> None:
    """What an evaluator that masks text as MLM does needs, checked when it is built: an encoder
    backbone, a data source with the backbone's tokenizer and, for word-level masking, a tokenizer
    whose word starts can be read."""
    who = f"evaluator {context.name!r} ({kind})"
    if context.backbone is not None:
        require_encoder(context.backbone, who)
        if context.data is not None:
            check_data(context.backbone, context.data, who)
        if options.masking != "token":
            word_start_table(context.backbone.tokenizer)


def build(options: Any, context: BuildContext) -> MLMAccuracy:
    check_masking_evaluator(options, context, "mlm_accuracy")
    return MLMAccuracy(options)
