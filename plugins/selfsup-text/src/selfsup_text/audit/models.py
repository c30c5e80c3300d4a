"""The model an audit scores: a run directory, a ``selfsup`` export or a transformers folder.

* A run directory (``recipe.json``) or a ``selfsup export --format selfsup`` folder (``selfsup.json``)
  is loaded with the public ``selfsup.load`` (the run's best, else newest intact, checkpoint); its
  backbone must be this plugin's ``transformer``, whose ``model`` is the transformers model *with its
  pretraining heads* (``GPT2LMHeadModel``/``LlamaForCausalLM``, or ``BertForPreTraining`` with the
  MLM head), so the LM head the ``clm``/``mlm`` task trained is scored as it was trained.
* A transformers folder (``config.json``: ``selfsup export --format hf``, a run's ``export/<name>``,
  or any local checkpoint such as MiniLM's) is loaded with ``AutoModelForCausalLM`` (decoder
  configs), else ``AutoModelForMaskedLM`` when the folder holds an MLM head, else ``AutoModel``
  (an encoder without an LM head: only the embedding test applies). Never downloads.

:class:`AuditModel` gives what the tests read: token logits ``[B, T, V]`` and last hidden states
``[B, T, D]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

DECODER_TYPES = ("gpt2", "llama", "gpt_neox", "gptj", "opt", "mistral", "qwen2", "phi", "gemma")


@dataclass
class AuditModel:
    """A transformers model and its tokenizer. ``kind``: ``"decoder"`` (causal LM head), ``"masked"``
    (MLM head) or ``"encoder"`` (no LM head)."""

    model: Any
    tokenizer: Any
    kind: str
    family: str
    source: str
    pooling: str  # the default sentence pooling: mean, cls or last
    device: torch.device

    @property
    def max_positions(self) -> int | None:
        config = self.model.config
        return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor | None,
                                                                                        torch.Tensor]:
        """``(logits [B, T, V] or None without an LM head, last hidden states [B, T, D])``, float32."""
        if self.max_positions is not None and input_ids.shape[1] > self.max_positions:
            raise ValueError(f"{input_ids.shape[1]} tokens exceed the model's {self.max_positions} positions")
        out = self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
                         output_hidden_states=True)
        hidden = out.hidden_states[-1] if getattr(out, "hidden_states", None) is not None else out.last_hidden_state
        logits = getattr(out, "logits", None)
        if logits is None:
            logits = getattr(out, "prediction_logits", None)  # BertForPreTraining
        return (None if logits is None or self.kind == "encoder" else logits.float()), hidden.float()

    @torch.no_grad()
    def embed(self, texts: list[str], *, pooling: str, batch_size: int = 64) -> torch.Tensor:
        """Sentence embeddings ``[N, D]`` (float32, CPU): the last hidden states pooled by ``pooling``
        (``mean`` over real tokens, ``cls``: the first token, ``last``: the last real token). Encoders
        read ``[CLS] text [SEP]``, decoders the text alone."""
        special = self.kind != "decoder"
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        rows = []
        for start in range(0, len(texts), batch_size):
            ids = [self.tokenizer(t, add_special_tokens=special)["input_ids"] for t in texts[start:start + batch_size]]
            length = max(len(i) for i in ids)
            batch = torch.full((len(ids), length), int(pad), dtype=torch.long)  # [B, T]
            mask = torch.zeros((len(ids), length), dtype=torch.long)  # [B, T]
            for i, row in enumerate(ids):
                batch[i, : len(row)] = torch.tensor(row)
                mask[i, : len(row)] = 1
            _, hidden = self.forward(batch, mask)  # [B, T, D]
            hidden, mask = hidden.cpu(), mask.to(hidden.dtype)
            if pooling == "cls":
                rows.append(hidden[:, 0])
            elif pooling == "last":
                rows.append(hidden[torch.arange(len(ids)), mask.sum(1).long() - 1])
            elif pooling == "mean":
                rows.append((hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True))  # [B, D]
            else:
                raise ValueError(f"unknown pooling {pooling!r} (mean, cls or last)")
        return torch.cat(rows)  # [N, D]


def load_audit_model(path: str | Path, *, device: str = "cpu") -> AuditModel:
    """The model at ``path`` (see the module docstring), in eval mode on ``device``."""
    path = Path(path)
    if (path / "recipe.json").is_file() or (path / "selfsup.json").is_file():
        return _from_selfsup(path, device)
    if (path / "config.json").is_file():
        return _from_transformers(path, device)
    raise FileNotFoundError(f"{path} is not a run directory (recipe.json), a selfsup export (selfsup.json) or a "
                            "transformers folder (config.json)")


def _from_selfsup(path: Path, device: str) -> AuditModel:
    import selfsup

    loaded = selfsup.load(path, device=device)
    backbone = loaded.backbone
    family = getattr(backbone, "family", None)
    if family not in ("gpt2", "llama", "bert") or not hasattr(backbone, "model"):
        raise ValueError(f"{path}: the audit scores the text plugin's 'transformer' backbone; this run's main "
                         f"backbone is a {type(backbone).__name__}")
    model = backbone.model.eval()
    kind = "masked" if family == "bert" else "decoder"
    return AuditModel(model, backbone.tokenizer, kind, family, str(path), backbone.pooling, torch.device(device))


def _from_transformers(path: Path, device: str) -> AuditModel:
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    from selfsup_text.tokenizers import load_tokenizer

    hf_logging.disable_progress_bar()
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    architectures = list(getattr(config, "architectures", None) or [])
    tokenizer = load_tokenizer(str(path))
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "weights not used" (e.g. BERT's NSP head) is expected here
    try:
        if config.model_type in DECODER_TYPES or any("CausalLM" in a or "LMHead" in a for a in architectures):
            model, kind = AutoModelForCausalLM.from_pretrained(path, local_files_only=True), "decoder"
        else:
            model, info = AutoModelForMaskedLM.from_pretrained(path, local_files_only=True, output_loading_info=True)
            kind = "masked"
            if info.get("missing_keys"):  # no MLM head in the folder: transformers would initialise one at random
                model, kind = AutoModel.from_pretrained(path, local_files_only=True), "encoder"
    finally:
        hf_logging.set_verbosity(verbosity)
    pooling = "last" if kind == "decoder" else "mean"
    return AuditModel(model.to(device).eval(), tokenizer, kind, config.model_type, str(path), pooling,
                      torch.device(device))
