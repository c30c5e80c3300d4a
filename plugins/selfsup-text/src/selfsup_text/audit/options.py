"""Options of ``selfsup audit`` (pydantic only: importing this never imports torch or transformers)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from selfsup.options import Options


class AuditOptions(Options):
    """What ``selfsup audit`` measures and how (docs/bias.md)."""

    method: Literal["crows", "seat", "all"] = Field(
        "all",
        description="crows: likelihood differences on minimally different sentence pairs (decoders and masked "
        "LMs); seat: sentence-embedding association tests (any model); all: every method the model allows.",
    )
    attributes: list[str] = Field(
        ["gender"], min_length=1,
        description="Attributes to measure (template sets and WEAT tests are tagged with one): the built-in "
        "'gender', 'control' (WEAT 1, flowers/insects: a sanity check), or one an extra file defines.",
    )
    extra: Path | None = Field(
        None, description="A TOML or JSON file adding templates, word pairs, attributes and WEAT tests "
        "(the layout of assets/audit/gender.toml and weat.toml).",
    )
    seed: int = Field(0, description="Seed of the bootstrap resamples and the Monte Carlo permutations.")
    bootstrap: int = Field(2000, ge=100, description="Bootstrap resamples for the confidence intervals.")
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="Level of the (percentile) bootstrap intervals.")
    permutations: int = Field(
        100_000, ge=10_000,
        description="Monte Carlo permutations of the WEAT test when the exact test has more than exact_limit "
        "partitions.",
    )
    exact_limit: int = Field(
        200_000, ge=1,
        description="Enumerate every partition of the targets (exact permutation p-value) when there are at most "
        "this many.",
    )
    decoder_prefix: Literal["eos", "none"] = Field(
        "eos",
        description="Decoders: score a sentence after the end-of-text token (eos: every token is scored, GPT-2's "
        "convention), or without a prefix (none: the first token is given, not scored).",
    )
    pooling: Literal["auto", "mean", "cls", "last"] = Field(
        "auto",
        description="Sentence embedding for SEAT: auto is the run's backbone pooling, else mean for encoders and "
        "the last token for decoders (May et al. 2019 for GPT).",
    )
    batch_size: int = Field(64, ge=1, description="Sequences per forward pass.")
    device: str = Field("cpu", description="Torch device.")
