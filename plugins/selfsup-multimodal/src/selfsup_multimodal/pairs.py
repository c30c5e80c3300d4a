"""Paired data for cross-modal tasks: digit images with captions, spoken keywords with transcripts.

A paired sample carries both modalities under the keys each plugin's backbones read: ``"image"``
``[C, H, W]`` (vision) or ``"audio"`` ``[T]`` (speech), and ``"input_ids"`` ``[L]`` (text, with
[CLS]/[SEP]), plus ``"label"`` (the digit or keyword id) and ``"text"`` (the caption). ``collate``
pads the text side and, for audio, the waveforms, so a batch feeds both encoders.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch.utils.data import default_collate

from selfsup.components import BuildContext
from selfsup_multimodal.options import DIGIT_NAMES


def _tokenize(tokenizer: Any, texts: list[str], max_length: int) -> list[torch.Tensor]:
    ids = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
    return [torch.tensor(x, dtype=torch.long) for x in ids]


def collate_pairs(samples: list[dict[str, Any]], pad_id: int, collate_rest: Any) -> dict[str, Any]:
    """The text side through selfsup-text's ``pad_collate`` (``input_ids``, ``attention_mask``),
    the other modality by ``collate_rest``, captions as a list under ``"text"``."""
    from selfsup_text.data.collate import pad_collate

    text = pad_collate([{"input_ids": s["input_ids"]} for s in samples], pad_id)
    rest = collate_rest([{k: v for k, v in s.items() if k not in ("input_ids", "text")} for s in samples])
    return {**rest, **text, "text": [s["text"] for s in samples]}


class DigitCaptions:
    """Digits (``selfsup-vision``'s ``digits`` split) with a caption per image from ``templates``
    (the template is picked by a hash of the image's index, so it is fixed per image)."""

    def __init__(self, options: Any, context: BuildContext):
        from selfsup_text.tokenizers import load_tokenizer
        from selfsup_vision.data.arrays import build_digits

        self.images = build_digits(options, context)
        self.tokenizer = load_tokenizer(options.tokenizer, base_dir=context.base_dir)
        self.captions = []
        for i in range(len(self.images)):
            label = int(self.images.labels[i])
            pick = int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=4).digest(), "little")
            template = options.templates[pick % len(options.templates)]
            self.captions.append(template.format(name=DIGIT_NAMES[label], digit=label))
        self.ids = _tokenize(self.tokenizer, self.captions, options.max_length)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = self.images[i]  # {"image": [1, 8, 8], "label"}
        return {**sample, "input_ids": self.ids[i], "text": self.captions[i]}

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_pairs(samples, int(self.tokenizer.pad_token_id), default_collate)


class SpokenWords:
    """``synth_speech`` utterances (split by voice) with their transcripts tokenized."""

    def __init__(self, options: Any, context: BuildContext):
        from selfsup_speech.data.synthesized import build as build_speech
        from selfsup_speech.options.data import SynthSpeechOptions
        from selfsup_text.tokenizers import load_tokenizer

        speech_fields = {k: getattr(options, k) for k in SynthSpeechOptions.model_fields}
        self.speech = build_speech(SynthSpeechOptions(**{**speech_fields, "transcripts": True}), context)
        self.tokenizer = load_tokenizer(options.tokenizer, base_dir=context.base_dir)
        self.labels, self.speakers, self.sample_rate = self.speech.labels, self.speech.speakers, self.speech.sample_rate
        words = sorted(set(self.labels))
        self.word_ids = dict(zip(words, _tokenize(self.tokenizer, words, options.max_length)))

    def __len__(self) -> int:
        return len(self.speech)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = self.speech[i]  # {"audio": [T], "label", "speaker", "text"}
        return {**sample, "input_ids": self.word_ids[sample["text"]]}

    def collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        from selfsup_speech.data.collate import pad_audio

        return collate_pairs(samples, int(self.tokenizer.pad_token_id), pad_audio)


def build_digit_captions(options: Any, context: BuildContext) -> DigitCaptions:
    return DigitCaptions(options, context)


def build_spoken_words(options: Any, context: BuildContext) -> SpokenWords:
    return SpokenWords(options, context)
