"""Options of the text pretext tasks (pydantic only: importing this never imports torch or transformers)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from selfsup.options import Options


class CLMOptions(Options):
    """Next-token prediction (GPT) on packed windows from a source with ``window`` set."""

    cross_document_attention: bool = Field(
        False,
        description="Let tokens attend to earlier documents packed into the same window. False: a block-diagonal "
        "causal mask per document, and position ids restarting at each document.",
    )


class MaskingOptions(Options):
    """BERT's masked-token selection (Devlin et al. 2019), with whole-word and span variants."""

    mlm_probability: float = Field(0.15, gt=0, lt=1,
                                   description="Fraction of (non-special) tokens selected for prediction.")
    mask_fraction: float = Field(0.8, ge=0, le=1, description="Selected tokens replaced by [MASK].")
    random_fraction: float = Field(0.1, ge=0, le=1,
                                   description="Selected tokens replaced by a random token (the rest are kept).")
    masking: Literal["token", "whole_word", "span"] = Field(
        "token",
        description="Select single tokens, whole words (all pieces of a word together), or SpanBERT spans of whole "
        "words (Joshi et al. 2020: geometric lengths).",
    )
    span_p: float = Field(0.2, gt=0, le=1,
                          description="span: geometric distribution parameter of span lengths (in words).")
    max_span_length: int = Field(10, ge=1, description="span: the length distribution is truncated at this many words "
                                                       "(and renormalised).")

    @model_validator(mode="after")
    def _fractions(self) -> "MaskingOptions":
        if self.mask_fraction + self.random_fraction > 1 + 1e-9:
            raise ValueError(
                f"mask_fraction + random_fraction = {self.mask_fraction + self.random_fraction} exceeds 1"
            )
        return self


class MLMOptions(MaskingOptions):
    """Masked language modelling (BERT) with an encoder backbone (family 'bert')."""


class NSPOptions(MaskingOptions):
    """Next-sentence prediction (BERT) on sentence pairs built from documents with ``sentence_starts``."""

    max_length: int = Field(128, ge=8,
                            description="Pair length including [CLS] and two [SEP]; segment A takes about half.")
    next_probability: float = Field(0.5, gt=0, lt=1,
                                    description="Probability that B is the true continuation (IsNext).")
    mlm: bool = Field(False, description="Also compute the MLM loss on the same pairs (BERT's joint objective).")
    mlm_weight: float = Field(1.0, ge=0, description="Weight of the MLM loss when mlm = true.")


class SimCSEOptions(Options):
    """SimCSE (Gao, Yao and Chen 2021): unsupervised dropout views, or supervised labelled pairs."""

    variant: Literal["auto", "unsupervised", "supervised"] = Field(
        "auto", description="auto: supervised if the data source's samples have positive_ids, else unsupervised."
    )
    temperature: float = Field(0.05, gt=0)
    pooling: Literal["cls", "mean"] | None = Field(None,
                                                   description="Sentence embedding; default the backbone's pooling.")
    mlp: bool = Field(True, description="Train through an MLP (Linear + tanh) over the pooled embedding, as the "
                                        "paper's CLS setting; not used by embed().")
    hard_negative_weight: float = Field(
        0.0, description="Supervised: added to the hard negatives' logits (log of the paper's weight; 0 = weight 1)."
    )
    gather_distributed: bool = Field(True, description="In-batch negatives from every DDP rank (with gradients).")
