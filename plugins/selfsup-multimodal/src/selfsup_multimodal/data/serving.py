"""Serving decoders of the paired sources (``digit_captions``, ``spoken_words``): a served input holds
either modality, or both.

A served model is one backbone of the run (``selfsup serve RUN --backbone KEY``): the image or audio
encoder, or the text encoder. The decoder is composed like the source: the image or audio field goes
through the decoder of the source the pairs were built from (selfsup-vision's ``digits``,
selfsup-speech's ``synth_speech``, built by registered name with the same options), the ``text``
field through selfsup-text's ``texts`` decoder with the source's tokenizer and ``max_length`` (so a
caption is tokenized as the training captions were). An input must give at least one field; the
service refuses one without the field the served backbone reads (the backbone's ``consumes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from selfsup.components import BadInput, BuildContext

TEXT = "text"


class PairDecoder:
    """``{"image" | "audio": bytes, "text": str}`` (either or both) -> the paired source's sample keys
    for the fields given: the other modality's (``image`` ``[C, H, W]`` / ``audio`` ``[S]``) and
    ``input_ids`` ``[L]`` with the caption under ``"text"``. Stats of both decoders, merged."""

    def __init__(self, media: Any, text: Any):
        self.media, self.text = media, text
        self.fields: Mapping[str, str] = MappingProxyType({**media.fields, TEXT: "text"})

    def __call__(self, raw: Mapping[str, Any], *, truncate: bool = True) -> tuple[dict[str, Any], dict[str, float]]:
        media = {k: v for k, v in raw.items() if k in self.media.fields}
        if not media and TEXT not in raw:
            raise BadInput("", f"send one of the fields {', '.join(self.fields)}", 422)
        sample: dict[str, Any] = {}
        stats: dict[str, float] = {}
        if media:
            decoded, media_stats = self.media(media, truncate=truncate)
            sample.update(decoded)
            stats.update(media_stats)
        if TEXT in raw:
            decoded, text_stats = self.text({TEXT: raw[TEXT]}, truncate=truncate)
            sample.update(decoded)
            sample[TEXT] = raw[TEXT]
            stats.update(text_stats)
        return sample, stats


def _text_decoder(options: Any, context: BuildContext) -> Any:
    return context.decoder("texts", {"texts": ["-"], "tokenizer": options.tokenizer, "max_length": options.max_length})


def digit_captions_decoder(options: Any, context: BuildContext) -> PairDecoder:
    return PairDecoder(context.decoder("digits", options.child_options()), _text_decoder(options, context))


def spoken_words_decoder(options: Any, context: BuildContext) -> PairDecoder:
    return PairDecoder(context.decoder("synth_speech", {**options.child_options(), "transcripts": True}),
                       _text_decoder(options, context))
