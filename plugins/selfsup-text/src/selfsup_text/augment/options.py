"""Options of the token augmentations (pydantic only: no torch, no tokenizers)."""

from __future__ import annotations

from pydantic import Field, model_validator

from selfsup.options import Options


class _TokenAug(Options):
    key: str = Field("input_ids", description="Sample field holding the token ids (LongTensor[L]).")
    out_key: str | None = Field(
        None,
        description="Write the edited ids to this field and leave key as it was (e.g. positive_ids: "
        "a second view for simcse); default: edit key in place.",
    )
    special_ids: list[int] | None = Field(
        None,
        description="Token ids never touched. Default: keep the first and last token fixed (the [CLS]/[SEP] "
        "of add_special_tokens = true); set [] to treat every token alike.",
    )


class SpanCropOptions(_TokenAug):
    min_fraction: float = Field(0.5, gt=0, le=1, description="Smallest kept fraction of the tokens.")
    max_fraction: float = Field(1.0, gt=0, le=1, description="Largest kept fraction of the tokens.")
    max_tokens: int | None = Field(
        None, ge=1, description="Keep at most this many tokens (a passage of a long document); default no limit."
    )

    @model_validator(mode="after")
    def _order(self):
        if self.min_fraction > self.max_fraction:
            raise ValueError("min_fraction must be <= max_fraction")
        return self


class TokenDeletionOptions(_TokenAug):
    rate: float = Field(0.1, ge=0, lt=1, description="Probability of deleting each token.")


class TokenSubstitutionOptions(_TokenAug):
    rate: float = Field(0.1, ge=0, le=1, description="Probability of replacing each token.")
    vocab_size: int | None = Field(
        None,
        gt=0,
        description="Draw replacements uniformly from [low_id, vocab_size); default: from the sample's own "
        "(non-special) tokens, which keeps its unigram distribution and needs no tokenizer.",
    )
    low_id: int = Field(0, ge=0, description="Smallest replacement id when vocab_size is set (e.g. past the specials).")

    @model_validator(mode="after")
    def _range(self):
        if self.vocab_size is not None and self.low_id >= self.vocab_size:
            raise ValueError("low_id must be < vocab_size")
        return self


class TokenSwapOptions(_TokenAug):
    rate: float = Field(
        0.1, ge=0, le=1,
        description="Left to right, each editable token not just swapped is swapped with the next one with "
        "this probability.",
    )
