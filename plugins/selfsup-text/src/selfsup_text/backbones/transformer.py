"""The ``transformer`` backbone: a transformers model with its pretraining heads and its tokenizer.

Decoders: GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners") as
``GPT2LMHeadModel`` and Llama (Touvron et al. 2023, "LLaMA: Open and Efficient Foundation Language
Models") as ``LlamaForCausalLM``. Encoder: BERT (Devlin et al. 2019, "BERT: Pre-training of Deep
Bidirectional Transformers for Language Understanding") as ``BertForPreTraining`` (the MLM head and
the NSP head). Models are built from a transformers config (size preset plus explicit fields, the
vocabulary and special ids from the tokenizer) or loaded from a local directory with
``from_pretrained`` (heads the checkpoint lacks are initialised; the family comes from its config).

Tasks use the methods documented on :class:`TransformerBackbone`: ``hidden_states`` (the last layer,
``[B, T, D]``), ``lm_logits`` (the decoder's LM head or BERT's MLM head), ``nsp_logits`` (BERT's
pooler + next-sentence head) and ``pool``; a BERT backbone also implements
:class:`selfsup.components.LayerwiseMaskedEncoder` (``masked_positions``, ``encode_layers``) for the
core's ``data2vec``. ``export(directory)`` writes a plain transformers
checkpoint (safetensors) with the tokenizer, loadable with ``AutoModel``/``AutoTokenizer``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from selfsup.components import BuildContext

DECODERS = ("gpt2", "llama")
FAMILIES = ("gpt2", "llama", "bert")


def vocab_size_of(tokenizer: Any) -> int:
    """Token ids a tokenizer can produce: its base vocabulary plus added (special) tokens."""
    return len(tokenizer)


def _config(options: Any, tokenizer: Any) -> Any:
    from transformers import BertConfig, GPT2Config, LlamaConfig

    family = options.resolved_family()
    layers, heads, dim, intermediate = options.architecture()
    dropout = 0.1 if options.dropout is None else options.dropout
    ids = dict(
        vocab_size=vocab_size_of(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id if tokenizer.bos_token_id is None else tokenizer.bos_token_id,
        eos_token_id=tokenizer.sep_token_id if tokenizer.eos_token_id is None else tokenizer.eos_token_id,
        tie_word_embeddings=options.tie_embeddings,
        attn_implementation=options.attn_implementation,
    )
    if family == "gpt2":
        return GPT2Config(
            n_positions=options.context, n_embd=dim, n_layer=layers, n_head=heads, n_inner=intermediate,
            resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, **ids,
        )
    if family == "llama":  # Llama has attention dropout only (no residual/embedding dropout)
        return LlamaConfig(
            hidden_size=dim, intermediate_size=intermediate, num_hidden_layers=layers, num_attention_heads=heads,
            num_key_value_heads=heads, max_position_embeddings=options.context, attention_dropout=dropout, **ids,
        )
    return BertConfig(
        hidden_size=dim, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=intermediate,
        max_position_embeddings=options.context, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
        type_vocab_size=2, **ids,
    )


def _model_class(family: str) -> Any:
    from transformers import BertForPreTraining, GPT2LMHeadModel, LlamaForCausalLM

    return {"gpt2": GPT2LMHeadModel, "llama": LlamaForCausalLM, "bert": BertForPreTraining}[family]


def quiet_transformers() -> None:
    """No progress bars from transformers ("Loading weights", "Writing model shards") in our logs."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def load_pretrained(directory: Path, options: Any) -> tuple[Any, str]:
    """``(model, family)`` from a local transformers directory; the family is the config's model_type."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(directory, local_files_only=True)
    family = config.model_type
    if family not in FAMILIES:
        raise ValueError(f"{directory}: model_type {family!r} is not supported (supported: {', '.join(FAMILIES)})")
    if options.family is not None and options.family != family:
        raise ValueError(f"family = {options.family!r}, but {directory}/config.json is a {family!r} model")
    overrides: dict[str, Any] = {}
    if options.dropout is not None:
        keys = {"gpt2": ("resid_pdrop", "embd_pdrop", "attn_pdrop"), "llama": ("attention_dropout",),
                "bert": ("hidden_dropout_prob", "attention_probs_dropout_prob")}[family]
        overrides = {k: options.dropout for k in keys}
    model = _model_class(family).from_pretrained(
        directory, local_files_only=True, attn_implementation=options.attn_implementation, **overrides
    )
    return model, family


class TransformerBackbone(nn.Module):
    """A transformers pretraining model (``self.model``) with its tokenizer.

    ``embed(batch)`` pools the last hidden states: ``pooling = "mean"`` (over ``attention_mask``),
    ``"cls"`` (the first token) or ``"last"`` (the last real token, for decoders). Batches are dicts
    with ``input_ids [B, T]`` and optionally ``attention_mask [B, T]`` (1 = real token; all ones if
    absent) and ``token_type_ids [B, T]`` (BERT segment ids)."""

    def __init__(self, model: nn.Module, tokenizer: Any, family: str, pooling: str = "mean"):
        super().__init__()
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r} (known: {', '.join(FAMILIES)})")
        self.model = model
        self.tokenizer = tokenizer
        self.family = family
        self.pooling = pooling
        self.output_dim = int(model.config.hidden_size)
        self.vocab_size = int(model.config.get_text_config().vocab_size)  # embedding rows (>= len(tokenizer))
        # BERT's pretraining heads are not all used by every task (MLM alone never touches the pooler
        # and the next-sentence head, SimCSE not the MLM head): DDP must look for unused parameters.
        self.find_unused_parameters = family == "bert"

    # ----------------------------------------------------------------------------- structure

    @property
    def is_decoder(self) -> bool:
        return self.family in DECODERS

    @property
    def body(self) -> nn.Module:
        """The transformer without heads (GPT2Model, LlamaModel or BertModel)."""
        return {"gpt2": lambda: self.model.transformer, "llama": lambda: self.model.model,
                "bert": lambda: self.model.bert}[self.family]()

    @property
    def max_positions(self) -> int:
        return int(self.model.config.max_position_embeddings)

    # ----------------------------------------------------------------------------- forward

    def hidden_states(
        self,
        input_ids: torch.Tensor,  # [B, T]
        attention_mask: torch.Tensor | None = None,  # [B, T] (1 = real) or a prepared 4D mask [B, 1, T, T]
        token_type_ids: torch.Tensor | None = None,  # [B, T] (BERT only)
        position_ids: torch.Tensor | None = None,  # [B, T]
    ) -> torch.Tensor:
        """The last layer's hidden states ``[B, T, D]``."""
        if input_ids.shape[1] > self.max_positions:
            raise ValueError(f"sequence length {input_ids.shape[1]} exceeds the backbone's context "
                             f"{self.max_positions}")
        kwargs: dict[str, Any] = {"attention_mask": attention_mask, "position_ids": position_ids}
        if self.family == "bert":
            kwargs["token_type_ids"] = token_type_ids
        elif token_type_ids is not None and bool(token_type_ids.any()):
            raise ValueError(f"a {self.family} backbone has no segment (token type) embeddings")
        out = self.body(input_ids=input_ids, **kwargs)
        return out.last_hidden_state

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """``hidden_states`` of a batch dict: ``[B, T, D]``."""
        return self.hidden_states(batch["input_ids"], batch.get("attention_mask"), batch.get("token_type_ids"))

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits ``[..., V]`` of hidden states ``[..., D]``: the decoder's LM head, or
        BERT's MLM head (transform + decoder tied to the input embeddings)."""
        if self.family == "bert":
            return self.model.cls.predictions(hidden)
        return self.model.lm_head(hidden)

    def nsp_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """BERT's next-sentence logits ``[B, 2]`` (0 = IsNext, 1 = NotNext) from hidden states
        ``[B, T, D]`` (the pooler reads the first token)."""
        if self.family != "bert":
            raise ValueError(f"next-sentence prediction needs a bert backbone, this one is {self.family!r}")
        return self.model.cls.seq_relationship(self.model.bert.pooler(hidden))

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None,
             pooling: str | None = None) -> torch.Tensor:
        """``[B, T, D]`` -> ``[B, D]`` by ``pooling`` (default: the backbone's)."""
        pooling = pooling or self.pooling
        if pooling == "cls":
            return hidden[:, 0]
        if attention_mask is None:
            attention_mask = torch.ones(hidden.shape[:2], dtype=torch.long, device=hidden.device)
        if pooling == "last":
            last = attention_mask.long().sum(dim=1).clamp(min=1) - 1  # [B]: right padding
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        if pooling != "mean":
            raise ValueError(f"unknown pooling {pooling!r} (mean, cls or last)")
        weights = attention_mask.to(hidden.dtype).unsqueeze(-1)  # [B, T, 1]
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)  # [B, D]

    def embed(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Pooled features ``[B, output_dim]``."""
        return self.pool(self(batch), batch.get("attention_mask"))

    # ----------------------------------------------------------------------------- masked prediction (data2vec)

    def _require_encoder(self, what: str) -> None:
        if self.family != "bert":
            raise ValueError(f"{what} needs a bidirectional encoder (family = 'bert'); this backbone is a "
                             f"{self.family!r} decoder")
        if self.tokenizer.mask_token_id is None:
            raise ValueError(f"{what} needs a tokenizer with a [MASK] token")

    def masked_positions(self, batch: Mapping[str, Any], generator: torch.Generator, *, ratio: float | None = None,
                         span: int | None = None) -> torch.Tensor:
        """``[B, T]`` bool: each token masked with probability ``ratio`` (default 0.15, BERT's and
        data2vec's), never a special token or padding, at least one token per row that has one. For the
        core's ``data2vec`` (:class:`selfsup.components.LayerwiseMaskedEncoder`); single tokens only: a
        ``span`` other than 1 is refused."""
        self._require_encoder("masked prediction")
        if span not in (None, 1):
            raise ValueError(f"text masks single tokens; mask_length = {span} is for speech spans and image blocks")
        ids = torch.as_tensor(batch["input_ids"]).cpu()  # [B, T]
        special = torch.isin(ids, torch.tensor(self.tokenizer.all_special_ids, dtype=ids.dtype))  # [B, T]
        attention = batch.get("attention_mask")
        if attention is not None:
            special |= torch.as_tensor(attention).cpu() == 0
        eligible = ~special
        mask = (torch.rand(ids.shape, generator=generator) < (0.15 if ratio is None else ratio)) & eligible
        empty = ~mask.any(dim=1) & eligible.any(dim=1)  # [B]: rows that drew nothing
        if empty.any():  # one eligible token of each, uniformly
            scores = torch.rand(ids.shape, generator=generator).masked_fill(~eligible, -1.0)  # [B, T]
            pick = scores.argmax(dim=1)  # [B]
            rows = empty.nonzero().flatten()
            mask[rows, pick[rows]] = True
        return mask

    def encode_layers(self, batch: Mapping[str, Any],
                      mask: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Each layer's hidden states ``[B, T, D]`` (the embeddings' output excluded) and the padding
        mask ``[B, T]`` (True = padding; ``None`` without ``attention_mask``); tokens where ``mask [B, T]``
        is True are replaced by [MASK] (its embedding row is the learned mask embedding)."""
        self._require_encoder("encode_layers")
        ids = batch["input_ids"]  # [B, T]
        if mask is not None:
            ids = ids.masked_fill(mask.to(ids.device), self.tokenizer.mask_token_id)
        attention = batch.get("attention_mask")
        out = self.body(input_ids=ids, attention_mask=attention, token_type_ids=batch.get("token_type_ids"),
                        output_hidden_states=True)
        return list(out.hidden_states[1:]), None if attention is None else attention == 0

    # ----------------------------------------------------------------------------- export

    def export_formats(self) -> dict[str, Any]:
        """``selfsup export --format hf``: ``save_pretrained`` (model and tokenizer), for ``AutoModel``."""
        return {"hf": self.export}

    def export(self, directory: str | Path) -> None:
        """Write the model (``save_pretrained``, safetensors) and the tokenizer to ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        quiet_transformers()
        self.model.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)


def check_tokenizer(backbone: TransformerBackbone, tokenizer: Any, who: str) -> None:
    """Raise if ``tokenizer`` (a data source's) is not the size of the backbone's tokenizer, or has
    ids beyond the backbone's embedding rows."""
    if tokenizer is None:
        return
    n, own = vocab_size_of(tokenizer), vocab_size_of(backbone.tokenizer)
    if n != own or n > backbone.vocab_size:
        raise ValueError(
            f"{who}: the data source's tokenizer has {n} tokens but the backbone's has {own} "
            f"(embedding rows: {backbone.vocab_size}); give the backbone and the data source the same tokenizer"
        )


def build(options: Any, context: BuildContext) -> TransformerBackbone:
    from selfsup_text.tokenizers import load_tokenizer

    quiet_transformers()
    if options.pretrained is not None:
        model, family = load_pretrained(options.pretrained, options)
        tokenizer = load_tokenizer(options.tokenizer or str(options.pretrained), base_dir=context.base_dir)
        rows = int(model.config.get_text_config().vocab_size)
        if vocab_size_of(tokenizer) > rows:  # e.g. a [MASK] the checkpoint's tokenizer lacked: new rows, initialised
            model.resize_token_embeddings(vocab_size_of(tokenizer))
        return TransformerBackbone(model, tokenizer, family, options.pooling)
    tokenizer = load_tokenizer(options.tokenizer, base_dir=context.base_dir)
    family = options.resolved_family()
    model = _model_class(family)(_config(options, tokenizer))
    return TransformerBackbone(model, tokenizer, family, options.pooling)
