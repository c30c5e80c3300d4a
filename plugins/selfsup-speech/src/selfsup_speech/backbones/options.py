"""Options of the speech backbones (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from selfsup.options import Options, PretrainedOptions

ConvLayer = tuple[int, int, int]

#: 5 conv layers, total stride 5*4*4*2*2 = 320 samples = 20 ms at 16 kHz (receptive field 825
#: samples, 52 ms): wav2vec 2.0's frame rate with a lighter stack than its 7 x 512 channels.
DEFAULT_CONV_LAYERS: list[ConvLayer] = [(128, 10, 5), (128, 8, 4), (128, 4, 4), (128, 4, 2), (128, 4, 2)]


#: Set by a pretrained checkpoint (torchaudio bundle, transformers config, selfsup export): giving
#: them with ``pretrained`` is an error. Dropouts, ``layer_drop`` and ``normalize_waveform`` may be set.
WAV2VEC2_ARCHITECTURE = ("conv_layers", "extractor_mode", "conv_bias", "embed_dim", "layers", "heads", "ffn_dim",
                         "pos_conv_kernel", "pos_conv_groups", "layer_norm_first")
WAV2VEC2_DROPOUTS = ("dropout", "attention_dropout", "ffn_dropout", "projection_dropout", "layer_drop")


class Wav2Vec2EncoderOptions(PretrainedOptions):
    """wav2vec 2.0's architecture from torchaudio components: a conv feature encoder on the
    waveform, then a transformer with a convolutional positional embedding (sizes configurable;
    the defaults are a small model for 1-second keywords at 16 kHz).

    ``pretrained``: ``torchaudio:BUNDLE`` (``WAV2VEC2_BASE``, ``HUBERT_BASE``, ``WAV2VEC2_LARGE_LV60K``,
    ...; an ASR bundle's CTC head is dropped), ``hf:org/name`` (a transformers ``Wav2Vec2Model`` /
    ``HubertModel`` checkpoint, or their ``ForPreTraining``/``ForCTC``: heads dropped; or a repository
    holding a selfsup export), a local folder (``selfsup export --format torchaudio`` or ``--format
    selfsup``, or a transformers ``save_pretrained`` folder) or a state-dict file. The architecture
    then comes from the checkpoint (a state-dict file: from these options)."""

    sample_rate: int = Field(16000, ge=1000, le=192000, description="Sample rate of the input audio (sets frame_rate).")
    conv_layers: list[ConvLayer] = Field(
        default_factory=lambda: list(DEFAULT_CONV_LAYERS),
        description="Feature encoder: [out_channels, kernel, stride] per conv layer (fairseq's conv_feature_layers).")
    extractor_mode: Literal["layer_norm", "group_norm"] = Field(
        "layer_norm", description="layer_norm: a LayerNorm after every conv (frames do not depend on padding); "
                                  "group_norm: wav2vec 2.0 Base's GroupNorm over time in the first conv only.")
    conv_bias: bool = Field(True, description="Bias terms in the conv layers.")
    embed_dim: int = Field(128, gt=0, description="Transformer width.")
    layers: int = Field(4, ge=1, le=48, description="Transformer layers.")
    heads: int = Field(4, ge=1, description="Attention heads (must divide embed_dim).")
    ffn_dim: int = Field(512, gt=0, description="Feed-forward hidden size.")
    pos_conv_kernel: int = Field(16, ge=2, description="Kernel (frames) of the convolutional positional embedding.")
    pos_conv_groups: int = Field(8, ge=1, description="Groups of the positional conv (must divide embed_dim).")
    layer_norm_first: bool = Field(True,
                                   description="Pre-LN transformer layers (wav2vec 2.0 Large); False: post-LN (Base).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout in the transformer (residual paths).")
    attention_dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on attention weights.")
    ffn_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout inside the feed-forward block.")
    projection_dropout: float = Field(0.1, ge=0, lt=1,
                                      description="Dropout after the feature projection (fairseq dropout_input).")
    layer_drop: float = Field(0.0, ge=0, lt=1, description="LayerDrop probability per transformer layer in training.")
    normalize_waveform: bool | None = Field(
        None, description="Standardise each clip over its valid samples (a layer norm without weights, as torchaudio's "
                          "pipelines do for the Large/XLSR bundles). Default: the pretrained checkpoint's "
                          "(torchaudio bundle, transformers feature extractor's do_normalize), else false.")

    @field_validator("conv_layers")
    @classmethod
    def _conv(cls, v: list[ConvLayer]) -> list[ConvLayer]:
        if not v:
            raise ValueError("conv_layers must hold at least one [out_channels, kernel, stride]")
        for layer in v:
            if any(int(x) <= 0 for x in layer):
                raise ValueError(f"conv layer {list(layer)}: channels, kernel and stride must be positive")
        return v

    @model_validator(mode="after")
    def _divisible(self) -> "Wav2Vec2EncoderOptions":
        if self.embed_dim % self.heads:
            raise ValueError(f"heads = {self.heads} must divide embed_dim = {self.embed_dim}")
        if self.embed_dim % self.pos_conv_groups:
            raise ValueError(f"pos_conv_groups = {self.pos_conv_groups} must divide embed_dim = {self.embed_dim}")
        given = [f for f in WAV2VEC2_ARCHITECTURE if f in self.model_fields_set]
        if self.pretrained is not None and given and not _state_dict_file(self.pretrained):
            raise ValueError(f"pretrained = {self.pretrained!r} sets the architecture from the checkpoint; remove "
                             f"{', '.join(given)} (dropouts, layer_drop and normalize_waveform may be set; a "
                             f"state-dict file takes its architecture from these options)")
        return self


def _state_dict_file(pretrained: str) -> bool:
    """True when ``pretrained`` (validated) is a local file: a bare state dict, which has no architecture."""
    from pathlib import Path

    from selfsup.lib.pretrained import parse_pretrained  # syntax only: imports no torch

    spec = parse_pretrained(pretrained)
    return spec.kind == "path" and Path(spec.name).is_file()


class LogMelFrontendOptions(Options):
    """Log-mel filterbank frames of each clip (torchaudio MelSpectrogram, centred frames), computed
    on its valid samples only; no weights."""

    sample_rate: int = Field(16000, ge=1000, le=192000, description="Sample rate of the input audio.")
    n_mels: int = Field(40, ge=8, le=256, description="Mel bands (frame features).")
    win_ms: float = Field(25.0, gt=0, le=200, description="Analysis window in milliseconds.")
    hop_ms: float = Field(10.0, gt=0, le=100, description="Frame shift in milliseconds (frame_rate = 1000 / hop_ms).")
    normalize: Literal["utterance", "none"] = Field(
        "utterance",
        description="utterance: every mel band standardised over the utterance's valid frames; none: raw log-mel.")

    @model_validator(mode="after")
    def _frames(self) -> "LogMelFrontendOptions":
        if self.hop_ms > self.win_ms:
            raise ValueError(f"hop_ms = {self.hop_ms} exceeds win_ms = {self.win_ms}: frames would skip audio")
        return self


class LogMelEncoderOptions(LogMelFrontendOptions, PretrainedOptions):
    """Log-mel filterbank frames (torchaudio MelSpectrogram) followed by a unidirectional LSTM
    (APC's encoder) or a causal transformer; ``causal = false`` makes either bidirectional.

    ``pretrained``: a ``logmel_encoder`` state-dict file, a ``selfsup export --format selfsup`` folder,
    or an ``hf:org/name`` repository holding either; the architecture is these options'."""

    kind: Literal["lstm", "transformer"] = Field("lstm", description="Sequence model on top of the frames.")
    causal: bool = Field(True, description="Unidirectional (each frame sees only the past), as APC needs.")
    hidden_dim: int = Field(256, gt=0, description="LSTM hidden size / transformer width.")
    layers: int = Field(3, ge=1, le=24, description="LSTM or transformer layers.")
    heads: int = Field(4, ge=1, description="Transformer attention heads (must divide hidden_dim).")
    ffn_dim: int = Field(512, gt=0, description="Transformer feed-forward hidden size.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout between layers.")
    residual: bool = Field(True, description="LSTM: residual connections between layers of equal width (APC).")

    @model_validator(mode="after")
    def _shape(self) -> "LogMelEncoderOptions":
        if self.kind == "transformer" and self.hidden_dim % self.heads:
            raise ValueError(f"heads = {self.heads} must divide hidden_dim = {self.hidden_dim}")
        return self
