"""``masked_token_probe``: what an encoder's frozen features at a masked position say about the token.

A linear probe (Alain and Bengio, Understanding intermediate layers using linear classifier probes,
ICLR 2017 workshop) on contextual token features, as the probing literature reads what a
pretrained encoder knows at each position (Tenney et al., What do you learn from context?, ICLR
2019). Every sample of ``fit_data`` and of ``data`` is masked as ``mlm_accuracy`` masks it (the same
seeded positions at every evaluation); the features are the encoder's final hidden states at the
positions replaced by ``[MASK]`` (not the 10% random or kept ones: there the token is in the
input), the label is the token that was there. The classes are the ``classes`` most frequent tokens
among the fit positions; positions holding another token are left out on both sides. A multinomial
logistic regression on standardised features (:func:`selfsup.lib.fit_linear_probe`, full-batch
L-BFGS, no randomness) is fitted on the fit positions and scored on the evaluated ones.

Unlike ``mlm_accuracy`` it needs no trained MLM head, so it scores an encoder trained by any
objective (data2vec regresses a teacher's layers and never trains a token head) and its random
initialisation alike. Reports ``accuracy``, ``loss`` (the probe's mean cross entropy on the
evaluated positions), ``fit_accuracy``, ``majority`` (the share of the most frequent class among
the scored positions: what a constant guess reaches), ``positions`` (scored) and ``covered`` (the
share of the masked positions whose token is among the classes).
"""

from __future__ import annotations

from typing import Any

import torch

from selfsup.components import BuildContext, EvalContext
from selfsup.lib import fit_linear_probe, frozen, standardize_features, to_device
from selfsup_text.evaluators.batches import sample_batches
from selfsup_text.evaluators.mlm_accuracy import check_masking_evaluator
from selfsup_text.tasks.common import batch_generator, check_data, require_encoder, source_collate
from selfsup_text.tasks.mlm import mask_batch


class MaskedTokenProbe:
    needs_fit_data = True

    def __init__(self, options: Any):
        self.options = options

    @torch.no_grad()
    def masked_features(self, context: EvalContext, data: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features [N, D] float32, tokens [N] int64)`` at the [MASK] positions of ``data``."""
        backbone, o = context.backbone, self.options
        collate = source_collate(data, backbone.tokenizer)
        mask_id = int(backbone.tokenizer.mask_token_id)
        feats, tokens = [], []
        with frozen(backbone):
            for chunk in sample_batches(data, context.batch_size, context.seed, o.max_batches):
                generator = batch_generator(o.seed, "masked_token_probe", chunk)
                batch = mask_batch(collate(chunk), backbone.tokenizer, o, generator, len(backbone.tokenizer))
                batch = to_device(batch, context.device)
                hidden = backbone.hidden_states(batch["input_ids"], batch.get("attention_mask"),
                                                batch.get("token_type_ids"))  # [B, T, D]
                labels = batch["mlm_labels"]  # [B, T], -100 where not selected
                where = (labels != -100) & (batch["input_ids"] == mask_id)  # [B, T]
                feats.append(hidden[where].float().cpu())  # [n, D]
                tokens.append(labels[where].cpu())  # [n]
        if not feats or sum(len(t) for t in tokens) == 0:
            raise ValueError(f"evaluator {context.name!r}: no token was masked (documents too short?)")
        return torch.cat(feats), torch.cat(tokens)

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        who = f"evaluator {context.name!r} (masked_token_probe)"
        require_encoder(context.backbone, who)
        check_data(context.backbone, context.fit_data, f"{who}, fit_data")  # the build saw only ``data``
        x_fit, y_fit = self.masked_features(context, context.fit_data)
        x_val, y_val = self.masked_features(context, context.data)
        counts = torch.bincount(y_fit)
        top = counts.argsort(descending=True, stable=True)[: self.options.classes]  # ties: lower id first
        top = top[counts[top] > 0]  # [C] token ids, most frequent first
        index = torch.full((max(int(y_fit.max()), int(y_val.max())) + 1,), -1, dtype=torch.long)
        index[top] = torch.arange(len(top))
        c_fit, c_val = index[y_fit], index[y_val]  # class or -1
        keep_fit, keep_val = c_fit >= 0, c_val >= 0
        if int(keep_val.sum()) == 0:
            raise ValueError(f"evaluator {context.name!r}: no evaluated masked token is among the fit data's "
                             f"{len(top)} most frequent")
        x_fit, x_val = standardize_features(x_fit[keep_fit], x_val[keep_val])
        y_fit, y_val = c_fit[keep_fit], c_val[keep_val]
        head = fit_linear_probe(x_fit, y_fit, num_classes=len(top), weight_decay=self.options.weight_decay,
                                max_iter=self.options.max_iter)
        with torch.no_grad():
            fit_acc = (head(x_fit).argmax(1) == y_fit).float().mean().item()
            logits = head(x_val)  # [N, C]
            acc = (logits.argmax(1) == y_val).float().mean().item()
            loss = torch.nn.functional.cross_entropy(logits, y_val).item()
        majority = torch.bincount(y_val, minlength=len(top)).max().item() / len(y_val)
        return {"accuracy": acc, "loss": loss, "fit_accuracy": fit_acc, "majority": majority,
                "positions": float(len(y_val)), "covered": float(keep_val.double().mean())}


def build(options: Any, context: BuildContext) -> MaskedTokenProbe:
    check_masking_evaluator(options, context, "masked_token_probe")
    return MaskedTokenProbe(options)
