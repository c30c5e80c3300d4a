"""Masked language modelling (the ``mlm`` task) and the masking function shared by NSP and evaluators.

Devlin, Chang, Lee and Toutanova, BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding, NAACL 2019 (https://arxiv.org/abs/1810.04805): 15% of the tokens are selected for
prediction; a selected token is replaced by [MASK] 80% of the time, by a random token 10% and kept
10%; the loss is the cross entropy of the MLM head on the selected positions only.

Variants (``masking``):

* ``"token"``: every non-special token is selected independently with probability
  ``mlm_probability`` (as BERT and ``transformers.DataCollatorForLanguageModeling``); the
  80/10/10 choice is made per token.
* ``"whole_word"``: words are selected independently with probability ``mlm_probability`` and all
  their tokens are selected together (BERT's whole-word-masking release); 80/10/10 per token, as
  in BERT's ``create_pretraining_data.py``.
* ``"span"``: SpanBERT (Joshi, Chen, Liu, Weld, Zettlemoyer and Levy, SpanBERT: Improving
  Pre-training by Representing and Predicting Spans, TACL 2020, https://arxiv.org/abs/1907.10529):
  span lengths in words are drawn from Geometric(``span_p`` = 0.2) truncated at ``max_span_length``
  = 10 and renormalised (mean 3.8 words, as in the paper and its code), each span starts at a
  uniformly drawn word, and spans are added until ``round(mlm_probability * n)`` of the row's n
  eligible tokens are selected (a span whose anchor word is taken is redrawn, the last span is
  cut at the budget, as in SpanBERT's code); 80/10/10 is chosen per span (all tokens of a span
  get [MASK], or all random, or all kept).

Word boundaries come from the tokenizer's token strings (``convert_ids_to_tokens``), one rule per
tokenizer kind, detected from its vocabulary:

* WordPiece (BERT, MiniLM): a token starting with ``##`` continues the previous word; any other
  token begins a word;
* byte-level BPE (GPT-2, our ``bpe-8k`` and ``bytes``): a token starting with ``Ġ`` (the byte map's
  stand-in for a space) begins a word, other tokens continue the word before them (so
  punctuation attaches to the preceding word, and with ``bytes`` a word is a space plus its letters);
* SentencePiece/Metaspace: a token starting with ``▁`` begins a word.

In every scheme the first token after a special token (or at position 0) begins a word.

Randomness: masks are drawn in ``collate`` from a ``torch.Generator`` seeded from the run seed, the
task's name and the batch's sample ``"index"`` values (samples without an index: the batch's token
ids), see :func:`selfsup_text.tasks.common.batch_generator`. The same batch gets the same masks on a resumed run, and
since batches are re-drawn every epoch a sample is masked differently from epoch to epoch (dynamic masking).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.components import BuildContext, TaskOutput
from selfsup_text.tasks.common import batch_generator, check_data, require_encoder, source_collate

# ------------------------------------------------------------------------------------------ words

_WORD_TABLES: dict[int, tuple[Any, torch.Tensor, str]] = {}


def word_start_table(tokenizer: Any) -> tuple[torch.Tensor, str]:
    """``(starts [V] bool, scheme)``: whether each token id begins a word (see the module docstring)."""
    cached = _WORD_TABLES.get(id(tokenizer))
    if cached is not None and cached[0] is tokenizer:
        return cached[1], cached[2]
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    tokens = [t or "" for t in tokens]
    if any(t.startswith("##") for t in tokens):
        scheme, starts = "wordpiece", [not t.startswith("##") for t in tokens]
    elif any(t.startswith("Ġ") for t in tokens):
        scheme, starts = "bytelevel", [t.startswith("Ġ") for t in tokens]
    elif any(t.startswith("▁") for t in tokens):
        scheme, starts = "metaspace", [t.startswith("▁") for t in tokens]
    else:
        raise ValueError(
            "cannot find word boundaries: the tokenizer has no '##' (WordPiece), 'Ġ' (byte-level BPE) or "
            "'▁' (SentencePiece) tokens; use masking = 'token'"
        )
    table = torch.tensor(starts, dtype=torch.bool)
    for special in tokenizer.all_special_ids:
        table[special] = True
    _WORD_TABLES[id(tokenizer)] = (tokenizer, table, scheme)
    return table, scheme


def word_starts(input_ids: torch.Tensor, special_mask: torch.Tensor, tokenizer: Any) -> torch.Tensor:
    """``[B, T]`` bool: positions that begin a word (specials and padding are their own words)."""
    table, _ = word_start_table(tokenizer)
    starts = table.to(input_ids.device)[input_ids.clamp(0, len(table) - 1)]  # [B, T]
    after_special = torch.zeros_like(starts)
    after_special[:, 1:] = special_mask[:, :-1]
    starts = starts | after_special | special_mask
    starts[:, 0] = True
    return starts


def _word_ids(starts: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` long: the index of each position's word within its row."""
    return starts.long().cumsum(dim=1) - 1


