"""The ``transformer`` backbone: a transformers model with its pretraining heads and its tokenizer.

Decoders: GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners") as
``GPT2LMHeadModel`` and Llama (Touvron et al. 2023, "LLaMA: Open and Efficient Foundation Language
Models") as ``LlamaForCausalLM``. Encoder: BERT (Devlin et al. 2019, "BERT: Pre-training of Deep
Bidirectional Transformers for Language Understanding") as ``BertForPreTraining`` (the MLM head and
the NSP head). Models are built from a transformers config (size preset plus explicit fields, the
vocabulary and special ids from the tokenizer) or loaded with ``from_pretrained`` from a local
checkpoint folder or a Hugging Face Hub repository (``hf:org/name[@revision]``, from the Hub cache;
see :mod:`selfsup.lib.pretrained`): the family comes from its config, heads the checkpoint lacks are
initialised (:data:`OPTIONAL_HEADS`), and the load report goes to the run's ``pretrained.json``.

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
        # GPT-2's tanh GELU as one fused kernel (F.gelu(approximate="tanh")), forward and backward; the
        # config's default "gelu_new" writes the same formula as 8 elementwise ops (issue 20: 6-7% of a
        # CPU training step). Loaded checkpoints keep their own config.
        return GPT2Config(
            n_positions=options.context, n_embd=dim, n_layer=layers, n_head=heads, n_inner=intermediate,
            resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, activation_function="gelu_pytorch_tanh",
            **ids,
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


#: Keys of the heads this backbone puts on a published body: initialised when a checkpoint lacks them
#: and reported as missing, which strict loading allows. BERT's MLM and NSP heads and the pooler that
#: feeds NSP (a ``BertModel`` checkpoint such as MiniLM has no heads); a decoder's LM head (absent
#: from a ``LlamaModel`` checkpoint; GPT-2's is tied to the input embeddings).
OPTIONAL_HEADS = {"bert": ("cls.", "bert.pooler."), "gpt2": ("lm_head.",), "llama": ("lm_head.",)}


def load_pretrained(options: Any, base_dir: Path | None = None,
                    load_weights: bool = True) -> tuple[Any, str, Any, Any]:
    """``(model, family, resolved, report)`` from ``options.pretrained``: a local checkpoint folder or
    ``hf:org/name[@revision]`` resolved in the Hugging Face cache (:func:`selfsup.lib.pretrained.resolve_pretrained`),
    then transformers' ``from_pretrained`` with ``local_files_only`` (its key renames, base-model
    prefix and tied weights apply). The family is the config's ``model_type``. The load report
    (:class:`selfsup.lib.pretrained.LoadReport`) is transformers' loading info; under
    ``pretrained_strict`` unexpected keys, shape mismatches and missing keys outside
    :data:`OPTIONAL_HEADS` raise :class:`selfsup.lib.pretrained.PretrainedMismatch`.
    ``load_weights = False`` (trained weights are loaded right after the build: a resume, ``selfsup
    eval``, serving): the model is built from the checkpoint's config alone and the report is None."""
    from transformers import AutoConfig

    from selfsup.lib.pretrained import downloads_allowed, resolve_pretrained

    resolved = resolve_pretrained(options.pretrained, download=downloads_allowed(options.pretrained_download),
                                  base_dir=base_dir)
    directory = resolved.path
    if not (directory / "config.json").is_file():
        raise ValueError(f"pretrained = {options.pretrained!r}: {directory} has no config.json; the transformer "
                         f"backbone takes a transformers checkpoint (a save_pretrained folder: config.json, weights)")
    config = AutoConfig.from_pretrained(directory, local_files_only=True)
    family = config.model_type
    if family not in FAMILIES:
        raise ValueError(f"pretrained = {options.pretrained!r}: model_type {family!r} is not supported "
                         f"(supported: {', '.join(FAMILIES)})")
    if options.family is not None and options.family != family:
        raise ValueError(f"family = {options.family!r}, but pretrained = {options.pretrained!r} is a {family!r} "
                         f"model (its config.json); remove family or give a {options.family} checkpoint")
    overrides: dict[str, Any] = {}
    if options.dropout is not None:
        keys = {"gpt2": ("resid_pdrop", "embd_pdrop", "attn_pdrop"), "llama": ("attention_dropout",),
                "bert": ("hidden_dropout_prob", "attention_probs_dropout_prob")}[family]
        overrides = {k: options.dropout for k in keys}
    model_class = _model_class(family)
    if not load_weights:  # the architecture only: its tensors are replaced right after the build
        config = AutoConfig.from_pretrained(directory, local_files_only=True,
                                            attn_implementation=options.attn_implementation, **overrides)
        return model_class(config), family, resolved, None
    # shape mismatches are loaded as "initialised" and reported: strictness is decided below, in selfsup's terms
    model, info = model_class.from_pretrained(
        directory, local_files_only=True, output_loading_info=True, ignore_mismatched_sizes=True,
        attn_implementation=options.attn_implementation, **overrides,
    )
    report = loading_report(model, info, f"{model_class.__name__}.from_pretrained")
    check_report(report, family, str(resolved.spec), options.pretrained_strict)
    return model, family, resolved, report


