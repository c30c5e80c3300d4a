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

Starting weights (``pretrained``, :func:`load_own_pretrained`): an adapter's state dict (a weights
file, a ``selfsup export --format selfsup`` folder, an adapter export of :meth:`TrunkAdapter.export`,
or an ``hf:`` repository of one of those) through :func:`selfsup.lib.pretrained.load_pretrained_into`.
Without a trunk every tensor is the adapter's own and must fit; with a trunk only the adapter's own
modules are loaded: the file's ``encoder.*`` tensors (the layers, as saved by an export of a
shared-trunk adapter) are left out, since the shared layers come from the trunk backbone's own
``pretrained``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfsup.components import BuildContext

WEIGHTS_FILE, SELFSUP_FILE = "model.safetensors", "selfsup.json"


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

    #: The backbone's registered name and options model (an export records the one, loading
    #: validates its options with the other).
    kind: str = ""
    options_model: Any = None

    def __init__(self, options: Any, context: BuildContext | None, encoder: nn.Module | None = None):
        super().__init__()
        self.options, self.trunk = options, options.trunk
        if encoder is not None:  # load_export: the layers rebuilt from an export's config
            self.encoder = encoder
        else:
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

    # ------------------------------------------------------------------ export

    def export(self, directory: str | Path) -> None:
        """The adapter on its own, shared trunk layers included: ``model.safetensors`` (its state
        dict), ``selfsup.json`` (the backbone name, its options with the layers' size in place of
        ``trunk``, and the layers' whole ``BertConfig``) and a README. :func:`load_export` rebuilds
        it without the trunk."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_FILE))
        c = self.encoder.config
        # the layers as its own ones; the starting weights are in the file, so pretrained is not kept
        exclude = {"trunk", "pretrained", "pretrained_strict", "pretrained_download"}
        options = {**self.options.model_dump(mode="json", exclude=exclude),
                   "layers": c.num_hidden_layers, "heads": c.num_attention_heads, "dim": c.hidden_size,
                   "intermediate": c.intermediate_size, "dropout": c.hidden_dropout_prob}
        (directory / SELFSUP_FILE).write_text(json.dumps({
            "backbone": self.kind, "options": options, "encoder_config": c.to_dict(),
            "trained_on_trunk": self.trunk, "output_dim": self.output_dim,
        }, indent=2))
        (directory / "README.md").write_text(
            f"# {self.kind} export\n\nThe adapter and its transformer layers"
            + (f" (shared during training with the `{self.trunk}` backbone)" if self.trunk else "")
            + ":\n\n```python\nfrom selfsup_multimodal.backbones.trunk import load_export\n"
            f"adapter = load_export('.').eval()\nfeatures = adapter.embed(batch)  # [N, {self.output_dim}]\n```\n"
        )


class _OwnPart(nn.Module):
    """The adapter without its (shared) ``encoder``: its other modules, parameters and buffers, the
    very same tensors, so loading a state dict into this loads it into the adapter."""

    def __init__(self, adapter: TrunkAdapter):
        super().__init__()
        for name, child in adapter.named_children():
            if name != "encoder":
                self.add_module(name, child)
        for name, param in adapter.named_parameters(recurse=False):
            self.register_parameter(name, param)
        for name, buffer in adapter.named_buffers(recurse=False):
            self.register_buffer(name, buffer)


def _legacy_names(state: dict[str, Any]) -> dict[str, Any]:
    """Exports made before the audio front end was a component hold its buffers as ``mel.*``."""
    return {("frontend." + k if k.startswith("mel.") else k): v for k, v in state.items()}


def load_own_pretrained(adapter: TrunkAdapter, context: BuildContext | None) -> Any:
    """Load ``adapter.options.pretrained`` (when set) into the adapter with
    :func:`selfsup.lib.pretrained.load_pretrained_into` (strict unless ``pretrained_strict = false``)
    and attach the record for the run's ``pretrained.json``; returns the load report or None. With a
    shared trunk the file's ``encoder.*`` tensors are not loaded (a note in the report says so)."""
    from selfsup.lib.pretrained import load_pretrained_into, parse_pretrained

    options = adapter.options
    if options.pretrained is None:
        return None
    base_dir = context.base_dir if context is not None else None
    spec = parse_pretrained(options.pretrained)
    if spec.kind == "path" and Path(spec.name).is_dir() and (Path(spec.name) / SELFSUP_FILE).is_file():
        _check_adapter_export(Path(spec.name), adapter.kind)
    if adapter.trunk is None:
        return load_pretrained_into(adapter, options, type_name=adapter.kind, convert=_legacy_names,
                                    base_dir=base_dir, context=context)
    left_out: list[str] = []

    def own_tensors(state: dict[str, Any]) -> dict[str, Any]:
        left_out.extend(k for k in state if k.startswith("encoder."))
        return {k: v for k, v in _legacy_names(state).items() if not k.startswith("encoder.")}

    part = _OwnPart(adapter)
    report = load_pretrained_into(part, options, type_name=adapter.kind, convert=own_tensors, base_dir=base_dir,
                                  context=context)
    if report is None:  # trained weights are loaded right after the build (context.load_weights is false)
        return None
    if left_out:
        report.notes.append(f"{len(left_out)} encoder.* tensors not loaded: the layers are the shared trunk "
                            f"{adapter.trunk!r}'s (its own pretrained sets them)")
    record = part.pretrained_record
    record.update(load=report.as_dict(), summary=report.summary())
    adapter.pretrained_record = record
    return report


def _check_adapter_export(directory: Path, kind: str) -> None:
    """An adapter export (:meth:`TrunkAdapter.export`) of another adapter kind is an error."""
    meta = json.loads((directory / SELFSUP_FILE).read_text())
    if isinstance(meta, dict) and meta.get("backbone") not in (None, kind) and "format" not in meta:
        raise ValueError(f"pretrained = {str(directory)!r} is an export of a {meta['backbone']!r} adapter, "
                         f"not {kind!r}")


def load_export(directory: str | Path) -> TrunkAdapter:
    """A ``trunk_image`` or ``trunk_audio`` adapter holding the weights of an export directory,
    with layers of its own built from the saved ``BertConfig`` (no trunk backbone needed)."""
    from safetensors.torch import load_file
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertEncoder

    from selfsup_multimodal.backbones.audio import TrunkAudio
    from selfsup_multimodal.backbones.image import TrunkImage

    directory = Path(directory)
    meta = json.loads((directory / SELFSUP_FILE).read_text())
    kinds = {cls.kind: cls for cls in (TrunkImage, TrunkAudio)}
    if meta.get("backbone") not in kinds:
        raise ValueError(f"{directory / SELFSUP_FILE}: backbone {meta.get('backbone')!r} is not a trunk adapter "
                         f"({', '.join(kinds)})")
    cls = kinds[meta["backbone"]]
    config = BertConfig.from_dict({**meta["encoder_config"], "attn_implementation": "sdpa"})
    adapter = cls(cls.options_model.model_validate(meta["options"]), None, encoder=BertEncoder(config))
    adapter.load_state_dict(load_file(str(directory / WEIGHTS_FILE)), strict=True)
    return adapter
