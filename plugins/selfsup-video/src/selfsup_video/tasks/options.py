"""Options of the selfsup-video pretext tasks (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from pydantic import Field, model_validator

from selfsup.options import Options


class ShuffleAndLearnOptions(Options):
    """Frame-order verification of 3-frame tuples (Misra et al. 2016)."""

    hidden_dim: int = Field(128, ge=0, description="Hidden width of the classifier on the concatenated frame "
                                                   "features (0: linear).")
    both_directions: bool = Field(
        True, description="Positives run forward or backward in time (50/50): the question is whether the middle "
                          "frame lies between the other two, not which way time runs.")
    frame_norm: bool = Field(
        True, description="Standardise each frame feature over the batch (BatchNorm without affine weights, shared "
                          "by the frames) before the classifier: frames of one clip have nearly equal features, and "
                          "the raw differences are too small for the classifier to start learning from.")


class OrderPredictionOptions(Options):
    """Sorting 4 shuffled frames: 12 classes, the 24 orders up to reversal (Lee et al. 2017)."""

    pair_dim: int = Field(64, gt=0, description="Width of each pair's fused feature (fc7 in the paper).")
    hidden_dim: int = Field(0, ge=0, description="Hidden width of the classifier on the six pair features "
                                                 "(0: linear, as the paper's fc8).")
    frame_norm: bool = Field(
        True, description="Standardise each frame feature over the batch (BatchNorm without affine weights, shared "
                          "by the frames) before the classifier: frames of one clip have nearly equal features, and "
                          "the raw differences are too small for the classifier to start learning from.")


class ArrowOfTimeOptions(Options):
    """Forward or reversed clip, a binary classifier on the clip embedding (Wei et al. 2018)."""

    hidden_dim: int = Field(128, ge=0, description="Hidden width of the classifier (0: linear).")


class VideoMAEOptions(Options):
    """Tube masking and pixel reconstruction (Tong et al. 2022)."""

    mask_ratio: float = Field(0.9, gt=0, lt=1, description="Share of the spatial patch positions masked in every "
                                                           "frame (tube masking: the same positions over time).")
    norm_pix_loss: bool = Field(True, description="Targets: each tube's pixels normalised by their own mean and "
                                                  "variance.")
    decoder_dim: int = Field(64, gt=0, description="Decoder width (a multiple of 8: sine-cosine positions).")
    decoder_depth: int = Field(1, gt=0)
    decoder_heads: int = Field(2, gt=0)

    @model_validator(mode="after")
    def _decoder(self) -> VideoMAEOptions:
        if self.decoder_dim % 8:
            raise ValueError(f"decoder_dim must be a multiple of 8 (space-time positions), got {self.decoder_dim}")
        if self.decoder_dim % self.decoder_heads:
            raise ValueError(f"decoder_dim {self.decoder_dim} is not divisible by decoder_heads {self.decoder_heads}")
        return self


class CVRLOptions(Options):
    """InfoNCE between two clips of one video (Qian et al. 2021)."""

    temperature: float = Field(0.1, gt=0, description="Softmax temperature (0.1 in the paper).")
    projection_hidden_dim: int = Field(256, gt=0)
    projection_dim: int = Field(64, gt=0)
    projection_layers: int = Field(3, ge=1, description="Linear layers of the projection head (3 in the paper).")
    gather_distributed: bool = Field(True, description="Under DDP, negatives from every rank.")

