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


class TeacherOptions(Options):
    """The EMA teacher of BYOL and MoCo v3 (``selfsup.lib.teacher.EMATeacher``)."""

    base_momentum: float = Field(0.996, ge=0, le=1, description="EMA momentum at step 0.")
    final_momentum: float = Field(1.0, ge=0, le=1, description="EMA momentum at the last step (cosine schedule).")
    momentum_schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="Cosine from base to final momentum over the run's optimizer steps, or constant base."
    )


class BYOLOptions(ProjectionOptions, TeacherOptions):
    predictor_hidden_dim: int = Field(512, gt=0)
    predictor_layers: int = Field(
        2, ge=0, description="Layers of the online predictor; 0 removes it (BYOL then collapses: the ablation)."
    )
    predictor_lr_scale: float = Field(
        1.0, gt=0, description="The predictor learns at this multiple of the run's learning rate (a predictor that "
        "adapts faster than the encoder keeps its features from concentrating on a few directions; docs/vision.md)."
    )


class MoCoV3Options(ProjectionOptions, TeacherOptions):
    projection_layers: int = Field(3, ge=1)
    predictor_hidden_dim: int = Field(512, gt=0)
    predictor_layers: int = Field(2, ge=1)
    base_momentum: float = Field(0.99, ge=0, le=1, description="EMA momentum at step 0.")
    temperature: float = Field(0.2, gt=0)
    freeze_patch_embed: bool = Field(
        False, description="Freeze a ViT backbone's random patch projection (the paper's stability trick)."
    )
    gather_distributed: bool = Field(True, description="Keys from every DDP rank.")


class BarlowTwinsOptions(ProjectionOptions):
    projection_layers: int = Field(3, ge=1)
    off_diagonal_weight: float = Field(5e-3, ge=0, description="lambda: weight of the redundancy-reduction term.")
    gather_distributed: bool = Field(True, description="Cross-correlation over the global batch under DDP.")


class VICRegOptions(ProjectionOptions):
    projection_layers: int = Field(3, ge=1)
    invariance_weight: float = Field(25.0, ge=0, description="lambda: weight of the MSE between the two views.")
    variance_weight: float = Field(25.0, ge=0, description="mu: weight of the std hinge (0 removes it: collapse).")
    covariance_weight: float = Field(1.0, ge=0, description="nu: weight of the off-diagonal covariance.")
    variance_eps: float = Field(1e-4, gt=0)
    gather_distributed: bool = Field(True, description="Variance and covariance over the global batch under DDP.")


class DINOOptions(TeacherOptions):
    output_dim: int = Field(65536, ge=2, description="K: the head's outputs (the softmax's dimensions).")
    hidden_dim: int = Field(2048, gt=0)
    bottleneck_dim: int = Field(256, gt=0)
    head_layers: int = Field(3, ge=1, description="Linear layers of the MLP before the L2-normalised bottleneck.")
    head_batch_norm: bool = Field(False, description="BatchNorm between the MLP's layers (off for ViTs).")
    norm_last_layer: bool = Field(True, description="Fix the weight-normalised last layer's norm at 1.")
    student_temp: float = Field(0.1, gt=0)
    teacher_temp: float = Field(0.04, gt=0, description="Teacher temperature after the warm-up (0.04-0.07).")
    warmup_teacher_temp: float = Field(0.04, gt=0)
    warmup_teacher_temp_steps: int = Field(0, ge=0, description="Optimizer steps of the linear warm-up.")
    center_momentum: float = Field(0.9, ge=0, lt=1)
    freeze_last_layer_steps: int = Field(0, ge=0, description="The head's last layer gets no gradient this long.")
