"""``similarity_pairs``: texts with human similarity ratings of pairs of them, for STS-style evaluation.

* ``lee``: the 50 news documents of Lee, Pincombe & Welsh (2005), "An empirical evaluation of models
  of text document similarity", CogSci; 1,225 pairs (the upper triangle of the mean ratings, 0..1).
* ``simlex999``: 999 word pairs, Hill, Reichart & Korhonen (2015), "SimLex-999: Evaluating semantic
  models with (genuine) similarity estimation", Computational Linguistics (ratings 0..10).
* ``wordsim353``: 353 word pairs, Finkelstein et al. (2002), "Placing search in context: the concept
  revisited", ACM TOIS (ratings 0..10).

Samples are the texts (documents or distinct words), ``{"input_ids": LongTensor[L]}``, in a fixed
order; ``source.pairs: LongTensor[P, 2]`` indexes into them and ``source.scores: FloatTensor[P]`` holds
the ratings. There is no split (every sample is needed by the pairs).
"""

from __future__ import annotations

from typing import Any

import torch

from selfsup.components import BuildContext
from selfsup_text.data.base import Tokenization, tokenizer_for
from selfsup_text.data.collate import pad_collate
from selfsup_text.data.gensim_data import lee_similarity, word_pairs


class SimilarityPairs:
    """Texts plus rated pairs of them (see the module docstring)."""

    def __init__(self, texts: list[str], pairs: list[tuple[int, int]], scores: list[float], tokenizer: Any,
                 options: Any):
        self.tokenizer = tokenizer
        self.pad_id = int(tokenizer.pad_token_id)
        self.texts = texts
        self.pairs = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)  # [P, 2]
        self.scores = torch.tensor(scores, dtype=torch.float32)  # [P]
        self.tokenization = Tokenization.of(tokenizer, options)
        ids, _ = self.tokenization.encode(texts)
        self._ids = [self.tokenization.wrap(x) for x in ids]  # [L] each

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self._ids[i].clone()}

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return pad_collate(samples, self.pad_id)


def build(options: Any, context: BuildContext) -> SimilarityPairs:
    texts, pairs, scores = lee_similarity() if options.set == "lee" else word_pairs(options.set)
    return SimilarityPairs(texts, pairs, scores, tokenizer_for(options, context), options)
