"""Options of the multimodal components (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from selfsup.options import Options
from selfsup_speech.options.data import SynthSpeechOptions
from selfsup_vision.options import DigitsOptions

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class _TextSide(Options):
    tokenizer: str = Field("bytes", description="Tokenizer of the text side ('bytes', 'bpe-8k' or a folder).")
    max_length: int = Field(32, ge=2, description="Captions are truncated to this many tokens (with [CLS]/[SEP]).")


class DigitCaptionsOptions(DigitsOptions, _TextSide):
    """scikit-learn's digits, each paired with a caption naming it ("seven", "the digit 7", ...)."""

    templates: list[str] = Field(
        default_factory=lambda: ["{name}", "the digit {name}", "a handwritten {digit}", "number {name}"],
        min_length=1,
        description="Caption templates ({name}: the word, {digit}: the numeral); each image gets one, picked by its index.",
    )


class SpokenWordsOptions(SynthSpeechOptions, _TextSide):
    """The synthesized keywords (``synth_speech``) with their transcripts tokenized: speech-text pairs."""


class CLIPOptions(Options):
    """Symmetric InfoNCE between the projected embeddings of two encoders (a table of two roles)."""

    embed_dim: int = Field(128, gt=0, description="Size of the shared embedding space.")
    projection: Literal["linear", "mlp"] = Field("linear", description="Head per role: one linear map (CLIP) or Linear-GELU-Linear.")
    temperature: float = Field(0.07, gt=0, description="Initial temperature; learned (as log 1/t), capped at 1/100 as in CLIP.")
    learn_temperature: bool = Field(True, description="Learn the temperature (CLIP) or keep it fixed.")
    positives: Literal["pair", "same_text"] = Field(
        "same_text",
        description="'pair': only the sample's own partner is positive; 'same_text': every item in the batch whose "
        "text side has the same tokens is a positive too (short captions repeat within a batch).",
    )
    gather_distributed: bool = Field(True, description="Negatives from every DDP rank (with gradients).")


class RetrievalOptions(Options):
    """Recall@k in both directions on held-out pairs, through a cross-modal task's projections."""

    task: str = Field(description="The recipe's cross-modal task (its [tasks] key) whose projections embed both sides.")
    ks: list[int] = Field(default_factory=lambda: [1, 5], min_length=1, description="Recall@k values to report.")
    match: Literal["text", "label", "pair"] = Field(
        "text",
        description="A retrieved item is a hit if it is the query's partner ('pair'), has the same text tokens ('text') "
        "or the same label ('label').",
    )
    needs_fit_data: ClassVar[bool] = False
