"""Token-level augmentations: span crop, deletion, substitution and swap of ``sample["input_ids"]``.

These are the discrete text edits used to build positive pairs for contrastive sentence
representations: CLEAR (Wu et al. 2020, "CLEAR: Contrastive Learning for Sentence Representation",
word deletion, span deletion, reordering, substitution), compared against dropout noise in SimCSE
(Gao, Yao & Chen 2021, "SimCSE: Simple Contrastive Learning of Sentence Embeddings", EMNLP, Table 1:
crop, word deletion, synonym replacement); random token swap/substitution/deletion follow EDA
(Wei & Zou 2019, "EDA: Easy Data Augmentation Techniques...", EMNLP).

Every augmentation takes ``(sample, generator)`` and returns a new sample (the input is never
modified); all randomness comes from the seeded ``generator``.

Special tokens: augmentations are not given the tokenizer, so the tokens they must not touch are
``special_ids`` (a list of ids, e.g. ``[0, 2, 3]`` for our ``[PAD]``, ``[CLS]``, ``[SEP]``) or, when it is
left unset, the first and the last token of the sample (the ``[CLS]`` and ``[SEP]`` that text sources
add with ``add_special_tokens = true``). Set ``special_ids = []`` for packed windows, which carry no
[CLS]/[SEP] of their own. Protected tokens stay, in order; only the other ("editable") tokens change.

With ``out_key`` set (e.g. ``"positive_ids"``) the edited ids go to that field and ``key`` keeps the
original: two augmentations, the first writing ``positive_ids`` and the second editing ``input_ids``,
give two independently edited views of one text (a positive pair for ``simcse``).

When tokens are removed or moved in place, the per-token fields ``document_ids`` and ``token_type_ids`` follow
them, and ``sentence_starts`` is mapped to the first kept token at or after each old start.
"""

from __future__ import annotations

from typing import Any

import torch

from selfsup.components import BuildContext

#: Per-token fields that move with ``input_ids``.
ALIGNED_FIELDS = ("document_ids", "token_type_ids")


class TokenAugmentation:
    """Base: finds the editable positions of ``sample[key]`` and rebuilds the sample after an edit."""

    def __init__(self, options: Any):
        self.key = options.key
        self.out_key = options.out_key or options.key
        self.special_ids = None if options.special_ids is None else torch.tensor(options.special_ids, dtype=torch.long)

    def protected(self, ids: torch.Tensor) -> torch.Tensor:
        """BoolTensor[L]: tokens never edited (special ids, or the first and last token)."""
        if self.special_ids is not None:
            return torch.isin(ids, self.special_ids)
        mask = torch.zeros(len(ids), dtype=torch.bool)
        if len(ids):
            mask[0] = mask[-1] = True
        return mask

    def _ids(self, sample: dict[str, Any]) -> torch.Tensor:
        ids = sample.get(self.key)
        if not isinstance(ids, torch.Tensor) or ids.dim() != 1:
            raise ValueError(f"{type(self).__name__}: sample[{self.key!r}] must be a 1-d LongTensor of token ids")
        return ids

    def unchanged(self, sample: dict[str, Any]) -> dict[str, Any]:
        """A new sample for an edit that changed nothing (``out_key`` gets a copy of the ids)."""
        out = dict(sample)
        if self.out_key != self.key:
            out[self.out_key] = self._ids(sample).clone()
        return out

    def reorder(self, sample: dict[str, Any], order: torch.Tensor) -> dict[str, Any]:
        """A new sample holding the tokens at positions ``order`` (LongTensor[L'], increasing for
        deletions/crops, a permutation for swaps), with the aligned fields following (when edited in place)."""
        ids = self._ids(sample)
        out = dict(sample)
        out[self.out_key] = ids[order]
        if self.key == "input_ids" and self.out_key == self.key:
            for field in ALIGNED_FIELDS:
                value = sample.get(field)
                if isinstance(value, torch.Tensor) and value.shape == ids.shape:
                    out[field] = value[order]
            starts = sample.get("sentence_starts")
            if isinstance(starts, torch.Tensor) and len(order) < len(ids):
                new = torch.searchsorted(order, starts)  # first kept token at or after each old start
                out["sentence_starts"] = torch.unique(new[new < len(order)])
        return out


