"""BM25 retrieval over the passages of the training data (the ``bm25s`` library).

The open-book question gets the passage a real index returns for it, never the passage its answer
was taken from: retrieval-augmented models read what a retriever over their corpus finds (Lewis,
Perez, Piktus, Petroni, Karpukhin, Goyal, Kuettler, Lewis, Yih, Rocktaeschel, Riedel and Kiela,
Retrieval-Augmented Generation for Knowledge-Intensive NLP Tasks, NeurIPS 2020; REALM, Guu et al.
2020, retrieves from the pre-training corpus itself). BM25 is Robertson and Zaragoza's Okapi BM25
(The Probabilistic Relevance Framework: BM25 and Beyond, 2009), as ``bm25s`` implements it
("lucene" scoring; Luetkehaus, bm25s, 2024): words of two letters or more, lower-cased, English
stopwords removed, no stemming.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


class BM25Index:
    """A BM25 index over ``passages`` (texts); ``search`` returns passage indices, best first."""

    def __init__(self, passages: Sequence[str], *, k1: float = 1.5, b: float = 0.75):
        try:
            import bm25s
            from bm25s.tokenization import Tokenizer
        except ImportError as e:
            raise ImportError("the salient_cloze feedback needs bm25s: pip install 'selfsup-text[rounds]'") from e

        if not passages:
            raise ValueError("BM25Index: no passages to index")
        self.size = len(passages)
        self._tokenizer = Tokenizer(stopwords="en")
        tokens = self._tokenizer.tokenize(list(passages), return_as="ids", show_progress=False)
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        self._bm25.index(tokens, show_progress=False)

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(indices [Q, k], scores [Q, k])`` of the ``k`` best passages per query (``k`` at most the
        index size). A query with no indexed word scores 0 everywhere: its passages are arbitrary and
        its score row is all zero."""
        k = min(k, self.size)
        if not queries:
            return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
        tokens = self._tokenizer.tokenize(list(queries), update_vocab=False, return_as="ids", show_progress=False)
        indices, scores = self._bm25.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        return np.asarray(indices, dtype=np.int64), np.asarray(scores, dtype=np.float32)
