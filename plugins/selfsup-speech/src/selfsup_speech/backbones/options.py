"""Options of the speech backbones (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from selfsup.options import Options

ConvLayer = tuple[int, int, int]

#: 5 conv layers, total stride 5*4*4*2*2 = 320 samples = 20 ms at 16 kHz (receptive field 825
#: samples, 52 ms): wav2vec 2.0's frame rate with a lighter stack than its 7 x 512 channels.
DEFAULT_CONV_LAYERS: list[ConvLayer] = [(128, 10, 5), (128, 8, 4), (128, 4, 4), (128, 4, 2), (128, 4, 2)]


class Wav2Vec2EncoderOptions(Options):
    """wav2vec 2.0's architecture from torchaudio components: a conv feature encoder on the
    waveform, then a transformer with a convolutional positional embedding (sizes configurable;
    the defaults are a small model for 1-second keywords at 16 kHz)."""

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
        return self


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


class LogMelEncoderOptions(LogMelFrontendOptions):
    """Log-mel filterbank frames (torchaudio MelSpectrogram) followed by a unidirectional LSTM
    (APC's encoder) or a causal transformer; ``causal = false`` makes either bidirectional."""

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
