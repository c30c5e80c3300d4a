"""``labelled_text``: small labelled sets shipped with gensim, for linear probes and kNN.

* ``polarity``: 200 movie-review sentences (100 negative, 100 positive) from Pang & Lee (2005),
  "Seeing stars: Exploiting class relationships for sentiment categorization", ACL.
* ``newsgroups``: 200 posts (100 alt.atheism, 100 sci.space) from 20 Newsgroups (Lang 1995,
  "NewsWeeder: Learning to filter netnews", ICML), message bodies only (headers, which name the
  group, removed).

Samples carry ``"label"`` (0/1, names in ``source.label_names``); the split is stratified.
"""

from __future__ import annotations

from typing import Any

from selfsup.components import BuildContext
from selfsup_text.data.base import TextSource, tokenizer_for
from selfsup_text.data.gensim_data import newsgroups, polarity


def build(options: Any, context: BuildContext) -> TextSource:
    texts, labels, names = polarity() if options.set == "polarity" else newsgroups()
    return TextSource(texts, tokenizer_for(options, context), options, labels=labels, label_names=names)
