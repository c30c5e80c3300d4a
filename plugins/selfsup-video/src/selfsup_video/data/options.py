"""Options of the selfsup-video data sources (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from selfsup.options import ExistingDir, Options

OnError = Literal["skip", "raise"]
Offset = Literal["random", "center", "start", "uniform"]


class MovingMNISTOptions(Options):
    """Moving MNIST-style sequences (Srivastava et al. 2015) drawn from scikit-learn's 8x8 digits.

    Every sequence is generated from ``seed`` and the split alone, so the same options give the same
    sequences in every process; the three splits draw their digit images from disjoint thirds of the
    1,797 digits (stratified 60/20/20), so val and test show unseen handwriting."""

    split: Literal["train", "val", "test"] = "train"
    n: int = Field(2000, ge=1, le=200_000, description="Sequences in this split.")
    frames: int = Field(16, ge=2, le=64, description="Frames per sequence.")
    size: int = Field(32, ge=16, le=128, description="Canvas side in pixels.")
    digit_size: int = Field(12, ge=8, description="Side of an upscaled digit on the canvas.")
    digits: Literal[1, 2] = Field(1, description="Digits per sequence (the first one gives both labels).")
    channels: Literal[1, 3] = 1
    seed: int = Field(0, ge=0, description="Trajectory and digit choice seed (the split is mixed in).")
    label: Literal["digit", "motion"] = Field(
        "digit", description="Which class is copied into 'label' (both are always in 'digit' and 'motion').")
    directions: Literal[4, 8] = Field(
        4, description="Motion classes: the first digit's initial velocity is at angle 360/directions * k, k the "
        "'motion' label (0 = right, counter-clockwise).")
    angle_jitter: float = Field(
        0.0, ge=0, le=22.5, description="Uniform jitter (degrees) of the first digit's direction around its class.")
    speed: tuple[float, float] = Field(
        (1.0, 2.0), description="Range of digit speeds in pixels per frame (uniform).")
    boundary: Literal["bounce", "wrap"] = Field(
        "bounce", description="bounce: reflect at the canvas edges (the original); wrap: leave one side and enter "
        "the other, so the direction never changes.")
    friction: float = Field(
        0.0, ge=0, lt=1, description="Share of its speed a digit loses every frame (0: constant speed, the original). "
        "Above 0 the digits slow down, so a clip played backwards (speeding up from rest) is no longer a valid "
        "sequence: time gets a direction that the arrow-of-time task can learn.")

    @model_validator(mode="after")
    def _check(self) -> "MovingMNISTOptions":
        low, high = self.speed
        if not 0 <= low <= high or high > self.size:
            raise ValueError(f"speed must be 0 <= low <= high <= size, got {self.speed}")
        if self.digit_size >= self.size:
            raise ValueError(f"digit_size ({self.digit_size}) must be smaller than size ({self.size})")
        return self


class _ClipOptions(Options):
    """How a clip is sampled from a video when it is decoded."""

    size: int = Field(32, ge=8, description="Frames are resized (shorter side) and centre-cropped to size x size.")
    channels: Literal[1, 3] = 3
    frames: int = Field(16, ge=1, le=512, description="Frames per clip.")
    stride: int = Field(1, ge=1, description="Take every stride-th frame (ignored by offset = 'uniform').")


class VideoFolderOptions(_ClipOptions):
    """``root/<class>/<video>`` (labels from folder names) or videos directly under ``root``."""

    root: ExistingDir
    offset: Offset = Field(
        "random", description="Where the clip starts: random (seeded by the run seed and the sample's index: the same "
        "window every epoch; decode a longer window and add temporal_crop for a new one each epoch), center, start, "
        "or uniform: `frames` frames evenly spread over the whole video. Videos shorter than the clip repeat their "
        "last frame.")
    extensions: list[str] = Field(default_factory=lambda: [".mp4", ".avi", ".webm", ".gif", ".mkv", ".mov"])
    split: Literal["all", "train", "val"] = "all"
    val_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = Field(0, ge=0)
    limit: int | None = Field(None, gt=0, description="Keep only the first N videos of the split.")
    on_error: OnError = Field(
        "skip", description="Unreadable videos (found when the source is built: every file is decoded once): skip "
        "and count them, or stop the build naming the file.")


class VideoShardsOptions(_ClipOptions):
    """Streaming tar shards (webdataset layout: ``key.mp4`` / ``key.cls`` members)."""

    shards: list[str] = Field(min_length=1, description="Shard paths or glob patterns, relative to the recipe.")
    offset: Offset = Field(
        "random", description="Where the clip starts: random (seeded by the run seed, the epoch and the sample's key: "
        "a new window every epoch), center, start, or uniform: `frames` frames evenly spread over the whole video. "
        "Videos shorter than the clip repeat their last frame.")
    video_keys: list[str] = Field(default_factory=lambda: ["mp4", "webm", "avi", "gif", "mkv", "mov"])
    label_key: str | None = "cls"
    shuffle_buffer: int = Field(100, ge=1, description="Decoded clips held in the shuffle buffer.")
    on_error: OnError = Field(
        "skip", description="Unreadable shards (checked when built) and videos (met while streaming): skip, count "
        "and warn, or raise naming the shard (and key).")
