"""``wav2vec2_encoder``: wav2vec 2.0's network, built with torchaudio.

Baevski, Zhou, Mohamed, Auli, wav2vec 2.0: A Framework for Self-Supervised Learning of Speech
Representations, NeurIPS 2020. The conv feature encoder maps the waveform to latents ``z``
(one per ``stride`` samples), a feature projection (LayerNorm + Linear) and a transformer with a
convolutional positional embedding give contextual frames ``c``. The module is a torchaudio
``Wav2Vec2Model`` (``torchaudio.models.wav2vec2_model``) plus the learned mask embedding that the
masked pretext tasks (wav2vec 2.0, HuBERT) put in place of masked frames; ``export`` writes the
``Wav2Vec2Model`` alone, loadable with torchaudio and no selfsup.

It implements :class:`selfsup.components.LayerwiseMaskedEncoder` (span masking, the mask embedding,
every layer's output), so the core's ``data2vec`` task trains it.

Padding: the transformer ignores padded frames (attention mask, as torchaudio does with
``lengths``); with ``extractor_mode = "layer_norm"`` (the default) valid frames do not depend on
how much padding follows, so a clip embeds the same alone or in a batch. wav2vec 2.0 Base's
``group_norm`` normalises the first conv layer over all time steps, padding included.

Pretrained weights (``pretrained``: torchaudio bundles, transformers wav2vec 2.0 / HuBERT
checkpoints, selfsup exports; :mod:`selfsup_speech.backbones.wav2vec2_pretrained`) set the
architecture; with ``normalize_waveform`` (set from the checkpoint: torchaudio's Large/XLSR bundles,
a transformers feature extractor's ``do_normalize``) each clip is standardised over its valid
samples before the conv encoder, as torchaudio's pipelines do (a layer norm without weights).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn
from torchaudio.models import Wav2Vec2Model, wav2vec2_model

from selfsup.components import BuildContext
from selfsup_speech.backbones.common import FrameEncoderMixin, audio_and_lengths, lengths_to_padding_mask
from selfsup_speech.backbones.options import WAV2VEC2_DROPOUTS, Wav2Vec2EncoderOptions

CONFIG_FILE = "config.json"  # torchaudio.models.wav2vec2_model(**config)
WEIGHTS_FILE = "model.pt"  # Wav2Vec2Model.state_dict(), torch.save
SELFSUP_FILE = "selfsup.json"  # sample rate and frame rate, and the backbone options


def torchaudio_config(o: Wav2Vec2EncoderOptions) -> dict[str, Any]:
    """The keyword arguments of ``torchaudio.models.wav2vec2_model`` for these options."""
    return {
        "extractor_mode": o.extractor_mode,
        "extractor_conv_layer_config": [list(map(int, layer)) for layer in o.conv_layers],
        "extractor_conv_bias": o.conv_bias,
        "encoder_embed_dim": o.embed_dim,
        "encoder_projection_dropout": o.projection_dropout,
        "encoder_pos_conv_kernel": o.pos_conv_kernel,
        "encoder_pos_conv_groups": o.pos_conv_groups,
        "encoder_num_layers": o.layers,
        "encoder_num_heads": o.heads,
        "encoder_attention_dropout": o.attention_dropout,
        "encoder_ff_interm_features": o.ffn_dim,
        "encoder_ff_interm_dropout": o.ffn_dropout,
        "encoder_dropout": o.dropout,
        "encoder_layer_norm_first": o.layer_norm_first,
        "encoder_layer_drop": o.layer_drop,
        "aux_num_out": None,
    }


def options_from_config(config: Mapping[str, Any], sample_rate: int = 16000,
                        normalize_waveform: bool | None = None) -> Wav2Vec2EncoderOptions:
    """Inverse of :func:`torchaudio_config` (for loading an export or a pretrained checkpoint)."""
    if config.get("aux_num_out") is not None:
        raise ValueError("this Wav2Vec2Model has a fine-tuning head (aux_num_out); export the encoder alone")
    return Wav2Vec2EncoderOptions(
        sample_rate=sample_rate, normalize_waveform=normalize_waveform,
        conv_layers=[tuple(x) for x in config["extractor_conv_layer_config"]],
        extractor_mode=config["extractor_mode"], conv_bias=config["extractor_conv_bias"],
        embed_dim=config["encoder_embed_dim"], layers=config["encoder_num_layers"], heads=config["encoder_num_heads"],
        ffn_dim=config["encoder_ff_interm_features"], pos_conv_kernel=config["encoder_pos_conv_kernel"],
        pos_conv_groups=config["encoder_pos_conv_groups"], layer_norm_first=config["encoder_layer_norm_first"],
        dropout=config["encoder_dropout"], attention_dropout=config["encoder_attention_dropout"],
        ffn_dropout=config["encoder_ff_interm_dropout"], projection_dropout=config["encoder_projection_dropout"],
        layer_drop=config["encoder_layer_drop"],
    )


def normalize_waveforms(audio: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each clip of ``audio [B, T]`` standardised over its ``lengths [B]`` valid samples (zero mean, unit
    variance, ``eps`` as torchaudio's ``layer_norm``); padding stays zero. ``[B, T]``."""
    valid = ~lengths_to_padding_mask(lengths, audio.shape[1])  # [B, T]
    count = valid.sum(1, keepdim=True).clamp_min(1)  # [B, 1]
    mean = (audio * valid).sum(1, keepdim=True) / count
    var = ((audio - mean).pow(2) * valid).sum(1, keepdim=True) / count
    return (audio - mean) / torch.sqrt(var + eps) * valid


