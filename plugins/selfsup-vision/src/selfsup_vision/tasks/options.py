"""Options of the selfsup-vision pretext tasks (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from selfsup.options import Options


class ProjectionOptions(Options):
    projection_hidden_dim: int = Field(512, gt=0)
    projection_dim: int = Field(128, gt=0)
    projection_layers: int = Field(2, ge=1)


class SimCLROptions(ProjectionOptions):
    temperature: float = Field(0.5, gt=0)
    gather_distributed: bool = Field(True, description="Negatives from every DDP rank (with gradients).")


class MAEOptions(Options):
    mask_ratio: float = Field(0.75, gt=0, lt=1)
    decoder_dim: int = Field(128, gt=0)
    decoder_depth: int = Field(2, ge=1)
    decoder_heads: int = Field(4, ge=1)
    decoder_pos_embed: Literal["sincos", "learned"] = Field("sincos", description="Fixed 2-D sine-cosine or learned.")
    norm_pix_loss: bool = Field(True, description="Per-patch normalised pixel targets.")

    @model_validator(mode="after")
    def _decoder_shape(self) -> "MAEOptions":
        if self.decoder_dim % self.decoder_heads:
            raise ValueError(f"decoder_dim {self.decoder_dim} is not divisible by decoder_heads {self.decoder_heads}")
        if self.decoder_pos_embed == "sincos" and self.decoder_dim % 4:
            raise ValueError("a sincos decoder position embedding needs decoder_dim divisible by 4")
        return self


class DeepClusterOptions(ProjectionOptions):
    clusters: int = Field(100, ge=2)
    kmeans_iters: int = Field(20, ge=1)
    pca_dim: int | None = Field(None, gt=0, description="Reduce features with PCA (+ whitening) before k-means.")
    balanced: bool = Field(True, description="Sample images uniformly over clusters.")
    feature_batch_size: int = Field(256, gt=0)
    recluster_every: int = Field(
        1, ge=1, description="Cluster before every N-th epoch (small data sets: one pass is too few steps to fit a new "
                             "classifier)."
    )


class SwAVOptions(ProjectionOptions):
    prototypes: int = Field(100, ge=2)
    temperature: float = Field(0.1, gt=0)
    sinkhorn_epsilon: float = Field(0.05, gt=0)
    sinkhorn_iterations: int = Field(3, ge=1)
    freeze_prototypes_steps: int = Field(0, ge=0, description="Prototypes get no gradient for this many steps.")
    queue_length: int = Field(0, ge=0, description="Past global-view projections kept for the codes (0 = off).")
    queue_start_step: int = Field(0, ge=0)
    assign_views: int = Field(
        2, ge=1,
        description="Codes are computed for the first N global views (SwAV's crops_for_assign); sizes the queue."
    )
