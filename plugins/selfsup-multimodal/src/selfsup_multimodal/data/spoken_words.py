"""``spoken_words``: selfsup-speech's ``synth_speech`` keywords with their transcripts tokenized."""

from __future__ import annotations

from typing import Any

from selfsup.components import BuildContext
from selfsup_multimodal.data.pairs import collate_pairs, tokenized


class SpokenWords:
    """``synth_speech`` utterances (split by voice) with their transcripts tokenized."""

    def __init__(self, options: Any, context: BuildContext):
        self.speech = context.build("data", "synth_speech", {**options.child_options(), "transcripts": True})
        self.labels, self.speakers, self.sample_rate = self.speech.labels, self.speech.speakers, self.speech.sample_rate
        words = sorted(set(self.labels))
        self.text = tokenized(words, options, context)
        self.tokenizer = self.text.tokenizer
        self.word_ids = {w: self.text[i]["input_ids"] for i, w in enumerate(words)}

    def __len__(self) -> int:
        return len(self.speech)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = self.speech[i]  # {"audio": [T], "label", "speaker", "text"}
        return {**sample, "input_ids": self.word_ids[sample["text"]]}

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_pairs(samples, self.text, self.speech.collate)


def build_spoken_words(options: Any, context: BuildContext) -> SpokenWords:
    return SpokenWords(options, context)