class Wav2Vec2Encoder(FrameEncoderMixin, nn.Module):
    """A torchaudio ``Wav2Vec2Model`` (``self.model``) with a mask embedding; see the package
    docstring of :mod:`selfsup_speech.backbones` for the interface."""

    def __init__(self, options: Wav2Vec2EncoderOptions):
        super().__init__()
        self.options = options
        self.config = torchaudio_config(options)
        self.model: Wav2Vec2Model = wav2vec2_model(**self.config)
        self.output_dim = int(options.embed_dim)
        self.latent_dim = int(options.conv_layers[-1][0])
        self.mask_embedding = nn.Parameter(torch.empty(options.embed_dim).uniform_())  # [D], as fairseq
        self.stride = 1  # samples per frame
        receptive = 1
        for _, kernel, stride in options.conv_layers:
            receptive += (int(kernel) - 1) * self.stride
            self.stride *= int(stride)
        self.receptive_field = receptive  # samples seen by one frame
        self.sample_rate = int(options.sample_rate)
        self.normalize_waveform = bool(options.normalize_waveform)
        self.frame_rate = self.sample_rate / self.stride
        self.frame_offset = (receptive - 1) / 2 / self.sample_rate

    # ------------------------------------------------------------------ frames

    def num_frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """``[B]`` sample counts -> ``[B]`` valid frames (at least 1: clips shorter than the
        receptive field are zero-padded to one frame)."""
        n = torch.as_tensor(lengths).long().clone()
        for _, kernel, stride in self.options.conv_layers:
            n = torch.div(n - int(kernel), int(stride), rounding_mode="floor") + 1
        return n.clamp_min(1)

    def latents(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Conv features ``z [B, F, C]`` and the frame padding mask ``[B, F]`` (True = padding)."""
        audio, lengths = audio_and_lengths(batch)  # [B, T], [B]
        if self.normalize_waveform:
            audio = normalize_waveforms(audio, lengths)
        if audio.shape[1] < self.receptive_field:
            audio = nn.functional.pad(audio, (0, self.receptive_field - audio.shape[1]))
        z, _ = self.model.feature_extractor(audio, None)  # [B, F, C]
        valid = self.num_frames(lengths).clamp_max(z.shape[1])  # [B]
        return z, lengths_to_padding_mask(valid, z.shape[1])

    def contextualize(
        self, z: torch.Tensor, padding_mask: torch.Tensor, mask: torch.Tensor | None = None, all_layers: bool = False
    ) -> torch.Tensor | list[torch.Tensor]:
        """Feature projection, masking, transformer: ``z [B, F, C]`` -> ``[B, F, D]`` (or every
        layer's states: the transformer input, then each layer's output). Frames where ``mask
        [B, F]`` is True take the mask embedding (after the projection, as in wav2vec 2.0)."""
        encoder = self.model.encoder
        x = encoder.feature_projection(z)  # [B, F, D]
        if mask is not None:
            x = torch.where(mask.unsqueeze(-1), self.mask_embedding.to(x.dtype), x)
        x = x.masked_fill(padding_mask.unsqueeze(-1), 0.0)  # as torchaudio's Encoder._preprocess
        b, f = padding_mask.shape
        attention = (-10000.0 * padding_mask[:, None, None, :].to(x.dtype)).expand(b, 1, f, f)  # [B, 1, F, F]
        transformer = encoder.transformer
        if not all_layers:
            return transformer(x, attention_mask=attention)
        states = [x]
        h = transformer._preprocess(x)
        position_bias = None
        for layer in transformer.layers:
            h, position_bias = layer(h, attention, position_bias=position_bias)
            states.append(h)
        return states

    # ------------------------------------------------------------------ masked prediction (data2vec)

    def masked_positions(self, batch: Mapping[str, Any], generator: torch.Generator, *, ratio: float | None = None,
                         span: int | None = None) -> torch.Tensor:
        """``[B, F]`` bool over the frames: wav2vec 2.0 span masking (:func:`selfsup_speech.tasks.masking.
        compute_span_mask`, ``mask_prob = ratio``, default 0.65, spans of ``span`` frames, default 10, as
        data2vec), at least one span per clip, never on padding. For the core's ``data2vec``
        (:class:`selfsup.components.LayerwiseMaskedEncoder`)."""
        from selfsup_speech.tasks.masking import compute_span_mask

        padding = self.padding_mask(batch)  # [B, F]
        return compute_span_mask(tuple(padding.shape), 0.65 if ratio is None else ratio, 10 if span is None else span,
                                 generator, padding.cpu(), min_masks=1)

    def encode_layers(self, batch: Mapping[str, Any],
                      mask: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each transformer layer's output ``[B, F, D]`` and the frame padding mask ``[B, F]``; frames where
        ``mask [B, F]`` is True take the mask embedding (``contextualize``)."""
        z, padding = self.latents(batch)  # [B, F, C], [B, F]
        states = self.contextualize(z, padding, None if mask is None else mask.to(z.device), all_layers=True)
        return states[1:], padding  # states[0] is the transformer's input

    def padding_mask(self, batch: Mapping[str, Any]) -> torch.Tensor:
        """Frame padding mask ``[B, F]`` of a batch (without running the network)."""
        audio, lengths = audio_and_lengths(batch)
        frames = int(self.num_frames(torch.tensor([max(audio.shape[1], self.receptive_field)]))[0])
        return lengths_to_padding_mask(self.num_frames(lengths).clamp_max(frames), frames)

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.embed(batch)

    # ------------------------------------------------------------------ export

    def export_formats(self) -> dict[str, Any]:
        """``selfsup export --format torchaudio``: the ``Wav2Vec2Model`` for ``torchaudio.models.wav2vec2_model``."""
        return {"torchaudio": self.export}

    def export(self, directory: Path) -> None:
        """``config.json`` (``torchaudio.models.wav2vec2_model(**config)``), ``model.pt`` (its
        state dict; the mask embedding, a pre-training device, is left out) and ``selfsup.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_FILE).write_text(json.dumps(self.config, indent=2))
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        torch.save(state, directory / WEIGHTS_FILE)
        (directory / SELFSUP_FILE).write_text(json.dumps({
            "backbone": "wav2vec2_encoder", "sample_rate": self.sample_rate, "frame_rate": self.frame_rate,
            "options": self.options.model_dump(mode="json"),
        }, indent=2))
        (directory / "README.md").write_text(
            "# wav2vec2_encoder export\n\nA torchaudio `Wav2Vec2Model` (no selfsup needed):\n\n"
            "```python\nimport json, torch, torchaudio\n"
            "model = torchaudio.models.wav2vec2_model(**json.load(open('config.json')))\n"
            "model.load_state_dict(torch.load('model.pt', weights_only=True))\n"
            "features, lengths = model(waveforms, lengths)  # waveforms [B, T] at "
            f"{self.sample_rate} Hz -> [B, frames, {self.output_dim}] at {self.frame_rate:g} frames/s\n"
            "layers, lengths = model.extract_features(waveforms, lengths)\n```\n"
            + ("\nThis model standardises each clip first (normalize_waveform): `waveforms = "
               "torch.nn.functional.layer_norm(waveforms, waveforms.shape)` per clip, before the model.\n"
               if self.normalize_waveform else "")
        )


def load_export(directory: Path) -> Wav2Vec2Encoder:
    """A :class:`Wav2Vec2Encoder` holding the weights of an export directory (the mask embedding
    is freshly initialised: exports do not keep it)."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"{directory} is not a wav2vec2_encoder export "
                                f"(needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    info = json.loads((directory / SELFSUP_FILE).read_text()) if (directory / SELFSUP_FILE).is_file() else {}
    normalize = (info.get("options") or {}).get("normalize_waveform")
    encoder = Wav2Vec2Encoder(options_from_config(json.loads(config_path.read_text()),
                                                  int(info.get("sample_rate", 16000)), normalize))
    encoder.model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    return encoder


def pretrained_options(options: Wav2Vec2EncoderOptions, params: Mapping[str, Any], sample_rate: int,
                       normalize_waveform: bool) -> Wav2Vec2EncoderOptions:
    """The options of a backbone started from a checkpoint: its architecture (``params``), sample
    rate and input normalisation, with the dropouts (and ``normalize_waveform``) the user set."""
    if "sample_rate" in options.model_fields_set and options.sample_rate != sample_rate:
        raise ValueError(f"sample_rate = {options.sample_rate}, but pretrained = {options.pretrained!r} was trained at "
                         f"{sample_rate} Hz: resample the data to {sample_rate} Hz and remove sample_rate")
    base = options_from_config(params, sample_rate).model_dump()
    base.update({f: getattr(options, f) for f in WAV2VEC2_DROPOUTS if f in options.model_fields_set})
    base["normalize_waveform"] = normalize_waveform if options.normalize_waveform is None \
        else options.normalize_waveform
    return Wav2Vec2EncoderOptions(**{k: v for k, v in base.items() if not k.startswith("pretrained")})


def build(options: Wav2Vec2EncoderOptions, context: BuildContext) -> Wav2Vec2Encoder:
    if options.pretrained is None:
        return Wav2Vec2Encoder(options)
    from selfsup.lib.pretrained import attach_record, load_state
    from selfsup_speech.backbones.wav2vec2_pretrained import read_checkpoint

    checkpoint = read_checkpoint(options, context.base_dir)
    encoder = Wav2Vec2Encoder(pretrained_options(options, checkpoint.params, checkpoint.sample_rate,
                                                 checkpoint.normalize_waveform))
    report = load_state(encoder, checkpoint.state, strict=options.pretrained_strict, optional=("mask_embedding",),
                        source=str(options.pretrained))
    report.notes.extend(checkpoint.notes)
    attach_record(encoder, checkpoint.resolved, report)
    return encoder