class SpanCrop(TokenAugmentation):
    """Keeps one contiguous span of the editable tokens, of ``U(min_fraction, max_fraction)`` of them
    (at least one, at most ``max_tokens``), at a uniform random offset; protected tokens stay. With
    ``max_tokens``, a long document gives a short passage from anywhere in it."""

    def __init__(self, options: Any):
        super().__init__(options)
        self.min_fraction, self.max_fraction = options.min_fraction, options.max_fraction
        self.max_tokens = options.max_tokens

    def __call__(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        ids = self._ids(sample)
        protected = self.protected(ids)
        editable = torch.nonzero(~protected).flatten()  # [n] positions
        n = len(editable)
        if n == 0:
            return self.unchanged(sample)
        u = torch.rand((), generator=generator).item()
        fraction = self.min_fraction + (self.max_fraction - self.min_fraction) * u
        length = min(n, max(1, round(fraction * n)))
        if self.max_tokens is not None:
            length = min(length, self.max_tokens)
        start = int(torch.randint(0, n - length + 1, (), generator=generator))
        keep = protected.clone()
        keep[editable[start : start + length]] = True
        return self.reorder(sample, torch.nonzero(keep).flatten())


class TokenDeletion(TokenAugmentation):
    """Deletes each editable token independently with probability ``rate`` (at least one is kept)."""

    def __init__(self, options: Any):
        super().__init__(options)
        self.rate = options.rate

    def __call__(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        ids = self._ids(sample)
        protected = self.protected(ids)
        drop = (torch.rand(len(ids), generator=generator) < self.rate) & ~protected  # [L]
        editable = torch.nonzero(~protected).flatten()
        if len(editable) and drop[editable].all():  # never delete every editable token
            drop[editable[int(torch.randint(0, len(editable), (), generator=generator))]] = False
        return self.reorder(sample, torch.nonzero(~drop).flatten())


class TokenSubstitution(TokenAugmentation):
    """Replaces each editable token with probability ``rate`` by a random id: uniform over
    ``[low_id, vocab_size)`` when ``vocab_size`` is set, else a uniformly chosen editable token of the
    same sample (keeps its unigram distribution). The replacement may equal the original."""

    def __init__(self, options: Any):
        super().__init__(options)
        self.rate, self.vocab_size, self.low_id = options.rate, options.vocab_size, options.low_id

    def __call__(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        ids = self._ids(sample)
        protected = self.protected(ids)
        chosen = (torch.rand(len(ids), generator=generator) < self.rate) & ~protected  # [L]
        editable = torch.nonzero(~protected).flatten()
        k = int(chosen.sum())
        out = self.unchanged(sample)
        if k == 0:
            return out
        if self.vocab_size is not None:
            replacements = torch.randint(self.low_id, self.vocab_size, (k,), generator=generator)
        else:
            replacements = ids[editable[torch.randint(0, len(editable), (k,), generator=generator)]]
        new = ids.clone()
        new[chosen] = replacements.to(ids.dtype)
        out[self.out_key] = new
        return out


class TokenSwap(TokenAugmentation):
    """Scans the editable tokens left to right; each one that has not just been swapped is swapped
    with the next editable token with probability ``rate``."""

    def __init__(self, options: Any):
        super().__init__(options)
        self.rate = options.rate

    def __call__(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        ids = self._ids(sample)
        editable = torch.nonzero(~self.protected(ids)).flatten().tolist()
        draws = torch.rand(max(len(editable) - 1, 0), generator=generator).tolist()
        order = list(range(len(ids)))
        j = 0
        while j < len(editable) - 1:
            if draws[j] < self.rate:
                a, b = editable[j], editable[j + 1]
                order[a], order[b] = order[b], order[a]
                j += 2  # the pair is done: a token moves at most once
            else:
                j += 1
        if order == list(range(len(ids))):
            return self.unchanged(sample)
        return self.reorder(sample, torch.tensor(order, dtype=torch.long))


def build_span_crop(options: Any, context: BuildContext) -> SpanCrop:
    return SpanCrop(options)


def build_token_deletion(options: Any, context: BuildContext) -> TokenDeletion:
    return TokenDeletion(options)


def build_token_substitution(options: Any, context: BuildContext) -> TokenSubstitution:
    return TokenSubstitution(options)


def build_token_swap(options: Any, context: BuildContext) -> TokenSwap:
    return TokenSwap(options)
