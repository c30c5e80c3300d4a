"""Options of the text evaluators (pydantic only: importing this never imports torch or transformers)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from selfsup.options import Options
from selfsup_text.tasks.options import MaskingOptions


class PerplexityOptions(Options):
    """Loss and perplexity of a decoder on held-out windows (a source with ``window``), beside a
    unigram model fitted with add-one smoothing on ``fit_data`` (when given) over the same targets."""

    max_batches: int | None = Field(None, gt=0, description="Evaluate only the first N batches.")
    cross_document_attention: bool = Field(False,
                                           description="As the clm task's option: mask attention across documents.")


class MLMAccuracyOptions(MaskingOptions):
    """Masked-token accuracy and loss of an encoder on held-out text masked with a fixed seed."""

    seed: int = Field(0, ge=0, description="Masking seed (the same positions at every evaluation).")
    max_batches: int | None = Field(None, gt=0, description="Evaluate only the first N batches.")


class MaskedTokenProbeOptions(MLMAccuracyOptions):
    """A linear probe of the masked token from an encoder's frozen features at [MASK] positions, fitted on
    ``fit_data`` and scored on ``data`` (no MLM head needed)."""

    needs_fit_data: ClassVar[bool] = True
    classes: int = Field(256, ge=2, description="Probe the most frequent tokens among the fit positions; masked "
                                                "positions holding another token are left out (reported: covered).")
    weight_decay: float = Field(1e-4, ge=0, description="L2 penalty of the probe.")
    max_iter: int = Field(200, gt=0, description="L-BFGS iterations of the probe.")


class NSPAccuracyOptions(Options):
    """Accuracy of an encoder's NSP head on held-out pairs built with a fixed seed (as the nsp task)."""

    max_length: int = Field(128, ge=8)
    next_probability: float = Field(0.5, gt=0, lt=1)
    seed: int = Field(0, ge=0, description="Pairing seed (the same pairs at every evaluation).")
    rounds: int = Field(
        1, ge=1, description="Pair every held-out document this many times (each round its own seed): more pairs from "
                             "few documents."
    )
    max_batches: int | None = Field(None, gt=0, description="Evaluate only the first N batches (per round).")


class STSOptions(Options):
    """Spearman correlation between embedding cosine similarity and human ratings of ``data.pairs``."""


class SameDocumentOptions(Options):
    """Held-out passage retrieval: is a query window's nearest bank window (cosine of ``embed``) from its document?"""

    max_windows: int = Field(
        16, ge=2, description="Windows kept per document (the first ones wholly inside it): long articles would "
                              "otherwise outnumber short news items.")
    tfidf_baseline: bool = Field(True, description="Also report the same retrieval on TF-IDF bag-of-tokens vectors.")
