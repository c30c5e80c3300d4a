"""Options of the transformer backbone, the text pretext tasks and the text evaluators.

pydantic only: importing this module never imports torch or transformers.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from selfsup.options import ExistingDir, Options

Family = Literal["gpt2", "llama", "bert"]
Pooling = Literal["mean", "cls", "last"]

#: Size presets: (layers, heads, dim). "nano" is nanoGPT's CPU setting (Karpathy, shakespeare_char on a
#: laptop: n_layer = n_head = 4, n_embd = 128); "mini", "small", "medium" and "base" are the BERT
#: sizes of Turc, Chang, Lee and Toutanova 2019 ("Well-Read Students Learn Better": BERT-Mini 4/256,
#: BERT-Small 4/512, BERT-Medium 8/512; BERT-Base and GPT-2 small are 12/768).
SIZE_PRESETS: dict[str, tuple[int, int, int]] = {
    "nano": (4, 4, 128),
    "mini": (4, 4, 256),
    "small": (4, 8, 512),
    "medium": (8, 8, 512),
    "base": (12, 12, 768),
}
Size = Literal["nano", "mini", "small", "medium", "base"]
_ARCHITECTURE_FIELDS = ("size", "layers", "heads", "dim", "intermediate", "context", "family")


# ----------------------------------------------------------------------------------- backbone


class TransformerOptions(Options):
    """A transformers model: a decoder (``gpt2``: GPT2LMHeadModel, ``llama``: LlamaForCausalLM) or
    an encoder (``bert``: BertForPreTraining, with MLM and NSP heads), built from a size preset and
    explicit overrides, or loaded from a local ``pretrained`` directory (never from a hub)."""

    family: Family | None = Field(
        None, description="Architecture; default 'gpt2', or the pretrained directory's own (config.model_type)."
    )
    size: Size = Field(
        "nano", description="Preset (layers, heads, dim): nano 4/4/128, mini 4/4/256, small 4/8/512, medium 8/8/512, base 12/12/768."
    )
    layers: int | None = Field(None, gt=0, description="Transformer blocks (overrides the preset).")
    heads: int | None = Field(None, gt=0, description="Attention heads (overrides the preset).")
    dim: int | None = Field(None, gt=0, description="Hidden size (overrides the preset); divisible by heads.")
    intermediate: int | None = Field(None, gt=0, description="Feed-forward size; default 4 * dim (gpt2, bert) or 8/3 * dim rounded up to a multiple of 64 (llama).")
    context: int = Field(512, gt=1, description="Maximum positions (windows and max_length must fit).")
    dropout: float | None = Field(
        None, ge=0, lt=1, description="Dropout of embeddings, attention and residuals; default 0.1, or the pretrained config's."
    )
    tokenizer: str | None = Field(
        None,
        description="Tokenizer spec ('bytes', a shipped name such as 'bpe-8k', or a directory); sets the vocabulary size "
        "and special ids. Default with pretrained: the directory's own tokenizer.",
    )
    pretrained: ExistingDir | None = Field(
        None,
        description="Local directory with a transformers checkpoint (e.g. MiniLM's, or a previous run's export/<name>): "
        "weights loaded with from_pretrained, heads missing from it initialised.",
    )
    pooling: Pooling = Field("mean", description="embed(): masked mean of the last hidden states, the first token, or the last real token.")
    attn_implementation: Literal["sdpa", "eager"] = Field("sdpa", description="transformers attention implementation.")
    tie_embeddings: bool = Field(True, description="Share input embeddings and the LM head's output weights.")

    @model_validator(mode="after")
    def _check(self) -> "TransformerOptions":
        if self.pretrained is not None:
            given = sorted(f for f in _ARCHITECTURE_FIELDS if f in self.model_fields_set and f != "family")
            if given:
                raise ValueError(
                    f"pretrained: the architecture comes from {self.pretrained}/config.json; remove {', '.join(given)}"
                )
            return self
        if self.tokenizer is None:
            raise ValueError("tokenizer is required without pretrained (e.g. tokenizer = 'bytes' or 'bpe-8k')")
        layers, heads, dim = self.architecture()[:3]
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        if self.resolved_family() == "llama" and (dim // heads) % 2:
            raise ValueError(f"llama needs an even head size for rotary embeddings, got dim/heads = {dim // heads}")
        return self

    def resolved_family(self) -> str:
        return self.family or "gpt2"

    def architecture(self) -> tuple[int, int, int, int]:
        """(layers, heads, dim, intermediate): the preset with explicit fields applied."""
        layers, heads, dim = SIZE_PRESETS[self.size]
        layers, heads, dim = self.layers or layers, self.heads or heads, self.dim or dim
        if self.intermediate is not None:
            intermediate = self.intermediate
        elif self.resolved_family() == "llama":
            intermediate = -(-(8 * dim // 3) // 64) * 64
        else:
            intermediate = 4 * dim
        return layers, heads, dim, intermediate


# ----------------------------------------------------------------------------------- tasks


class CLMOptions(Options):
    """Next-token prediction (GPT) on packed windows from a source with ``window`` set."""

    cross_document_attention: bool = Field(
        False,
        description="Let tokens attend to earlier documents packed into the same window. False: a block-diagonal causal "
        "mask per document, and position ids restarting at each document.",
    )


class MaskingOptions(Options):
    """BERT's masked-token selection (Devlin et al. 2019), with whole-word and span variants."""

    mlm_probability: float = Field(0.15, gt=0, lt=1, description="Fraction of (non-special) tokens selected for prediction.")
    mask_fraction: float = Field(0.8, ge=0, le=1, description="Selected tokens replaced by [MASK].")
    random_fraction: float = Field(0.1, ge=0, le=1, description="Selected tokens replaced by a random token (the rest are kept).")
    masking: Literal["token", "whole_word", "span"] = Field(
        "token",
        description="Select single tokens, whole words (all pieces of a word together), or SpanBERT spans of whole words "
        "(Joshi et al. 2020: geometric lengths).",
    )
    span_p: float = Field(0.2, gt=0, le=1, description="span: geometric distribution parameter of span lengths (in words).")
    max_span_length: int = Field(10, ge=1, description="span: the length distribution is truncated at this many words (and renormalised).")

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

    max_length: int = Field(128, ge=8, description="Pair length including [CLS] and two [SEP]; segment A takes about half.")
    next_probability: float = Field(0.5, gt=0, lt=1, description="Probability that B is the true continuation (IsNext).")
    mlm: bool = Field(False, description="Also compute the MLM loss on the same pairs (BERT's joint objective).")
    mlm_weight: float = Field(1.0, ge=0, description="Weight of the MLM loss when mlm = true.")