# ------------------------------------------------------------------------------------------ masking


def span_length_distribution(span_p: float, max_span_length: int) -> torch.Tensor:
    """``[max_span_length]`` probabilities of span lengths 1..max: Geometric(``span_p``) truncated at
    ``max_span_length`` and renormalised, as in SpanBERT's code (mean 3.8 words for p = 0.2, max 10)."""
    k = torch.arange(max_span_length, dtype=torch.float64)
    probs = span_p * (1 - span_p) ** k
    return probs / probs.sum()


def span_lengths(n: int, span_p: float, max_span_length: int, generator: torch.Generator) -> torch.Tensor:
    """``[n]`` span lengths (in words) drawn from :func:`span_length_distribution`."""
    probs = span_length_distribution(span_p, max_span_length)
    return torch.multinomial(probs, n, replacement=True, generator=generator) + 1


def _select_spans(
    eligible: torch.Tensor,  # [T] bool
    words: torch.Tensor,  # [T] long word index
    budget: int,
    generator: torch.Generator,
    span_p: float,
    max_span_length: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One row of SpanBERT selection: ``(selected [T] bool, span_id [T] long, -1 outside spans)``."""
    t = eligible.shape[0]
    selected = torch.zeros(t, dtype=torch.bool)
    span_id = torch.full((t,), -1, dtype=torch.long)
    candidate_words = torch.unique(words[eligible])  # words made of eligible tokens
    if budget <= 0 or candidate_words.numel() == 0:
        return selected, span_id
    word_list = candidate_words.tolist()
    count, spans, attempts = 0, 0, 0
    while count < budget and attempts < 10 * budget + 10:
        attempts += 1
        length = int(span_lengths(1, span_p, max_span_length, generator)[0])
        start = int(torch.randint(len(word_list), (), generator=generator))
        if bool(selected[words == word_list[start]].any()):  # the anchor word is taken already
            continue
        span = eligible & ~selected & torch.isin(words, torch.tensor(word_list[start : start + length]))
        positions = span.nonzero().flatten()[: budget - count]  # the last span is cut at the budget
        span = torch.zeros_like(span)
        span[positions] = True
        added = int(positions.numel())
        selected |= span
        span_id[span] = spans
        spans, count = spans + 1, count + added
    return selected, span_id


def mask_tokens(
    input_ids: torch.Tensor,  # [B, T]
    special_mask: torch.Tensor,  # [B, T] bool: special or padding tokens (never selected)
    generator: torch.Generator,
    *,
    mask_id: int,
    vocab_size: int,
    mlm_probability: float = 0.15,
    mask_fraction: float = 0.8,
    random_fraction: float = 0.1,
    masking: str = "token",
    starts: torch.Tensor | None = None,  # [B, T] bool word starts; needed by whole_word and span
    span_p: float = 0.2,
    max_span_length: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking. Returns ``(inputs [B, T], labels [B, T])``: ``inputs`` with the selected
    tokens replaced (80% [MASK], 10% a uniformly random id in ``[0, vocab_size)``, 10% unchanged
    for the defaults), ``labels`` holding the original id at selected positions and -100 elsewhere.
    All random draws come from ``generator`` (CPU)."""
    ids = input_ids.cpu()
    special = special_mask.cpu().bool()
    b, t = ids.shape
    eligible = ~special
    unit: torch.Tensor | None = None  # [B, T] id of the unit sharing one 80/10/10 draw (span), else per token
    if masking == "token":
        selected = (torch.rand(b, t, generator=generator) < mlm_probability) & eligible
    elif masking in ("whole_word", "span"):
        if starts is None:
            raise ValueError(f"masking = {masking!r} needs word starts (see word_starts)")
        words = _word_ids(starts.cpu().bool())  # [B, T]
        if masking == "whole_word":
            word_draw = torch.rand(b, t, generator=generator) < mlm_probability  # [B, T]: one draw per word slot
            selected = word_draw.gather(1, words) & eligible
        else:
            selected = torch.zeros(b, t, dtype=torch.bool)
            unit = torch.full((b, t), -1, dtype=torch.long)
            for row in range(b):
                budget = int(round(float(eligible[row].sum()) * mlm_probability))
                selected[row], unit[row] = _select_spans(eligible[row], words[row], budget, generator, span_p,
                                                         max_span_length)
    else:
        raise ValueError(f"unknown masking {masking!r} (token, whole_word or span)")

    u = torch.rand(b, t, generator=generator)  # [B, T]: the 80/10/10 draw
    if unit is not None:  # one draw per span: span k of a row uses that row's k-th draw (k < T)
        u = torch.where(unit >= 0, u.gather(1, unit.clamp(min=0)), u)
    replace_mask = selected & (u < mask_fraction)
    replace_random = selected & (u >= mask_fraction) & (u < mask_fraction + random_fraction)
    random_ids = torch.randint(vocab_size, (b, t), generator=generator)

    inputs = ids.clone()
    inputs[replace_mask] = mask_id
    inputs[replace_random] = random_ids[replace_random]
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    return inputs.to(input_ids.device), labels.to(input_ids.device)


def special_positions(batch: dict[str, Any], tokenizer: Any) -> torch.Tensor:
    """``[B, T]`` bool: padding (``attention_mask`` 0) or a special token of ``tokenizer``."""
    ids = batch["input_ids"]
    special = torch.isin(ids, torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=ids.dtype))
    if "attention_mask" in batch:
        special |= batch["attention_mask"] == 0
    return special


