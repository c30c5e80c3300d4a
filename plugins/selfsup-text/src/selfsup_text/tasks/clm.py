"""Causal language modelling (the ``clm`` task): next-token prediction on packed windows.

Radford, Narasimhan, Salimans and Sutskever, Improving Language Understanding by Generative
Pre-Training, 2018; Radford, Wu, Child, Luan, Amodei and Sutskever, Language Models are
Unsupervised Multitask Learners, 2019 (GPT and GPT-2).

Samples are windows of ``window + 1`` tokens from a source with ``window`` set (documents
concatenated with a separator): the input is ``tokens[:-1]``, the target ``tokens[1:]``, and the
loss is the mean cross entropy over the real (non-padding) targets.

Packing and ``cross_document_attention``. With the default ``false`` a token attends only to the
earlier tokens of its own document inside the window: the attention mask is block-diagonal causal,
built from the window's ``document_ids`` (or, for sources without them, such as token shards, from
the separators: a new document begins after each [SEP]/eos token) and handed to the model as a
4D boolean mask ``[B, 1, T, T]`` (True = may attend), which transformers 5.x passes to SDPA
unchanged (for eager attention it is turned into an additive float mask); position ids restart at 0
at every document start. Which targets are kept: a target in the same document as its input is
always kept; a target that crosses into the next document is kept when it is a special token (the
separator, which marks the end of the document and is worth predicting) and ignored (-100)
otherwise, because under document isolation the first real token of a document cannot be predicted
from the previous document's context. With ``cross_document_attention = true`` the window is one
causal sequence (GPT-2's training setup) and every target is kept.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from selfsup.components import BuildContext, TaskOutput
from selfsup_text.tasks.common import check_data, source_collate
from selfsup_text.tasks.linear_ce import linear_cross_entropy


def segments_from_separators(input_ids: torch.Tensor, separator_ids: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` document index per token: a new document begins after each separator token."""
    is_sep = torch.isin(input_ids, separator_ids.to(input_ids.device))  # [B, T]
    starts = torch.zeros_like(is_sep)
    starts[:, 1:] = is_sep[:, :-1]
    return starts.long().cumsum(dim=1)


def document_causal_mask(segments: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, 1, T, T]`` bool: query i may attend key j iff j <= i, both are in the same document and
    key j is a real token. Every query attends at least to itself (no fully masked rows, which
    would give NaN in SDPA), padding included."""
    b, t = segments.shape
    idx = torch.arange(t, device=segments.device)
    causal = idx[None, :] <= idx[:, None]  # [T, T]: key j <= query i
    same = segments[:, :, None] == segments[:, None, :]  # [B, T, T]
    mask = causal[None] & same
    if attention_mask is not None:
        mask = mask & attention_mask.bool()[:, None, :]
    mask = mask | torch.eye(t, dtype=torch.bool, device=segments.device)[None]
    return mask[:, None]  # [B, 1, T, T]


def document_positions(segments: torch.Tensor) -> torch.Tensor:
    """``[B, T]`` position ids restarting at 0 at each document start."""
    b, t = segments.shape
    idx = torch.arange(t, device=segments.device).expand(b, t)
    start = torch.ones_like(segments, dtype=torch.bool)
    start[:, 1:] = segments[:, 1:] != segments[:, :-1]
    # [B, T]: index of the document's first token
    first = torch.where(start, idx, torch.zeros_like(idx)).cummax(dim=1).values
    return idx - first


def _as_model_mask(mask: torch.Tensor, backbone: Any, dtype: torch.dtype) -> torch.Tensor:
    """SDPA takes the boolean mask; eager attention adds the mask to the scores, so it gets 0 / -inf-like floats."""
    if backbone.model.config._attn_implementation == "sdpa":
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def clm_forward(
    backbone: Any, batch: dict[str, Any], *, cross_document_attention: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits [B, T, V], targets [B, T])`` of a batch of windows ``input_ids [B, T + 1]``;
    targets are -100 where ignored (padding, cross-document targets under document isolation)."""
    hidden, targets = clm_hidden(backbone, batch, cross_document_attention=cross_document_attention)
    return backbone.lm_logits(hidden), targets