class SimCSEOptions(Options):
    """SimCSE (Gao, Yao and Chen 2021): unsupervised dropout views, or supervised labelled pairs."""

    variant: Literal["auto", "unsupervised", "supervised"] = Field(
        "auto", description="auto: supervised if the data source's samples have positive_ids, else unsupervised."
    )
    temperature: float = Field(0.05, gt=0)
    pooling: Literal["cls", "mean"] | None = Field(None, description="Sentence embedding; default the backbone's pooling.")
    mlp: bool = Field(True, description="Train through an MLP (Linear + tanh) over the pooled embedding, as the paper's CLS setting; not used by embed().")
    hard_negative_weight: float = Field(
        0.0, description="Supervised: added to the hard negatives' logits (log of the paper's weight; 0 = weight 1)."
    )
    gather_distributed: bool = Field(True, description="In-batch negatives from every DDP rank (with gradients).")


# ----------------------------------------------------------------------------------- evaluators


class PerplexityOptions(Options):
    """Loss and perplexity of a decoder on held-out windows (a source with ``window``), beside a
    unigram model fitted with add-one smoothing on ``fit_data`` (when given) over the same targets."""

    max_batches: int | None = Field(None, gt=0, description="Evaluate only the first N batches.")
    cross_document_attention: bool = Field(False, description="As the clm task's option: mask attention across documents.")


class MLMAccuracyOptions(MaskingOptions):
    """Masked-token accuracy and loss of an encoder on held-out text masked with a fixed seed."""

    seed: int = Field(0, ge=0, description="Masking seed (the same positions at every evaluation).")
    max_batches: int | None = Field(None, gt=0, description="Evaluate only the first N batches.")


class NSPAccuracyOptions(Options):
    """Accuracy of an encoder's NSP head on held-out pairs built with a fixed seed (as the nsp task)."""

    max_length: int = Field(128, ge=8)
    next_probability: float = Field(0.5, gt=0, lt=1)
    seed: int = Field(0, ge=0, description="Pairing seed (the same pairs at every evaluation).")
    rounds: int = Field(
        1, ge=1, description="Pair every held-out document this many times (each round its own seed): more pairs from few documents."
    )
    max_batches: int | None = Field(None, gt=0, description="Evaluate only the first N batches (per round).")


class STSOptions(Options):
    """Spearman correlation between embedding cosine similarity and human ratings of ``data.pairs``."""

