"""The transformer layers an input adapter runs its tokens through: a shared trunk or its own.

A shared trunk is the ``BertEncoder`` (``trunk.body.encoder``: the stack of ``BertLayer``\\ s) of a
text ``transformer`` backbone with family ``bert`` defined earlier in the recipe
(``BuildContext.backbones``). The adapter registers that very module as its ``encoder``, so the
layers are one set of tensors held by several backbones: ``SelfSupModel.parameters()`` yields them
once, the optimizer steps them once and ``model.safetensors`` stores them once (safetensors'
``save_model``/``load_model`` drop and restore the aliases), while each task's loss adds its
gradient to them. Without a trunk the adapter builds a ``BertEncoder`` of its own from
``layers``/``heads``/``dim`` and runs it through the same code: the "separate backbones" setting.

BERT's layers are post-LN (Devlin et al. 2019; Vaswani et al. 2017): like ``BertEmbeddings``, an
adapter normalises (LayerNorm) and drops out its input tokens before the first layer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from selfsup.components import BuildContext


def shared_encoder(trunk_key: str, context: BuildContext) -> nn.Module:
    """The ``BertEncoder`` of backbone ``trunk_key`` among those built before ``context.name``."""
    where = f"backbones.{context.name}.options.trunk"
    backbone = context.backbones.get(trunk_key)
    if backbone is None:
        before = ", ".join(repr(k) for k in context.backbones) or "none"
        raise ValueError(
            f"{where} = {trunk_key!r}: no backbone of that name is defined before backbones.{context.name} "
            f"(defined before it: {before}); put the trunk's [backbones.{trunk_key}] table first in the recipe"
        )
    family = getattr(backbone, "family", None)
    if family != "bert" or not hasattr(backbone, "body"):
        kind = family if family is not None else type(backbone).__name__
        raise ValueError(f"{where} = {trunk_key!r}: the trunk must be a 'transformer' backbone with family = 'bert', "
                         f"got {kind!r}")
    return backbone.body.encoder


def own_encoder(options: Any) -> nn.Module:
    """A fresh ``BertEncoder`` sized by ``options.own_architecture()`` (SDPA attention)."""
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertEncoder

    layers, heads, dim, intermediate, dropout = options.own_architecture()
    config = BertConfig(
        hidden_size=dim, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=intermediate,
        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, attn_implementation="sdpa",
    )
    encoder = BertEncoder(config)
    encoder.apply(_bert_init(config.initializer_range))
    return encoder


def _bert_init(std: float):
    """BERT's initialisation (``BertPreTrainedModel._init_weights``): normal(0, std) weights, zero biases."""

    def init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    return init


class TrunkAdapter(nn.Module):
    """Base of the input adapters: ``encoder`` (shared or own ``BertEncoder``), input LayerNorm and
    dropout, a final LayerNorm of the adapter's own, and :meth:`encode`.

    ``trunk`` is the recipe key of the shared trunk, or ``None`` for an own encoder."""

    #: Tasks that train another backbone on the trunk leave this adapter's own modules without
    #: gradient in a step (and round_robin leaves the trunk's): DDP must look for unused parameters.
    find_unused_parameters = True

    def __init__(self, options: Any, context: BuildContext):
        super().__init__()
        self.trunk = options.trunk
        self.encoder = shared_encoder(options.trunk, context) if options.trunk is not None else own_encoder(options)
        config = self.encoder.config
        self.output_dim = int(config.hidden_size)
        self.input_norm = nn.LayerNorm(self.output_dim, eps=config.layer_norm_eps)
        self.input_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.final_norm = nn.LayerNorm(self.output_dim, eps=config.layer_norm_eps)

    def encode(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Tokens ``x [B, T, D]`` (positions already added) through the layers; ``keep [B, T]`` bool
        marks real tokens (``None``: all). Returns each layer's output ``[B, T, D]``, the last one
        through the final LayerNorm."""
        from transformers.masking_utils import create_bidirectional_mask

        x = self.input_dropout(self.input_norm(x))
        # [B, 1, T, T] in the format of the encoder's attention implementation; None when nothing is padded
        mask = None if keep is None else create_bidirectional_mask(
            config=self.encoder.config, inputs_embeds=x, attention_mask=keep.long())
        states = []
        for layer in self.encoder.layer:
            x = layer(x, mask)
            states.append(x)
        states[-1] = self.final_norm(states[-1])
        return states
