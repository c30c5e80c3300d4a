"""What the paired data sources (``digit_captions``, ``spoken_words``) share: tokenizing the text side
and collating both modalities.

A paired sample carries both modalities under the keys each plugin's backbones read: ``"image"``
``[C, H, W]`` (vision) or ``"audio"`` ``[T]`` (speech), and ``"input_ids"`` ``[L]`` (text, with
[CLS]/[SEP]), plus ``"label"`` (the digit or keyword id) and ``"text"`` (the caption). ``collate``
pads the text side and, for audio, the waveforms, so a batch feeds both encoders.

Each source is composed of sibling plugins' sources, built by their registered names
(:meth:`selfsup.components.BuildContext.build`): the images or clips from selfsup-vision's
``digits`` or selfsup-speech's ``synth_speech``, the tokenized text from selfsup-text's ``texts``
(whose ``collate`` pads it). No module of those plugins is imported.
"""

from __future__ import annotations

from typing import Any

from selfsup.components import BuildContext


def tokenized(texts: list[str], options: Any, context: BuildContext) -> Any:
    """selfsup-text's ``texts`` source over ``texts`` (in order, none dropped): ``[i]["input_ids"]``
    is text i with [CLS]/[SEP], at most ``options.max_length`` tokens; ``collate`` pads."""
    source = context.build("data", "texts", {"texts": texts, "tokenizer": options.tokenizer,
                                             "max_length": options.max_length})
    if len(source) != len(texts):
        raise ValueError(f"{len(texts) - len(source)} of the texts tokenized to nothing")
    return source


def collate_pairs(samples: list[dict[str, Any]], text: Any, collate_rest: Any) -> dict[str, Any]:
    """The text side through the ``texts`` source's ``collate`` (``input_ids``, ``attention_mask``),
    the other modality by ``collate_rest``, captions as a list under ``"text"``. Only the keys every
    sample has are kept: served inputs may carry one modality (see :mod:`selfsup_multimodal.data.serving`)."""
    common = set.intersection(*(set(s) for s in samples))
    out: dict[str, Any] = {}
    rest = [{k: v for k, v in s.items() if k in common and k not in ("input_ids", "text")} for s in samples]
    if rest[0]:
        out.update(collate_rest(rest))
    if "input_ids" in common:
        out.update(text.collate([{"input_ids": s["input_ids"]} for s in samples]))
    if "text" in common:
        out["text"] = [s["text"] for s in samples]
    return out
