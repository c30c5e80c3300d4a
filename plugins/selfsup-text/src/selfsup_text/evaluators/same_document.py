"""``same_document``: which held-out document does a passage come from? Nearest-neighbour retrieval of
windows of documents the model never trained on, on frozen ``embed`` features.

A label-free evaluation with many scored items: Izacard et al., Unsupervised Dense Information
Retrieval with Contrastive Learning (Contriever), TMLR 2022, take two spans of one document as a
matching pair; here such pairs are only scored, by the nearest-neighbour rule (k = 1, cosine) of the
kNN protocol (Wu et al., CVPR 2018).

Protocol, on a window-mode text source (``window = W``, e.g. ``embedded_corpus`` with ``split = "val"``):
the windows whose ``W`` inputs lie wholly inside one document are kept, the first ``max_windows`` of
each document; documents with fewer than two are dropped. Of each document's windows, those at even
positions form the bank and those at odd positions the queries. ``accuracy`` is the share of queries
whose most similar bank window belongs to the same document (``chance`` = 1 / documents).
``tfidf_accuracy`` is the same rule on TF-IDF bag-of-tokens vectors (smooth idf from the bank, as
scikit-learn's ``TfidfVectorizer``): what word overlap alone reaches. Also reported: ``documents``
and ``queries``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from selfsup.components import BuildContext, EvalContext
from selfsup_text.evaluators.batches import samples_of
from selfsup_text.tasks.common import check_data


class _Windows:
    """A list of samples served as a map-style source with the held-out source's ``collate``."""

    def __init__(self, samples: list[dict[str, Any]], collate: Any):
        self.samples, self.collate = samples, collate

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.samples[i]


def document_windows(source: Any, max_windows: int, seed: int = 0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The inputs ``[W]`` of the windows wholly inside one document (at most ``max_windows`` per document,
    documents with at least two) and each one's document, renumbered ``0..D-1``, in source order."""
    kept: dict[int, list[torch.Tensor]] = {}
    for sample in samples_of(source, seed):
        if "document_ids" not in sample:
            raise ValueError("same_document needs windows with 'document_ids' (a text source with `window` set)")
        inputs, documents = sample["input_ids"][:-1], sample["document_ids"][:-1]  # [W], [W]: the last is a target
        doc = int(documents[0])
        if bool((documents == doc).all()) and len(kept.setdefault(doc, [])) < max_windows:
            kept[doc].append(inputs)
    kept = {d: w for d, w in kept.items() if len(w) >= 2}
    windows = [w for ws in kept.values() for w in ws]
    labels = [torch.full((len(ws),), i, dtype=torch.long) for i, ws in enumerate(kept.values())]
    return windows, torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)


def bank_and_queries(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the bank (each document's windows at even positions) and of the queries (odd positions)."""
    position = torch.zeros_like(labels)
    for doc in labels.unique():
        where = (labels == doc).nonzero().flatten()
        position[where] = torch.arange(len(where))
    return (position % 2 == 0).nonzero().flatten(), (position % 2 == 1).nonzero().flatten()


def nearest_accuracy(features: torch.Tensor, labels: torch.Tensor, bank: torch.Tensor, queries: torch.Tensor) -> float:
    """Share of ``queries`` whose most cosine-similar ``bank`` row has their label."""
    z = F.normalize(features.float(), dim=1)  # [N, D]
    nearest = (z[queries] @ z[bank].T).argmax(dim=1)  # [Q]
    return (labels[bank][nearest] == labels[queries]).float().mean().item()


def tfidf(windows: list[torch.Tensor], bank: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """TF-IDF rows ``[N, V]``: token counts times smooth idf ``ln((1 + n) / (1 + df)) + 1`` over the bank."""
    counts = torch.zeros(len(windows), vocab_size)
    for i, ids in enumerate(windows):
        counts[i].index_add_(0, ids.long(), torch.ones(len(ids)))
    df = (counts[bank] > 0).sum(0).float()  # [V]
    return counts * (torch.log((1 + len(bank)) / (1 + df)) + 1)


class SameDocument:
    def __init__(self, options: Any):
        self.options = options

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        windows, labels = document_windows(context.data, self.options.max_windows, context.seed)
        if len(windows) == 0:
            raise ValueError(f"evaluator {context.name!r}: no document of the held-out source holds two whole "
                             "windows; use a shorter `window` or more documents")
        source = _Windows([{"input_ids": w} for w in windows], getattr(context.data, "collate", None))
        features, _ = context.features(source)  # [N, D]
        bank, queries = bank_and_queries(labels)
        documents = int(labels.max()) + 1
        metrics = {"accuracy": nearest_accuracy(features, labels, bank, queries), "chance": 1.0 / documents,
                   "documents": float(documents), "queries": float(len(queries))}
        if self.options.tfidf_baseline:
            vocab = max(int(w.max()) for w in windows) + 1  # token ids absent from every window add nothing
            metrics["tfidf_accuracy"] = nearest_accuracy(tfidf(windows, bank, vocab), labels, bank, queries)
        return metrics


def build(options: Any, context: BuildContext) -> SameDocument:
    who = f"evaluator {context.name!r} (same_document)"
    if context.data is not None:
        if getattr(context.data, "window", None) is None:
            raise ValueError(f"{who}: its data must serve windows with 'document_ids' (a text source with `window` "
                             "set, e.g. embedded_corpus with window = 63 and split = 'val'); it serves whole documents")
        if context.backbone is not None and hasattr(context.backbone, "vocab_size"):
            check_data(context.backbone, context.data, who)
    return SameDocument(options)
