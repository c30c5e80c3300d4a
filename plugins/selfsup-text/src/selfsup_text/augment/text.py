"""The machinery every text-level augmentation shares: ids -> text -> edited text -> ids.

Token augmentations (:mod:`selfsup_text.augment.tokens`) edit ids; the methods here edit words
(synonyms, back-translation, attribute-word swaps), so they need the tokenizer the data source used:
``tokenizer`` names it exactly as the source's option does. A sample ``[CLS] w1 ... wn [SEP]`` (the
source's ``add_special_tokens``) is decoded without its wrappers, edited by :meth:`TextAugmentation.edit`,
encoded again and wrapped again; ``max_length`` cuts the new content as the source would.

Text augmentations work on whole documents: a packed CLM window (a sample carrying ``document_ids``)
starts and ends mid-word, so it is refused. Use the offline forms for such corpora:
:meth:`TextAugmentation.edit_batch` (``selfsup augment``, the ``prepare`` steps), which also let
model-based methods batch their generation.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from selfsup.components import BuildContext


class TextAugmentation:
    """Base of the text-level augmentations; subclasses implement :meth:`edit` (one text, seeded by
    ``generator``) and may override :meth:`edit_batch` (many texts at once, e.g. batched generation)."""

    def __init__(self, options: Any, context: BuildContext):
        from selfsup_text.data.base import Tokenization
        from selfsup_text.tokenizers import load_tokenizer

        self.key = options.key
        self.out_key = options.out_key or options.key
        self.tokenizer = load_tokenizer(options.tokenizer, base_dir=context.base_dir)
        self.tokens = Tokenization(self.tokenizer, add_special_tokens=True, max_length=options.max_length)

    # ------------------------------------------------------------------ the method
    def edit(self, text: str, generator: torch.Generator) -> str:
        """``text`` edited (or unchanged); all randomness from ``generator``."""
        raise TypeError(f"{type(self).__name__} must define edit()")

    def edit_batch(self, texts: Sequence[str], seed: int) -> list[str]:
        """Every text edited, each with its own generator seeded from ``seed`` and its position (so a
        text's edit does not depend on the batch it came in)."""
        return [self.edit(text, text_generator(seed, i)) for i, text in enumerate(texts)]

    # ------------------------------------------------------------------ samples
    def __call__(self, sample: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        ids = sample.get(self.key)
        if not isinstance(ids, torch.Tensor) or ids.dim() != 1:
            raise ValueError(f"{type(self).__name__}: sample[{self.key!r}] must be a 1-d LongTensor of token ids")
        if "document_ids" in sample and self.out_key == self.key:
            raise ValueError(f"{type(self).__name__} edits whole documents, not packed windows: unset the source's "
                             "'window' or augment the corpus offline (`selfsup augment`, `selfsup prepare`)")
        wrapped = self._wrapped(ids)
        content = ids[1:-1] if wrapped else ids
        text = self.tokenizer.decode(content.tolist(), skip_special_tokens=False)
        new = self.edit(text, generator)
        out = dict(sample)
        if new == text:
            out[self.out_key] = ids.clone()
            return out
        encoded = np.asarray(self.tokens.encode([new])[0][0], dtype=np.int64)
        if wrapped:
            out[self.out_key] = self.tokens.wrap(encoded)
        else:
            out[self.out_key] = torch.from_numpy(encoded[: self.tokens.content_max or None])
        if self.out_key == self.key:  # per-token fields no longer line up with the new tokens
            for field in ("token_type_ids", "sentence_starts"):
                out.pop(field, None)
        return out

    def _wrapped(self, ids: torch.Tensor) -> bool:
        return len(ids) >= 2 and int(ids[0]) == self.tokens.cls_id and int(ids[-1]) == self.tokens.sep_id


def text_generator(seed: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(index)) % (1 << 63))
