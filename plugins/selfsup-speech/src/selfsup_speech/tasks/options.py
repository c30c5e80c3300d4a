"""Options of the speech pretext tasks (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from selfsup.options import Options, RecipePath


class _SpanMasking(Options):
    mask_prob: float = Field(0.65, gt=0, lt=1, description="Span starts drawn per utterance = mask_prob * frames / "
                                                           "mask_length (spans may overlap).")
    mask_length: int = Field(10, ge=1, description="Frames per masked span.")
    min_masks: int = Field(2, ge=0, description="At least this many spans per utterance.")
    feature_grad_mult: float = Field(0.1, gt=0, le=1, description="Gradient scale into the conv feature encoder "
                                                                  "(fairseq feature_grad_mult).")
    feature_penalty_weight: float = Field(10.0, ge=0,
                                          description="Weight of the L2 penalty on the conv latents (mean of squares).")


class Wav2Vec2Options(_SpanMasking):
    """Baevski et al. 2020: contrastive prediction of Gumbel-quantized latents at masked spans."""

    codebook_groups: int = Field(2, ge=1, le=16,
                                 description="G codebooks; a code vector concatenates one entry of each.")
    codebook_entries: int = Field(320, ge=2, description="V entries per codebook.")
    codevector_dim: int = Field(256, gt=0,
                                description="Size of a quantized vector (must be divisible by codebook_groups).")
    final_dim: int = Field(256, gt=0, description="Space in which context and quantized vectors are compared.")
    num_distractors: int = Field(100, ge=1, description="K distractors per masked frame, drawn from the utterance's "
                                                        "other masked frames.")
    logit_temperature: float = Field(0.1, gt=0, description="kappa: cosine similarities are divided by it.")
    max_temperature: float = Field(2.0, gt=0, description="Gumbel-softmax temperature at step 0.")
    min_temperature: float = Field(0.5, gt=0, description="Lowest Gumbel-softmax temperature.")
    temperature_decay: float = Field(0.999995, gt=0, le=1,
                                     description="Temperature = max(max_temperature * decay^step, min_temperature).")
    diversity_weight: float = Field(0.1, ge=0, description="alpha: weight of the codebook diversity loss.")

    @model_validator(mode="after")
    def _check(self) -> "Wav2Vec2Options":
        if self.codevector_dim % self.codebook_groups:
            raise ValueError(f"codebook_groups = {self.codebook_groups} must divide codevector_dim = "
                             f"{self.codevector_dim}")
        if self.min_temperature > self.max_temperature:
            raise ValueError("min_temperature must not exceed max_temperature")
        return self


class HuBERTCheckpointTargets(Options):
    """Iteration 2+: cluster the features of one layer of an earlier model: a run or export
    (``checkpoint``), or, without ``checkpoint``, the task's own pretrained backbone before training
    (continuing HuBERT pre-training from ``torchaudio:HUBERT_BASE`` or ``hf:facebook/hubert-base-ls960``)."""

    checkpoint: RecipePath | None = Field(
        None, description="A selfsup run directory (its newest checkpoint is loaded) or a wav2vec2_encoder export "
                          "directory (config.json + model.pt), relative to the recipe. Omitted: the task's own "
                          "backbone as its pretrained option loaded it (targets are computed before the first step).")
    layer: int = Field(ge=0, description="0: the transformer's input (projected conv features); n: output of "
                                         "transformer layer n.")
    backbone: str | None = Field(None, description="Run directory with several backbones: which one.")


class HuBERTOptions(_SpanMasking):
    """Hsu et al. 2021: masked prediction of k-means cluster ids of MFCCs (iteration 1) or of an
    earlier model's features (iteration 2)."""

    targets: Literal["mfcc"] | HuBERTCheckpointTargets = Field(
        "mfcc", description='"mfcc", or {checkpoint = <run or export dir>, layer = n} for iteration 2; {layer = n} '
                            'alone: layer n of the task\'s own pretrained backbone.')
    clusters: int = Field(100, ge=2, le=10000, description="k of the k-means whose ids are the targets.")
    kmeans_iters: int = Field(30, ge=1, description="Lloyd iterations.")
    kmeans_max_frames: int = Field(100_000, ge=100, description="k-means is fitted on at most this many frames (seeded "
                                                                "draw); all are assigned.")
    standardize: bool = Field(True, description="Standardise every feature dimension (over all frames) before k-means.")
    n_mfcc: int = Field(13, ge=4, le=40,
                        description="MFCC coefficients (with deltas and delta-deltas: 3x as many features).")
    feature_batch_size: int = Field(32, ge=1, description="Batch size when computing target features.")
    unmasked_weight: float = Field(0.0, ge=0, description="Weight of the loss on unmasked frames (the paper's alpha is "
                                                          "1 on masked, 0 here).")
    head: Literal["cosine", "linear"] = Field(
        "cosine", description="cosine: similarity of projected frames with learned code embeddings / temperature "
                              "(paper); linear: a linear layer.")
    final_dim: int = Field(256, gt=0, description="Projection size (and code embedding size) for the cosine head.")
    logit_temperature: float = Field(0.1, gt=0, description="Temperature of the cosine head.")
    mask_prob: float = Field(0.8, gt=0, lt=1,
                             description="Span starts per utterance = mask_prob * frames / mask_length (paper: 0.8).")


class APCOptions(Options):
    """Chung et al. 2019: predict the log-mel frame ``shift`` steps ahead with L1 loss."""

    shift: int = Field(3, ge=1, le=100, description="n: predict frame t + n from frames <= t.")