def loading_report(model: nn.Module, info: Mapping[str, Any], how: str) -> Any:
    """A :class:`selfsup.lib.pretrained.LoadReport` of transformers' ``output_loading_info``."""
    from selfsup.lib.pretrained import LoadReport

    missing = sorted(info.get("missing_keys") or ())
    unexpected = sorted(info.get("unexpected_keys") or ())
    mismatched = sorted((str(k), list(a), list(b)) for k, a, b in info.get("mismatched_keys") or ())
    skipped = set(missing) | {k for k, *_ in mismatched}
    matched = sorted(k for k in model.state_dict() if k not in skipped)
    return LoadReport(matched=matched, missing=missing, unexpected=unexpected, mismatched=mismatched,
                      notes=[f"loaded with transformers' {how}"])


def check_report(report: Any, family: str, source: str, strict: bool) -> None:
    """Under ``strict``: raise :class:`selfsup.lib.pretrained.PretrainedMismatch` for unexpected keys,
    shape mismatches or missing keys outside the family's :data:`OPTIONAL_HEADS`."""
    from selfsup.lib.pretrained import PretrainedMismatch

    required = [k for k in report.missing if not k.startswith(OPTIONAL_HEADS[family])]
    if not strict or not (report.unexpected or report.mismatched or required):
        return
    problems = []
    if report.mismatched:
        problems.append("shape mismatches " + _sample([f"{k} {a} vs {b}" for k, a, b in report.mismatched]))
    if report.unexpected:
        problems.append(f"{len(report.unexpected)} keys the {family} model does not have: {_sample(report.unexpected)}")
    if required:
        problems.append(f"{len(required)} {family} keys missing from it: {_sample(required)}")
    raise PretrainedMismatch(f"pretrained = {source!r} does not fit this backbone ({'; '.join(problems)}); give a "
                             f"checkpoint of this architecture, or set pretrained_strict = false to load what matches "
                             f"(the rest initialised)")


def _sample(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


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
        from selfsup.lib.pretrained import attach_record

        model, family, resolved, report = load_pretrained(options, context.base_dir,
                                                          load_weights=getattr(context, "load_weights", True))
        tokenizer = load_tokenizer(options.tokenizer or str(resolved.path), base_dir=context.base_dir)
        rows = int(model.config.get_text_config().vocab_size)
        if vocab_size_of(tokenizer) > rows:  # e.g. a [MASK] the checkpoint's tokenizer lacked: new rows, initialised
            model.resize_token_embeddings(vocab_size_of(tokenizer))
            if report is not None:
                report.notes.append(f"embedding rows {rows} -> {vocab_size_of(tokenizer)} for the tokenizer "
                                    f"(initialised)")
        backbone = TransformerBackbone(model, tokenizer, family, options.pooling)
        if report is not None:
            attach_record(backbone, resolved, report)  # the run's pretrained.json
        return backbone
    tokenizer = load_tokenizer(options.tokenizer, base_dir=context.base_dir)
    family = options.resolved_family()
    model = _model_class(family)(_config(options, tokenizer))
    return TransformerBackbone(model, tokenizer, family, options.pooling)
