"""``digit_captions``: selfsup-vision's ``digits`` images, each with a caption naming the digit."""

from __future__ import annotations

import hashlib
from typing import Any

from torch.utils.data import default_collate

from selfsup.components import BuildContext
from selfsup_multimodal.data.options import DIGIT_NAMES
from selfsup_multimodal.data.pairs import collate_pairs, tokenized


class DigitCaptions:
    """Digits (``selfsup-vision``'s ``digits``) with a caption per image from ``templates``
    (the template is picked by a hash of the image's index, so it is fixed per image)."""

    def __init__(self, options: Any, context: BuildContext):
        self.images = context.build("data", "digits", options.child_options())
        self.captions = []
        for i in range(len(self.images)):
            label = int(self.images[i]["label"])
            pick = int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=4).digest(), "little")
            template = options.templates[pick % len(options.templates)]
            self.captions.append(template.format(name=DIGIT_NAMES[label], digit=label))
        self.text = tokenized(self.captions, options, context)
        self.tokenizer = self.text.tokenizer
        self.ids = [self.text[i]["input_ids"] for i in range(len(self.captions))]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = self.images[i]  # {"image": [1, 8, 8], "label"}
        return {**sample, "input_ids": self.ids[i], "text": self.captions[i]}

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_pairs(samples, self.text, getattr(self.images, "collate", None) or default_collate)


def build_digit_captions(options: Any, context: BuildContext) -> DigitCaptions:
    return DigitCaptions(options, context)
