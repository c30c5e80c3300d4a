"""Options of the paired data sources (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from selfsup.options import Options

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class _TextSide(Options):
    """The text side, tokenized by selfsup-text's ``texts`` source (built by name)."""

    tokenizer: str = Field("bytes", min_length=1,
                           description="Tokenizer of the text side ('bytes', 'bpe-8k' or a folder).")
    max_length: int = Field(32, ge=3, description="Captions are truncated to this many tokens (with [CLS]/[SEP]).")


class _Paired(_TextSide):
    """A paired source builds its other modality's source by registry name, with options passed on as a
    table (validated by that source when it is built); ``split`` is passed on too."""

    #: The option naming the other modality's source options, and that source's registered name.
    child_field: ClassVar[str] = ""
    child_type: ClassVar[str] = ""

    split: str | None = Field(None, description="The part of the set ('train', 'val', ...), passed on as the other "
                              "modality's source's 'split' (default: that source's own default).")

    def child_options(self) -> dict[str, Any]:
        """The options of the other modality's source: its table, plus ``split`` when given."""
        options = dict(getattr(self, self.child_field))
        if self.split is not None:
            options["split"] = self.split
        return options

    @model_validator(mode="after")
    def _split_once(self):
        if self.split is not None and "split" in getattr(self, self.child_field):
            raise ValueError(f"split is given twice: as split and as {self.child_field}.split; keep one")
        return self


class DigitCaptionsOptions(_Paired):
    """scikit-learn's digits (selfsup-vision's ``digits``), each paired with a caption naming it
    ("seven", "the digit 7", ...)."""

    child_field: ClassVar[str] = "digits"
    child_type: ClassVar[str] = "digits"

    digits: dict[str, Any] = Field(
        default_factory=dict,
        description="Options of selfsup-vision's 'digits' source the images come from, e.g. { limit = 100 } "
        "(checked by that source when built).")
    templates: list[str] = Field(
        default_factory=lambda: ["{name}", "the digit {name}", "a handwritten {digit}", "number {name}"],
        min_length=1,
        description="Caption templates ({name}: the word, {digit}: the numeral); each image gets one, picked by "
        "its index.",
    )


class SpokenWordsOptions(_Paired):
    """The synthesized keywords (selfsup-speech's ``synth_speech``) with their transcripts tokenized:
    speech-text pairs."""

    child_field: ClassVar[str] = "speech"
    child_type: ClassVar[str] = "synth_speech"

    speech: dict[str, Any] = Field(
        default_factory=dict,
        description="Options of selfsup-speech's 'synth_speech' source, e.g. { utterances_per_pair = 4 } (checked "
        "by that source when built; transcripts are always on).")
