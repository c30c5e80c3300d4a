"""``wav2vec2_encoder``'s ``pretrained`` option: a checkpoint's architecture and weights.

Sources (:mod:`selfsup.lib.pretrained` finds the files in the libraries' caches, offline unless
downloads are allowed):

* ``torchaudio:BUNDLE``: a ``torchaudio.pipelines`` wav2vec 2.0 / HuBERT bundle (Baevski et al. 2020;
  Hsu et al. 2021): the architecture is the bundle's ``wav2vec2_model`` arguments, the weights its
  torch hub file; an ASR bundle's ``aux`` (CTC) head is a fine-tuning head and is dropped. WavLM
  bundles (a different attention) are refused;
* a transformers checkpoint (``hf:org/name``, or a local ``save_pretrained`` folder): a
  ``Wav2Vec2Model``/``HubertModel`` (or ``*ForPreTraining``/``*ForCTC``, whose heads transformers
  drops when loading the base model), converted with torchaudio's ``import_huggingface_model``;
  its ``masked_spec_embed`` becomes the mask embedding;
* ``selfsup export --format torchaudio`` (``config.json`` + ``model.pt``) or ``--format selfsup``
  (``selfsup.json`` + ``backbone.safetensors``) of this backbone, local or in an ``hf:`` repository;
* a state-dict file (this backbone's, or a bare ``Wav2Vec2Model``'s): the architecture is the options'.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selfsup.lib.pretrained import (
    HF_PATTERNS,
    PretrainedMismatch,
    ResolvedWeights,
    downloads_allowed,
    parse_pretrained,
    read_state_dict,
    resolve_pretrained,
)

#: What an ``hf:`` snapshot holds: transformers checkpoints and configs, and the ``model.pt`` of a
#: torchaudio export published as is.
HF_FILES = (*HF_PATTERNS, "model.pt")
TORCHAUDIO_TYPES = ("Wav2Vec2",)
HF_TYPES = {"wav2vec2": "Wav2Vec2Model", "hubert": "HubertModel"}


@dataclass
class Checkpoint:
    """A resolved checkpoint: ``params`` (``torchaudio.models.wav2vec2_model`` keyword arguments),
    ``state`` (keys of :class:`~selfsup_speech.backbones.wav2vec2.Wav2Vec2Encoder`: ``model.*`` and
    maybe ``mask_embedding``), its sample rate, whether inputs are standardised, and notes."""

    params: dict[str, Any]
    state: dict[str, Any]
    sample_rate: int
    normalize_waveform: bool
    resolved: ResolvedWeights
    notes: list[str] = field(default_factory=list)


def read_checkpoint(options: Any, base_dir: Path | None = None) -> Checkpoint:
    """The checkpoint ``options.pretrained`` names (see the module docstring). Raises ValueError for
    a source this backbone cannot take, :class:`~selfsup.lib.pretrained.WeightsNotCached` when the
    files are not cached and downloads are off."""
    spec = parse_pretrained(options.pretrained)
    download = downloads_allowed(options.pretrained_download)
    if spec.kind not in ("torchaudio", "hf", "path"):
        raise ValueError(f"wav2vec2_encoder: pretrained = {str(spec)!r}: takes torchaudio:BUNDLE, hf:org/name or a "
                         f"local folder or file, not {spec.kind}: weights")
    if spec.kind == "torchaudio":
        return _torchaudio(resolve_pretrained(spec, download=download))
    resolved = resolve_pretrained(spec, download=download, base_dir=base_dir, hf_patterns=HF_FILES)
    if resolved.path.is_file():
        return _state_dict_file(resolved, options)
    return _folder(resolved, options)


def legacy_weight_norm(state: dict[str, Any]) -> dict[str, Any]:
    """Old ``torch.nn.utils.weight_norm`` names (``weight_g``/``weight_v``, as fairseq-era files such
    as torchaudio's bundles keep the positional conv) -> the parametrization's ``original0/1``."""
    renamed = {".weight_g": ".parametrizations.weight.original0", ".weight_v": ".parametrizations.weight.original1"}
    out = {}
    for key, value in state.items():
        for old, new in renamed.items():
            if key.endswith(old):
                key = key[: -len(old)] + new
        out[key] = value
    return out


def _prefixed(state: dict[str, Any]) -> dict[str, Any]:
    """A ``Wav2Vec2Model`` state dict -> the backbone's keys (``model.``)."""
    return {f"model.{k}": v for k, v in legacy_weight_norm(state).items()}


def _drop_aux(params: dict[str, Any], state: dict[str, Any], notes: list[str]) -> None:
    """Drop a CTC head (``aux``, ``aux_num_out``): a fine-tuning head, not part of the encoder."""
    if params.get("aux_num_out") is not None or any(k.startswith("aux.") for k in state):
        notes.append(f"dropped the ASR (CTC) head aux ({params.get('aux_num_out')} outputs): a fine-tuning head")
        for key in [k for k in state if k.startswith("aux.")]:
            del state[key]
    params["aux_num_out"] = None


def _torchaudio(resolved: ResolvedWeights) -> Checkpoint:
    details = resolved.details
    if details.get("model_type") not in TORCHAUDIO_TYPES:
        raise ValueError(f"wav2vec2_encoder: pretrained = {str(resolved.spec)!r} is a {details.get('model_type')} "
                         f"bundle; this backbone loads wav2vec 2.0 and HuBERT bundles (model type Wav2Vec2: "
                         f"WAV2VEC2_BASE, HUBERT_BASE, WAV2VEC2_LARGE_LV60K, ...), not WavLM")
    params = {k: (list(map(list, v)) if k == "extractor_conv_layer_config" else v)
              for k, v in dict(details["params"]).items()}
    state, notes = read_state_dict(resolved.path), []
    _drop_aux(params, state, notes)
    notes.append("mask embedding initialised (torchaudio bundles do not keep it)")
    return Checkpoint(params, _prefixed(state), int(details["sample_rate"]), bool(details["normalize_waveform"]),
                      resolved, notes)


def _state_dict_file(resolved: ResolvedWeights, options: Any) -> Checkpoint:
    from selfsup_speech.backbones.wav2vec2 import torchaudio_config

    state, notes = read_state_dict(resolved.path), []
    mask = {"mask_embedding": state.pop("mask_embedding")} if "mask_embedding" in state else {}
    state = {k.removeprefix("model."): v for k, v in state.items()}  # this backbone's, or a bare Wav2Vec2Model's
    params = torchaudio_config(options)
    _drop_aux(params, state, notes)
    return Checkpoint(params, {**_prefixed(state), **mask}, int(options.sample_rate),
                      bool(options.normalize_waveform), resolved, notes)


def _folder(resolved: ResolvedWeights, options: Any) -> Checkpoint:
    folder = resolved.path
    manifest = folder / "selfsup.json"
    info = json.loads(manifest.read_text()) if manifest.is_file() else {}
    if info.get("format") == "selfsup-export":
        return _selfsup_export(resolved, info)
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    if "model_type" in config:
        return _transformers(resolved, config, options)
    if "extractor_conv_layer_config" in config:
        return _torchaudio_export(resolved, config, info)
    raise ValueError(f"wav2vec2_encoder: pretrained = {str(resolved.spec)!r}: {folder} is neither a transformers "
                     f"checkpoint (config.json with model_type), a `selfsup export --format torchaudio` folder "
                     f"(config.json + model.pt) nor a `selfsup export --format selfsup` folder (selfsup.json)")


def _torchaudio_export(resolved: ResolvedWeights, config: dict[str, Any], info: dict[str, Any]) -> Checkpoint:
    folder = resolved.path
    weights = folder / "model.pt" if (folder / "model.pt").is_file() else folder
    state, notes = read_state_dict(weights), []
    params = dict(config)
    _drop_aux(params, state, notes)
    notes.append("mask embedding initialised (torchaudio exports do not keep it)")
    saved = info.get("options", {})
    return Checkpoint(params, _prefixed(state), int(info.get("sample_rate", 16000)),
                      bool(saved.get("normalize_waveform") or False), resolved, notes)


def _selfsup_export(resolved: ResolvedWeights, info: dict[str, Any]) -> Checkpoint:
    from selfsup_speech.backbones.options import Wav2Vec2EncoderOptions
    from selfsup_speech.backbones.wav2vec2 import torchaudio_config

    if info.get("type") != "wav2vec2_encoder":
        raise ValueError(f"wav2vec2_encoder: pretrained = {str(resolved.spec)!r} is an export of a "
                         f"{info.get('type')!r} backbone, not wav2vec2_encoder")
    saved = dict(info.get("options") or {})
    if saved.get("pretrained"):
        raise ValueError(f"wav2vec2_encoder: pretrained = {str(resolved.spec)!r}: this export's own architecture came "
                         f"from pretrained = {saved['pretrained']!r}, which the export does not record; export the run "
                         f"with `selfsup export --format torchaudio` (config.json + model.pt) and load that folder")
    options = Wav2Vec2EncoderOptions(**{k: v for k, v in saved.items() if not k.startswith("pretrained")})
    state = read_state_dict(resolved.path / info.get("weights", "backbone.safetensors"))
    return Checkpoint(torchaudio_config(options), legacy_weight_norm(state), int(options.sample_rate),
                      bool(options.normalize_waveform), resolved)


def hf_params(config: Any) -> dict[str, Any]:
    """``torchaudio.models.wav2vec2_model`` arguments of a transformers ``Wav2Vec2Config``/``HubertConfig``
    (the mapping of torchaudio's ``import_huggingface_model``)."""
    return {
        "extractor_mode": f"{config.feat_extract_norm}_norm",
        "extractor_conv_layer_config": [list(x) for x in zip(config.conv_dim, config.conv_kernel, config.conv_stride)],
        "extractor_conv_bias": bool(config.conv_bias),
        "encoder_embed_dim": config.hidden_size,
        "encoder_projection_dropout": config.feat_proj_dropout,
        "encoder_pos_conv_kernel": config.num_conv_pos_embeddings,
        "encoder_pos_conv_groups": config.num_conv_pos_embedding_groups,
        "encoder_num_layers": config.num_hidden_layers,
        "encoder_num_heads": config.num_attention_heads,
        "encoder_attention_dropout": config.attention_dropout,
        "encoder_ff_interm_features": config.intermediate_size,
        "encoder_ff_interm_dropout": config.activation_dropout,
        "encoder_dropout": config.hidden_dropout,
        "encoder_layer_norm_first": bool(config.do_stable_layer_norm),
        "encoder_layer_drop": config.layerdrop,
        "aux_num_out": None,
    }


def _transformers(resolved: ResolvedWeights, raw: dict[str, Any], options: Any) -> Checkpoint:
    try:
        import transformers
    except ImportError:
        raise ValueError(f"wav2vec2_encoder: pretrained = {str(resolved.spec)!r} is a transformers checkpoint: "
                         f"pip install 'selfsup-speech[hf]' (transformers)") from None
    from torchaudio.models.wav2vec2.utils import import_huggingface_model

    spec, folder, model_type = str(resolved.spec), resolved.path, raw.get("model_type")
    if model_type not in HF_TYPES:
        raise ValueError(f"wav2vec2_encoder: pretrained = {spec!r} is a transformers {model_type!r} checkpoint; this "
                         f"backbone loads {', '.join(HF_TYPES)} (Wav2Vec2Model, HubertModel and their ForPreTraining/"
                         f"ForCTC), not WavLM or other architectures")
    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    odd = {k: getattr(config, k, "gelu") for k in ("feat_extract_activation", "hidden_act")}
    if any(v != "gelu" for v in odd.values()) or not getattr(config, "feat_proj_layer_norm", True):
        raise ValueError(f"wav2vec2_encoder: pretrained = {spec!r}: torchaudio's Wav2Vec2Model needs gelu activations "
                         f"and a feature-projection layer norm; this config has {odd}, feat_proj_layer_norm = "
                         f"{getattr(config, 'feat_proj_layer_norm', True)}")
    cls = getattr(transformers, HF_TYPES[model_type])
    model, info = cls.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    missing = [k for k in info.get("missing_keys", []) if k != "masked_spec_embed"]
    if missing and options.pretrained_strict:
        raise PretrainedMismatch(f"{spec} does not hold a full {HF_TYPES[model_type]}: transformers found no "
                                 f"{len(missing)} encoder tensors ({', '.join(sorted(missing)[:4])}); set "
                                 f"pretrained_strict = false to start them from random values")
    notes = [f"transformers {type(model).__name__} converted with torchaudio import_huggingface_model"]
    dropped = sorted(info.get("unexpected_keys", []))
    if dropped:
        notes.append(f"dropped {len(dropped)} checkpoint tensors outside the encoder (pre-training/CTC heads: "
                     f"{', '.join(dropped[:8])}{' ...' if len(dropped) > 8 else ''})")
    if missing:
        notes.append(f"{len(missing)} encoder tensors not in the checkpoint (random): {', '.join(sorted(missing)[:4])}")
    state = _prefixed(import_huggingface_model(model.eval()).state_dict())
    embed = getattr(model, "masked_spec_embed", None)
    if embed is not None and "masked_spec_embed" not in info.get("missing_keys", []):
        state["mask_embedding"] = embed.detach().clone()
    else:
        notes.append("mask embedding initialised (no masked_spec_embed in the checkpoint)")
    features = folder / "preprocessor_config.json"
    extractor = json.loads(features.read_text()) if features.is_file() else {}
    resolved.details = {**resolved.details, "model_type": model_type, "architectures": raw.get("architectures"),
                        "params": hf_params(config), "preprocessor": extractor}
    return Checkpoint(hf_params(config), state, int(extractor.get("sampling_rate", 16000)),
                      bool(extractor.get("do_normalize", False)), resolved, notes)
