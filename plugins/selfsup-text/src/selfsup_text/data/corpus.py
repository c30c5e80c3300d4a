"""``embedded_corpus``: real human-written English that ships with the install (no download).

About 3.2 MB of text (UTF-8): 2.86 MB from 106 English Wikipedia articles (gensim's shortened dump
of the first ``enwiki`` articles file, "Anarchism" onwards, extracted to plain text with case and
punctuation kept) and 0.35 MB from the 293 distinct Lee background news documents (Lee, Pincombe & Welsh
2005). See :mod:`selfsup_text.data.gensim_data` for the extraction and its on-disk cache.

``name`` picks ``wiki``, ``news`` or ``all`` (articles then news); ``unit = "paragraph"`` makes one
document per blank-line separated paragraph (a news item is one paragraph). Then everything in
:mod:`selfsup_text.data.base` applies: deterministic split, tokenizer, windows, sentence starts.
"""

from __future__ import annotations

from typing import Any

from selfsup.components import BuildContext
from selfsup_text.data.base import TextSource, tokenizer_for
from selfsup_text.data.gensim_data import corpus_documents, split_paragraphs


def corpus_texts(name: str, unit: str) -> list[str]:
    """The embedded corpus ``name`` as documents (``unit = "document"``) or paragraphs."""
    docs = corpus_documents(name)
    if unit == "paragraph":
        return [p for doc in docs for p in split_paragraphs(doc)]
    return docs


def build(options: Any, context: BuildContext) -> TextSource:
    return TextSource(corpus_texts(options.name, options.unit), tokenizer_for(options, context), options)
