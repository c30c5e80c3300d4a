"""Options of the speech backbones, pretext tasks and evaluators (pydantic only: importing this
never imports torch)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from selfsup.options import Options, RecipePath

ConvLayer = tuple[int, int, int]

#: 5 conv layers, total stride 5*4*4*2*2 = 320 samples = 20 ms at 16 kHz (receptive field 825
#: samples, 52 ms): wav2vec 2.0's frame rate with a lighter stack than its 7 x 512 channels.
DEFAULT_CONV_LAYERS: list[ConvLayer] = [(128, 10, 5), (128, 8, 4), (128, 4, 4), (128, 4, 2), (128, 4, 2)]


# ----------------------------------------------------------------------------------- backbones


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
    layer_norm_first: bool = Field(True, description="Pre-LN transformer layers (wav2vec 2.0 Large); False: post-LN (Base).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout in the transformer (residual paths).")
    attention_dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on attention weights.")
    ffn_dropout: float = Field(0.0, ge=0, lt=1, description="Dropout inside the feed-forward block.")
    projection_dropout: float = Field(0.1, ge=0, lt=1, description="Dropout after the feature projection (fairseq dropout_input).")
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


class LogMelEncoderOptions(Options):
    """Log-mel filterbank frames (torchaudio MelSpectrogram) followed by a unidirectional LSTM
    (APC's encoder) or a causal transformer; ``causal = false`` makes either bidirectional."""

    sample_rate: int = Field(16000, ge=1000, le=192000, description="Sample rate of the input audio.")
    n_mels: int = Field(40, ge=8, le=256, description="Mel bands (frame features).")
    win_ms: float = Field(25.0, gt=0, le=200, description="Analysis window in milliseconds.")
    hop_ms: float = Field(10.0, gt=0, le=100, description="Frame shift in milliseconds (frame_rate = 1000 / hop_ms).")
    normalize: Literal["utterance", "none"] = Field(
        "utterance", description="utterance: every mel band standardised over the utterance's valid frames; none: raw log-mel.")
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
        if self.hop_ms > self.win_ms:
            raise ValueError(f"hop_ms = {self.hop_ms} exceeds win_ms = {self.win_ms}: frames would skip audio")
        if self.kind == "transformer" and self.hidden_dim % self.heads:
            raise ValueError(f"heads = {self.heads} must divide hidden_dim = {self.hidden_dim}")
        return self


# ----------------------------------------------------------------------------------- tasks


class _SpanMasking(Options):
    mask_prob: float = Field(0.65, gt=0, lt=1, description="Span starts drawn per utterance = mask_prob * frames / mask_length (spans may overlap).")
    mask_length: int = Field(10, ge=1, description="Frames per masked span.")
    min_masks: int = Field(2, ge=0, description="At least this many spans per utterance.")
    feature_grad_mult: float = Field(0.1, gt=0, le=1, description="Gradient scale into the conv feature encoder (fairseq feature_grad_mult).")
    feature_penalty_weight: float = Field(10.0, ge=0, description="Weight of the L2 penalty on the conv latents (mean of squares).")


class Wav2Vec2Options(_SpanMasking):
    """Baevski et al. 2020: contrastive prediction of Gumbel-quantized latents at masked spans."""

    codebook_groups: int = Field(2, ge=1, le=16, description="G codebooks; a code vector concatenates one entry of each.")
    codebook_entries: int = Field(320, ge=2, description="V entries per codebook.")
    codevector_dim: int = Field(256, gt=0, description="Size of a quantized vector (must be divisible by codebook_groups).")
    final_dim: int = Field(256, gt=0, description="Space in which context and quantized vectors are compared.")
    num_distractors: int = Field(100, ge=1, description="K distractors per masked frame, drawn from the utterance's other masked frames.")
    logit_temperature: float = Field(0.1, gt=0, description="kappa: cosine similarities are divided by it.")
    max_temperature: float = Field(2.0, gt=0, description="Gumbel-softmax temperature at step 0.")
    min_temperature: float = Field(0.5, gt=0, description="Lowest Gumbel-softmax temperature.")
    temperature_decay: float = Field(0.999995, gt=0, le=1, description="Temperature = max(max_temperature * decay^step, min_temperature).")
    diversity_weight: float = Field(0.1, ge=0, description="alpha: weight of the codebook diversity loss.")

    @model_validator(mode="after")
    def _check(self) -> "Wav2Vec2Options":
        if self.codevector_dim % self.codebook_groups:
            raise ValueError(f"codebook_groups = {self.codebook_groups} must divide codevector_dim = {self.codevector_dim}")
        if self.min_temperature > self.max_temperature:
            raise ValueError("min_temperature must not exceed max_temperature")
        return self


class HuBERTCheckpointTargets(Options):
    """Iteration 2+: cluster the features of one layer of an earlier model."""

    checkpoint: RecipePath = Field(
        description="A selfsup run directory (its newest checkpoint is loaded) or a wav2vec2_encoder export directory "
                    "(config.json + model.pt), relative to the recipe.")
    layer: int = Field(ge=0, description="0: the transformer's input (projected conv features); n: output of transformer layer n.")
    backbone: str | None = Field(None, description="Run directory with several backbones: which one.")


class HuBERTOptions(_SpanMasking):
    """Hsu et al. 2021: masked prediction of k-means cluster ids of MFCCs (iteration 1) or of an
    earlier model's features (iteration 2)."""

    targets: Literal["mfcc"] | HuBERTCheckpointTargets = Field(
        "mfcc", description='"mfcc", or {checkpoint = <run or export dir>, layer = n} for iteration 2.')
    clusters: int = Field(100, ge=2, le=10000, description="k of the k-means whose ids are the targets.")
    kmeans_iters: int = Field(30, ge=1, description="Lloyd iterations.")
    kmeans_max_frames: int = Field(100_000, ge=100, description="k-means is fitted on at most this many frames (seeded draw); all are assigned.")
    standardize: bool = Field(True, description="Standardise every feature dimension (over all frames) before k-means.")
    n_mfcc: int = Field(13, ge=4, le=40, description="MFCC coefficients (with deltas and delta-deltas: 3x as many features).")
    feature_batch_size: int = Field(32, ge=1, description="Batch size when computing target features.")
    unmasked_weight: float = Field(0.0, ge=0, description="Weight of the loss on unmasked frames (the paper's alpha is 1 on masked, 0 here).")
    head: Literal["cosine", "linear"] = Field(
        "cosine", description="cosine: similarity of projected frames with learned code embeddings / temperature (paper); linear: a linear layer.")
    final_dim: int = Field(256, gt=0, description="Projection size (and code embedding size) for the cosine head.")
    logit_temperature: float = Field(0.1, gt=0, description="Temperature of the cosine head.")
    mask_prob: float = Field(0.8, gt=0, lt=1, description="Span starts per utterance = mask_prob * frames / mask_length (paper: 0.8).")


class APCOptions(Options):
    """Chung et al. 2019: predict the log-mel frame ``shift`` steps ahead with L1 loss."""

    shift: int = Field(3, ge=1, le=100, description="n: predict frame t + n from frames <= t.")


# ----------------------------------------------------------------------------------- evaluators


class SpeechProbeOptions(Options):
    """A linear classifier on frozen features, scored on held-out data, with an MFCC baseline.

    ``target = "label"``: keyword classification; fitted on ``fit_data`` (training voices), scored
    on ``data`` (held-out voices), so it measures generalisation to unseen speakers.
    ``target = "speaker"``: voice identification. A classifier can only name voices it was
    fitted on, so either ``fit_data`` and ``data`` hold the same voices (utterance split), or
    ``split_within = true``: the utterances of ``data`` are divided (seeded, per voice) into a fit
    part and a scored part, and ``fit_data`` is not needed."""

    needs_fit_data: ClassVar[bool] = False  # depends on split_within: checked on the evaluator object

    target: Literal["label", "speaker"] = Field("label", description="Predict the keyword (label) or the voice (speaker).")
    layer_weighted: bool = Field(
        False, description="SUPERB-style: a learned softmax-weighted sum of every layer's mean-pooled states, trained with the probe.")
    mfcc_baseline: bool = Field(True, description="Also report mfcc_accuracy: the same probe on mean+std pooled MFCCs.")
    split_within: bool = Field(False, description="Fit and score on disjoint utterances of data (split per voice); fit_data unused.")
    within_fit_fraction: float = Field(0.5, gt=0, lt=1, description="split_within: share of every voice's utterances used for fitting.")
    standardize: bool = Field(True, description="Standardise features with the fit set's mean and std.")
    weight_decay: float = Field(1e-4, ge=0, description="L2 penalty on the classifier weights.")
    max_iter: int = Field(200, ge=1, description="L-BFGS iterations (plain probe).")
    steps: int = Field(300, ge=1, description="Full-batch Adam steps (layer-weighted probe).")
    lr: float = Field(1e-2, gt=0, description="Adam learning rate (layer-weighted probe).")
    n_mfcc: int = Field(13, ge=4, le=40, description="MFCC coefficients of the baseline (plus deltas and delta-deltas).")
    fit_limit: int | None = Field(
        None, ge=1, description="Fit on at most this many utterances (a seeded draw spread evenly over the classes); "
                                "None: all of them. Bounds the evaluation's cost on large fit sets.")
    noise_snr_db: tuple[float, float] | None = Field(
        None, description="A harder condition: add noise at an SNR drawn uniformly from this (low, high) dB range to "
                          "every probe utterance, fitted and scored, for the backbone and the MFCC baseline alike "
                          "(seeded per utterance, the same at every evaluation). None: clean audio.")
    noise_color: Literal["white", "pink"] = Field("white", description="Spectrum of the noise_snr_db noise.")
    seed: int = Field(0, ge=0, description="Seeds the split_within division, the fit_limit draw and the noise.")

    @field_validator("noise_snr_db")
    @classmethod
    def _snr(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not (-30 <= v[0] <= v[1] <= 100):
            raise ValueError(f"noise_snr_db must be (low, high) dB with -30 <= low <= high <= 100, got {v}")
        return v