def mask_batch(batch: dict[str, Any], tokenizer: Any, options: Any, generator: torch.Generator,
               vocab_size: int) -> dict[str, Any]:
    """A copy of ``batch`` with ``input_ids`` masked and ``mlm_labels [B, T]`` added (-100 where not
    selected). ``options`` carries the MaskingOptions fields."""
    special = special_positions(batch, tokenizer)
    starts = word_starts(batch["input_ids"], special, tokenizer) if options.masking != "token" else None
    inputs, labels = mask_tokens(
        batch["input_ids"], special, generator, mask_id=tokenizer.mask_token_id, vocab_size=vocab_size,
        mlm_probability=options.mlm_probability, mask_fraction=options.mask_fraction,
        random_fraction=options.random_fraction, masking=options.masking, starts=starts,
        span_p=options.span_p, max_span_length=options.max_span_length,
    )
    return {**batch, "input_ids": inputs, "mlm_labels": labels}


def mlm_loss(backbone: Any, hidden: torch.Tensor,
             labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, correct, count)`` of the MLM head on the positions where ``labels != -100``.

    hidden: [B, T, D]; labels: [B, T]. The head runs on the selected positions only ([M, D] -> [M, V]);
    with no selected position the loss is a zero that still carries gradients."""
    selected = labels != -100  # [B, T]
    count = selected.sum()
    if int(count) == 0:
        zero = hidden.sum() * 0.0
        return zero, zero.detach(), count
    logits = backbone.lm_logits(hidden[selected])  # [M, V]
    target = labels[selected]  # [M]
    with torch.autocast(logits.device.type, enabled=False):
        loss = F.cross_entropy(logits.float(), target)
    correct = (logits.argmax(dim=-1) == target).sum()
    return loss, correct, count


# ------------------------------------------------------------------------------------------ task


class MLM(nn.Module):
    """The MLM task: ``collate`` pads and masks, ``forward`` runs the encoder and its MLM head."""

    def __init__(self, options: Any, backbone: Any, data: Any, seed: int, name: str):
        super().__init__()
        self.options, self.seed, self.name = options, seed, name
        self.tokenizer = backbone.tokenizer
        self.vocab_size = len(backbone.tokenizer)  # random replacements: real token ids only
        self._collate = source_collate(data, self.tokenizer)

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self._collate(samples)
        return mask_batch(batch, self.tokenizer, self.options, batch_generator(self.seed, self.name, samples),
                          self.vocab_size)

    def forward(self, batch: dict[str, Any], backbone: Any) -> TaskOutput:
        hidden = backbone.hidden_states(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"))
        loss, correct, count = mlm_loss(backbone, hidden, batch["mlm_labels"])
        accuracy = correct.float() / count.clamp(min=1)
        return TaskOutput(loss=loss, metrics={"accuracy": accuracy.detach(), "masked": count.float()})


def build(options: Any, context: BuildContext) -> MLM:
    require_encoder(context.backbone, f"mlm task {context.name!r}")
    check_data(context.backbone, context.data, f"mlm task {context.name!r}")
    if context.backbone.tokenizer.mask_token_id is None:
        raise ValueError(f"mlm task {context.name!r}: the backbone's tokenizer has no mask token")
    if options.masking != "token":
        word_start_table(context.backbone.tokenizer)  # fail now if the tokenizer has no word boundaries
    return MLM(options, context.backbone, context.data, context.seed, context.name)