def clm_hidden(
    backbone: Any, batch: dict[str, Any], *, cross_document_attention: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(last hidden states [B, T, D], targets [B, T])``: :func:`clm_forward` before the LM head."""
    ids = batch["input_ids"]  # [B, T + 1]
    real = batch.get("attention_mask")
    real = torch.ones_like(ids, dtype=torch.bool) if real is None else real.bool()  # [B, T + 1]
    inputs, targets = ids[:, :-1], ids[:, 1:].clone()  # [B, T], [B, T]
    targets[~(real[:, 1:] & real[:, :-1])] = -100
    if cross_document_attention:
        hidden = backbone.hidden_states(inputs, real[:, :-1].long())
    else:
        special = torch.tensor(sorted(set(backbone.tokenizer.all_special_ids)), device=ids.device)
        if "document_ids" in batch:
            segments = batch["document_ids"]  # [B, T + 1]
        else:
            separators = torch.tensor(
                sorted({i for i in (backbone.tokenizer.sep_token_id, backbone.tokenizer.eos_token_id)
                        if i is not None}),
                device=ids.device,
            )
            segments = segments_from_separators(ids, separators)
        crossing = segments[:, 1:] != segments[:, :-1]  # [B, T]: target in another document than its input
        targets[crossing & ~torch.isin(ids[:, 1:], special)] = -100
        seg = segments[:, :-1]
        mask = document_causal_mask(seg, real[:, :-1])
        dtype = backbone.model.get_input_embeddings().weight.dtype
        if torch.is_autocast_enabled(ids.device.type):
            dtype = torch.get_autocast_dtype(ids.device.type)
        hidden = backbone.hidden_states(inputs, _as_model_mask(mask, backbone, dtype),
                                        position_ids=document_positions(seg))
    return hidden, targets


class CLM(nn.Module):
    """The CLM task on batches of windows ``input_ids [B, window + 1]`` (+ ``document_ids``)."""

    def __init__(self, options: Any, backbone: Any, data: Any):
        super().__init__()
        self.cross_document_attention = options.cross_document_attention
        self._collate = source_collate(data, backbone.tokenizer)

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return self._collate(samples)

    @staticmethod
    def health_inputs(batch: dict[str, Any]) -> dict[str, Any]:
        """The batch as the backbone's ``embed`` reads it (training health): windows are T + 1 tokens
        long (inputs and shifted targets), the backbone's context T."""
        return {k: v[:, :-1] if k in ("input_ids", "attention_mask", "document_ids") else v for k, v in batch.items()}

    def forward(self, batch: dict[str, Any], backbone: Any) -> TaskOutput:
        # [B, T, D]
        hidden, targets = clm_hidden(backbone, batch, cross_document_attention=self.cross_document_attention)
        head = backbone.model.get_output_embeddings()  # Linear(D, V), tied to the input embeddings in GPT-2
        # the LM head and the loss chunk by chunk, never all [B, T, V] logits at once (linear_ce.py)
        loss, accuracy = linear_cross_entropy(hidden, head.weight, targets, head.bias)
        return TaskOutput(loss=loss, metrics={"perplexity": loss.detach().exp(), "accuracy": accuracy.detach()})


def window_of(data: Any) -> int | None:
    """The data source's window (option ``window``), or None if it serves whole documents."""
    options = getattr(data, "options", None)
    window = getattr(data, "window", None)
    if window is None and options is not None:
        window = getattr(options, "window", None)
    return window


def require_decoder(backbone: Any, who: str) -> None:
    if not getattr(backbone, "is_decoder", False):
        raise ValueError(
            f"{who} needs a decoder backbone (transformer with family 'gpt2' or 'llama'), got "
            f"{getattr(backbone, 'family', type(backbone).__name__)!r}"
        )


def require_window(backbone: Any, data: Any, who: str) -> None:
    window = window_of(data)
    if window is None:
        raise ValueError(f"{who} needs a data source with `window` set (packed windows of window + 1 tokens)")
    if window > backbone.max_positions:
        raise ValueError(f"{who}: the data window {window} exceeds the backbone's context {backbone.max_positions}")


def build(options: Any, context: BuildContext) -> CLM:
    who = f"clm task {context.name!r}"
    require_decoder(context.backbone, who)
    require_window(context.backbone, context.data, who)
    check_data(context.backbone, context.data, who)
    return CLM(options, context.backbone, context.data)
