"""``texts``: documents given inline, tokenized like every text source (:class:`~selfsup_text.data.base.TextSource`).

Other plugins build it by name to tokenize texts they hold without importing this plugin: the
multimodal ``digit_captions`` source builds ``texts`` with its captions and uses the samples'
``input_ids`` and the source's ``collate`` (padding with the tokenizer's pad id)."""

from __future__ import annotations

from typing import Any

from selfsup.components import BuildContext
from selfsup_text.data.base import TextSource, tokenizer_for


def build(options: Any, context: BuildContext) -> TextSource:
    return TextSource(list(options.texts), tokenizer_for(options, context), options, labels=options.labels)
