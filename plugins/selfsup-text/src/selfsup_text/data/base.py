"""Shared machinery of the text sources: split, tokenize, truncate, pack into windows, batch.

:class:`TextSource` turns a list of documents (plus optional labels and pair texts) into map-style
samples following the plugin's conventions:

* document mode (``window`` unset): sample ``i`` is document ``i`` of the split,
  ``{"input_ids": LongTensor[L]}`` with ``[CLS] ... [SEP]`` when ``add_special_tokens`` (``max_length``
  counts them), plus ``"label"`` (int), ``"positive_ids"``/``"negative_ids"`` for pair data, and
  ``"sentence_starts": LongTensor[S]`` (token offsets where sentences begin, the first one right
  after [CLS]) when ``sentences`` is set;
* window mode (``window = W``): the documents' tokens are concatenated with the separator ([SEP] =
  eos) after each document, and sample ``i`` is the ``W + 1`` tokens starting at ``i * W``: the
  inputs ``[:-1]`` of consecutive samples tile the stream without overlap and every token is a
  target exactly once (the last token of a window is the first of the next). ``"document_ids":
  LongTensor[W + 1]`` gives each token's document (a separator belongs to the document it ends).
  ``add_special_tokens`` and ``max_length`` are not used in window mode.

The split (``split``/``val_fraction``/``split_seed``) is :func:`selfsup.lib.split_indices` over
the non-empty documents, stratified by label when there are labels; ``limit`` keeps the first N.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
import torch

from selfsup.components import BuildContext
from selfsup.lib import split_indices
from selfsup_text.data.collate import pad_collate
from selfsup_text.data.reading import char_batches
from selfsup_text.tokenizers import load_tokenizer, plain_backend

# A sentence ends at . ! ? (optionally followed by closing quotes/brackets) before whitespace and a
# capital letter, digit or opening quote; a blank line also ends one.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])|\n\s*\n\s*")


def sentence_char_starts(text: str) -> list[int]:
    """Character offsets where the sentences of ``text`` begin (always including 0)."""
    return [0] + [m.end() for m in _SENTENCE_BREAK.finditer(text) if m.end() < len(text)]


def tokenizer_for(options: Any, context: BuildContext):
    """The tokenizer named by ``options.tokenizer``, folders resolved against the recipe directory."""
    return load_tokenizer(options.tokenizer, base_dir=context.base_dir)


def encode(tokenizer, texts: Sequence[str], *, offsets: bool = False):
    """Token ids (numpy int64 arrays, no specials) of ``texts``, and char offsets when asked; tokenized in
    batches of at most ``ENCODE_BATCH_CHARS`` characters, so memory stays bounded for long inputs."""
    backend = plain_backend(tokenizer)
    ids: list[np.ndarray] = []
    ends: list[np.ndarray] | None = [] if offsets else None
    for start, end in char_batches(texts):
        encodings = backend.encode_batch(list(texts[start:end]), add_special_tokens=False)
        ids += [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        if ends is not None:
            ends += [np.asarray([o[1] for o in e.offsets], dtype=np.int64).reshape(-1) for e in encodings]
    return ids, ends


class Tokenization:
    """How one document's token ids become a sample's, shared by :class:`TextSource`, ``similarity_pairs``
    and the serving decoders (:mod:`selfsup_text.data.serving`), so a served text is cut and wrapped
    exactly as the source's documents are.

    ``max_length`` counts the specials; ``content_max`` is what is left for the document's own tokens
    (at least 1). ``sep_id`` defaults to the tokenizer's [SEP] (a shard folder's ``meta.json`` may name it)."""

    def __init__(self, tokenizer: Any, *, add_special_tokens: bool = True, max_length: int | None = None,
                 sep_id: int | None = None):
        self.tokenizer = tokenizer
        self.pad_id = int(tokenizer.pad_token_id)
        self.sep_id = int(tokenizer.sep_token_id if sep_id is None else sep_id)
        self.cls_id = int(tokenizer.cls_token_id)
        self.add_special_tokens = bool(add_special_tokens)
        self.max_length = max_length
        self.specials = 2 if self.add_special_tokens else 0
        self.content_max = None if max_length is None else max(1, max_length - self.specials)

    @classmethod
    def of(cls, tokenizer: Any, options: Any, **overrides: Any) -> "Tokenization":
        """From a source's options (``add_special_tokens``, ``max_length``), ``overrides`` replacing them."""
        settings = {"add_special_tokens": bool(getattr(options, "add_special_tokens", True)),
                    "max_length": getattr(options, "max_length", None), **overrides}
        return cls(tokenizer, **settings)

    def encode(self, texts: Sequence[str], *, offsets: bool = False):
        """:func:`encode` with this tokenizer: ids without specials (and token end offsets when asked)."""
        return encode(self.tokenizer, texts, offsets=offsets)

    def wrap(self, ids: np.ndarray) -> torch.Tensor:
        """A document's sample ids: cut to ``content_max`` and wrapped as ``[CLS] ... [SEP]`` when
        ``add_special_tokens``. ``[L]``"""
        if self.content_max is not None:
            ids = ids[: self.content_max]
        out = torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64))
        if self.add_special_tokens:
            out = torch.cat([torch.tensor([self.cls_id]), out, torch.tensor([self.sep_id])])
        return out  # [L]

    def join(self, a: np.ndarray, b: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``[CLS] a [SEP] b [SEP]`` and its token types ``[0 ... 0 1 ... 1]``; over ``max_length``,
        tokens are cut from the end of the longer text first (BERT's longest-first truncation)."""
        a, b = list(a), list(b)
        if self.max_length is not None:
            while len(a) + len(b) + 3 > self.max_length and (a or b):
                (a if len(a) > len(b) else b).pop()  # a tie cuts the second text, as transformers does
        ids = [self.cls_id, *a, self.sep_id, *b, self.sep_id]
        types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
        return torch.tensor(ids, dtype=torch.long), torch.tensor(types, dtype=torch.long)  # [L], [L]

    def sentence_starts(self, text: str, token_ends: np.ndarray) -> torch.Tensor:
        """Token offsets (in the wrapped, truncated sample) of the tokens holding each sentence start."""
        chars = np.asarray(sentence_char_starts(text), dtype=np.int64)
        tokens = np.searchsorted(token_ends, chars, side="right")  # first token ending after the char
        tokens = np.unique(tokens[tokens < len(token_ends)])
        if self.content_max is not None:
            tokens = tokens[tokens < self.content_max]
        return torch.from_numpy(tokens + (1 if self.add_special_tokens else 0))  # [S]

    def pack(self, ids: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Window mode's stream: the documents' ids one after another, each followed by the separator,
        and each token's document (a separator belongs to the document it ends). ``[N]``, ``[N]``"""
        lengths = np.array([len(x) + 1 for x in ids], dtype=np.int64)  # + the separator
        stream = np.empty(int(lengths.sum()), dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        for x, start, end in zip(ids, offsets[:-1], offsets[1:]):
            stream[start : end - 1] = x
            stream[end - 1] = self.sep_id
        documents = np.repeat(np.arange(len(ids), dtype=np.int64), lengths)
        return torch.from_numpy(stream), torch.from_numpy(documents)  # [N], [N]


class TextSource:
    """Tokenized documents of one split, served whole or as packed windows (see the module docstring).

    Attributes: ``tokenizer``, ``texts`` (the split's documents), ``labels`` (LongTensor or None),
    ``label_names``, ``num_classes``, ``empty`` (documents dropped as empty or shorter than
    ``min_tokens``), ``pad_id``, ``sep_id``, ``tokenization`` (the :class:`Tokenization` of its
    documents, which its serving decoder shares), ``bad_files`` (the :class:`selfsup.lib.BadFiles` of
    a file-reading source, set by its ``build``; None for the shipped sets)."""

    bad_files: Any = None
    _types: Any = None  # token types of sentence pairs (text_pair_field)

    def __init__(
        self,
        texts: Sequence[str],
        tokenizer: Any,
        options: Any,
        *,
        labels: Sequence[int] | None = None,
        label_names: Sequence[str] | None = None,
        positives: Sequence[str] | None = None,
        negatives: Sequence[str] | None = None,
        pairs: Sequence[str] | None = None,
    ):
        self.tokenizer = tokenizer
        self.tokenization = Tokenization.of(tokenizer, options)
        self.pad_id, self.sep_id, self.cls_id = (self.tokenization.pad_id, self.tokenization.sep_id,
                                                 self.tokenization.cls_id)
        self.window = getattr(options, "window", None)
        self.add_special_tokens = self.tokenization.add_special_tokens
        self.sentences = bool(getattr(options, "sentences", False))
        min_tokens = int(getattr(options, "min_tokens", 1))

        keep = [i for i, t in enumerate(texts) if t and t.strip()]
        self.empty = len(texts) - len(keep)
        pick = lambda seq: None if seq is None else [seq[i] for i in keep]  # noqa: E731
        texts, labels, positives, negatives = pick(texts), pick(labels), pick(positives), pick(negatives)
        pairs = pick(pairs)

        idx = split_indices(len(texts), options.split, val_fraction=options.val_fraction, seed=options.split_seed,
                            labels=labels)
        if options.limit is not None:
            idx = idx[: options.limit]
        texts = [texts[i] for i in idx]
        labels = None if labels is None else [int(labels[i]) for i in idx]
        positives = None if positives is None else [positives[i] for i in idx]
        negatives = None if negatives is None else [negatives[i] for i in idx]
        pairs = None if pairs is None else [pairs[i] for i in idx]

        ids, ends = self.tokenization.encode(texts, offsets=self.sentences)
        long_enough = [i for i, x in enumerate(ids) if len(x) >= min_tokens]
        self.empty += len(ids) - len(long_enough)
        self.texts = [texts[i] for i in long_enough]
        ids = [ids[i] for i in long_enough]
        ends = None if ends is None else [ends[i] for i in long_enough]
        self.labels = None if labels is None else torch.tensor([labels[i] for i in long_enough], dtype=torch.long)
        self.label_names = None if label_names is None else list(label_names)
        self.num_classes = None
        if labels is not None:
            self.num_classes = len(label_names) if label_names else max(labels, default=-1) + 1
        if not self.texts:
            raise ValueError("the text source has no documents left (after dropping empty ones, the split and limit)")

        tok = self.tokenization
        if self.window is not None:
            self._pack(ids)
        else:
            self._docs = [tok.wrap(x) for x in ids]
            self._starts = None if ends is None else [tok.sentence_starts(t, e) for t, e in zip(self.texts, ends)]
            self._positives = None if positives is None else self._encode_wrapped([positives[i] for i in long_enough])
            self._negatives = None if negatives is None else self._encode_wrapped([negatives[i] for i in long_enough])
            self._types = None
            if pairs is not None:  # sentence pairs: [CLS] a [SEP] b [SEP], token types 0 then 1
                second, _ = tok.encode([pairs[i] or "" for i in long_enough])
                self._docs, self._types = zip(*(tok.join(a, b) for a, b in zip(ids, second)))

    # ---------------------------------------------------------------- document mode

    def _encode_wrapped(self, texts: Sequence[str | None]) -> list[torch.Tensor]:
        ids, _ = self.tokenization.encode([t or "" for t in texts])
        return [self.tokenization.wrap(x) for x in ids]

    # ---------------------------------------------------------------- window mode

    def _pack(self, ids: list[np.ndarray]) -> None:
        self._stream, self._document_ids = self.tokenization.pack(ids)  # [N], [N]
        stream_length = len(self._stream)
        self._n_windows = (stream_length - 1) // self.window
        if self._n_windows < 1:
            raise ValueError(f"the documents hold {stream_length} tokens: too few for one window of {self.window} + 1")

    # ---------------------------------------------------------------- dataset protocol

    def __len__(self) -> int:
        return self._n_windows if self.window is not None else len(self._docs)

    def lengths(self) -> list[int]:
        """Tokens per sample (for ``group_by_length`` batching; windows all have ``window + 1``)."""
        if self.window is not None:
            return [self.window + 1] * self._n_windows
        return [len(doc) for doc in self._docs]

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} samples")
        i = i % n
        if self.window is not None:
            start = i * self.window
            span = slice(start, start + self.window + 1)
            return {"input_ids": self._stream[span].clone(), "document_ids": self._document_ids[span].clone()}
        sample: dict[str, Any] = {"input_ids": self._docs[i].clone()}
        if self.labels is not None:
            sample["label"] = int(self.labels[i])
        if self._starts is not None:
            sample["sentence_starts"] = self._starts[i].clone()
        if self._positives is not None:
            sample["positive_ids"] = self._positives[i].clone()
        if self._negatives is not None:
            sample["negative_ids"] = self._negatives[i].clone()
        if self._types is not None:
            sample["token_type_ids"] = self._types[i].clone()
        return sample

    def collate(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """:func:`selfsup_text.data.collate.pad_collate` with this tokenizer's pad id."""
        return pad_collate(samples, self.pad_id)
