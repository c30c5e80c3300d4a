"""Losses shared by several methods, written once.

:func:`info_nce` is the contrastive cross entropy of van den Oord, Li and Vinyals, Representation
Learning with Contrastive Predictive Coding (2018), in the forms SimCLR (NT-Xent), SimCSE, CLIP
and SCARF use it, with the negatives of the whole global batch under DDP
(:func:`selfsup.lib.distributed.gather_with_grad`).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from selfsup.lib.distributed import gather_with_grad, local_offset


def _logits(q: torch.Tensor, k: torch.Tensor, temperature: float | torch.Tensor | None,
            scale: torch.Tensor | float | None) -> torch.Tensor:
    return scale * q @ k.T if scale is not None else q @ k.T / temperature


def info_nce(
    anchors: torch.Tensor,  # [B, D]
    keys: torch.Tensor,  # [K, D]; the candidates this rank contributes
    *,
    temperature: float | torch.Tensor | None = None,
    scale: float | torch.Tensor | None = None,
    positives: torch.Tensor | None = None,  # [B] int64: index in ``keys`` of each anchor's positive
    exclude_self: bool = False,
    negatives: torch.Tensor | None = None,  # [B, D]: extra candidates (hard negatives)
    hard_negative_weight: float = 0.0,
    targets: torch.Tensor | None = None,  # [B, W*K] soft targets, rows summing to 1
    symmetric: bool = False,
    gather: bool = True,
    full_precision: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """InfoNCE with global negatives: ``(mean cross entropy over the local anchors, top-1 accuracy)``.

    The candidates of every anchor are ``keys`` of every rank (gathered with gradients when
    ``gather``; rank r's rows at ``[r*K, (r+1)*K)``), then ``negatives`` of every rank if given.
    Logits are ``anchors @ candidates.T / temperature`` or, with ``scale`` (a learned tensor, as in
    CLIP), ``scale * anchors @ candidates.T``. Rows are not normalised here: pass L2-normalised
    embeddings for cosine similarities.

    * positive of anchor i: ``keys[i]`` of this rank, or ``keys[positives[i]]``; ``targets`` replaces
      the one-hot target by a distribution over the ``W*K`` key columns (several positives);
    * ``exclude_self``: ``anchors`` are ``keys`` (SimCLR's 2N views): each anchor's own column is
      masked out;
    * ``hard_negative_weight`` is added to the logit of anchor i's own negative ``negatives[i]``
      (SimCSE's weighting);
    * ``symmetric``: also the keys -> anchors direction (CLIP); the loss is the mean of both and
      the accuracy that of anchors -> keys;
    * ``full_precision`` (default): computed in float32 with autocast off; ``False`` keeps the
      caller's autocast.

    With W ranks each computing this on its share of a global batch, the mean of the W losses is
    the loss one process computes on the whole batch.
    """
    if (temperature is None) == (scale is None):
        raise ValueError("info_nce needs exactly one of temperature and scale")
    if symmetric and (negatives is not None or positives is not None or exclude_self):
        raise ValueError("info_nce: symmetric takes neither negatives, positives nor exclude_self")
    if targets is not None and positives is not None:
        raise ValueError("info_nce: give positives or targets, not both")
    if exclude_self and anchors.shape[0] != keys.shape[0]:
        raise ValueError("info_nce: exclude_self needs anchors and keys to be the same rows")
    precision = torch.autocast(anchors.device.type, enabled=False) if full_precision else contextlib.nullcontext()
    with precision:
        if full_precision:
            anchors, keys = anchors.float(), keys.float()
            negatives = None if negatives is None else negatives.float()
        b = anchors.shape[0]
        keys_all = gather_with_grad(keys) if gather else keys  # [W*K, D]
        anchors_all = gather_with_grad(anchors) if gather and symmetric else anchors
        offset = local_offset(keys.shape[0]) if gather else 0
        row = torch.arange(b, device=anchors.device)  # [B]
        target = (positives.to(anchors.device) if positives is not None else row) + offset  # [B]
        logits = _logits(anchors, keys_all, temperature, scale)  # [B, W*K]
        if exclude_self:
            own = F.one_hot(row + offset, logits.shape[1]).bool()  # [B, W*K]: each anchor's own column
            logits = logits.masked_fill(own, float("-inf"))
        if negatives is not None:
            negatives_all = gather_with_grad(negatives) if gather else negatives  # [W*B, D]
            negative_logits = _logits(anchors, negatives_all, temperature, scale)  # [B, W*B]
            if hard_negative_weight:
                own = F.one_hot(row + offset, negatives_all.shape[0]).to(negative_logits.dtype)
                negative_logits = negative_logits + hard_negative_weight * own
            logits = torch.cat([logits, negative_logits], dim=1)  # [B, W*K + W*B]
        labels = targets if targets is not None else target
        loss = F.cross_entropy(logits, labels)
        if symmetric:
            loss = (loss + F.cross_entropy(_logits(keys, anchors_all, temperature, scale), labels)) / 2
        if targets is None:
            accuracy = (logits.argmax(dim=1) == target).float().mean()
        else:
            accuracy = (targets.gather(1, logits.argmax(dim=1, keepdim=True)).squeeze(1) > 0).float().mean()
    return loss, accuracy
