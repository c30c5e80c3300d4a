"""Options of the transformer backbone (pydantic only: importing this never imports torch or transformers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from selfsup.options import PretrainedOptions

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


class TransformerOptions(PretrainedOptions):
    """A transformers model: a decoder (``gpt2``: GPT2LMHeadModel, ``llama``: LlamaForCausalLM) or
    an encoder (``bert``: BertForPreTraining, with MLM and NSP heads), built from a size preset and
    explicit overrides, or loaded from a transformers checkpoint with ``pretrained``: a local folder
    (``config.json`` + weights, e.g. MiniLM's or a previous run's ``export/<name>``) or a Hugging Face
    Hub repository ``hf:org/name[@revision]`` (``hf:bert-base-uncased``, ``hf:gpt2``), read from the
    Hub cache (downloaded only with ``pretrained_download = true`` or ``SELFSUP_ALLOW_DOWNLOADS=1``).
    The architecture, family and (by default) tokenizer then come from the checkpoint; heads it lacks
    (BERT's MLM and NSP heads and pooler, a decoder's LM head) are initialised and reported as missing;
    anything else that does not fit is an error unless ``pretrained_strict = false``."""

    family: Family | None = Field(
        None, description="Architecture; default 'gpt2', or the pretrained checkpoint's own (config.model_type)."
    )
    size: Size = Field(
        "nano", description="Preset (layers, heads, dim): nano 4/4/128, mini 4/4/256, small 4/8/512, medium 8/8/512, "
                            "base 12/12/768."
    )
    layers: int | None = Field(None, gt=0, description="Transformer blocks (overrides the preset).")
    heads: int | None = Field(None, gt=0, description="Attention heads (overrides the preset).")
    dim: int | None = Field(None, gt=0, description="Hidden size (overrides the preset); divisible by heads.")
    intermediate: int | None = Field(None, gt=0, description="Feed-forward size; default 4 * dim (gpt2, bert) or 8/3 * "
                                                             "dim rounded up to a multiple of 64 (llama).")
    context: int = Field(512, gt=1, description="Maximum positions (windows and max_length must fit).")
    dropout: float | None = Field(
        None, ge=0, lt=1,
        description="Dropout of embeddings, attention and residuals; default 0.1, or the pretrained config's."
    )
    tokenizer: str | None = Field(
        None,
        min_length=1,  # "" would name the recipe's own folder
        description="Tokenizer spec ('bytes', a shipped name such as 'bpe-8k', or a directory); sets the vocabulary "
        "size and special ids. Default with pretrained: the checkpoint's own tokenizer.",
    )
    pooling: Pooling = Field("mean", description="embed(): masked mean of the last hidden states, the first token, or "
                                                 "the last real token.")
    attn_implementation: Literal["sdpa", "eager"] = Field("sdpa", description="transformers attention implementation.")
    tie_embeddings: bool = Field(True, description="Share input embeddings and the LM head's output weights.")

    @field_validator("pretrained", mode="before")
    @classmethod
    def _path_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, Path) else value  # the Python API passes folders as Paths

    @model_validator(mode="after")
    def _check(self) -> "TransformerOptions":
        if self.pretrained is not None:
            from selfsup.lib.pretrained import parse_pretrained

            spec = parse_pretrained(self.pretrained)
            if spec.kind not in ("path", "hf"):
                raise ValueError(f"pretrained = {self.pretrained!r}: the transformer backbone takes a transformers "
                                 f"checkpoint, a local folder or hf:org/name[@revision], not {spec.kind}: weights")
            if spec.kind == "path" and not Path(spec.name).is_dir():
                raise ValueError(f"pretrained = {self.pretrained!r} is a file; the transformer backbone takes a "
                                 f"transformers checkpoint folder (config.json and weights) or hf:org/name[@revision]")
            given = sorted(f for f in _ARCHITECTURE_FIELDS if f in self.model_fields_set and f != "family")
            if given:
                raise ValueError(
                    f"pretrained: the architecture comes from the checkpoint's config.json ({self.pretrained}); "
                    f"remove {', '.join(given)}"
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
