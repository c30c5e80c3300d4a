"""selfsup-video: self-supervised learning on video, written only against the public plugin API.

Registers video data sources (a generated Moving MNIST benchmark, video folders decoded through
PyAV, streaming shards), clip-consistent augmentations, backbones (a (2+1)D / 3D CNN, a frame-wise
timm model with temporal fusion, a tube-patch ViT), pretext tasks (Shuffle and Learn, Order
Prediction Network, arrow of time, VideoMAE, clip contrastive), a frame-order evaluator and a
quickstart recipe per task. Implementations are imported inside the factories, so loading this
plugin imports no torch.

The data contract: a sample's clip is ``"video": float32[T, C, H, W]`` with values in [0, 1]
(frames first), an optional integer ``"label"``; augmentations keep that layout, and ``multi_clip``
writes ``"clips": float32[N, T, C, H, W]``.
"""

from __future__ import annotations

from typing import Any, Callable

import selfsup
from selfsup.registry import lazy, package_recipes

MODALITY = "video"


def _lazy(path: str) -> Callable[[Any, Any], Any]:
    return lazy(f"selfsup_video.{path}")


# ----------------------------------------------------------------------------- data and augmentations
# (helper "video-data": register_data_sources, register_augmentations)

#: What a video source yields and every clip augmentation reads: a ``[T, C, H, W]`` float clip.
CLIP = {"{key}": "float32[T,C,H,W]"}


@selfsup.hookimpl
def register_data_sources(register):
    from selfsup_video.data import options as do

    register("moving_mnist", _lazy("data.moving_mnist:build"), options=do.MovingMNISTOptions, modality=MODALITY,
             summary="Generated Moving MNIST (1-2 sklearn digits bouncing, seeded); labels digit and motion direction.",
             produces={"video": "float32[{frames},{channels},{size},{size}]", "label": "int64[]", "digit": "int64[]",
                       "motion": "int64[]"}, decoder=_lazy("data.serving:clip_decoder"))
    clip = {"video": "float32[{frames},{channels},{size},{size}]"}
    register("video_folder", _lazy("data.folder:build"), options=do.VideoFolderOptions, modality=MODALITY,
             summary="mp4/avi/webm/gif files (PyAV); class sub-folders give labels; clips sampled when decoded.",
             produces={**clip, "label?": "int64[]"}, decoder=_lazy("data.serving:clip_decoder"))
    register("video_shards", _lazy("data.shards:build"), options=do.VideoShardsOptions, modality=MODALITY,
             summary="Streaming tar shards of encoded videos larger than memory, with a seeded shuffle buffer.",
             produces={**clip, "label? if label_key": "int64[]"}, decoder=_lazy("data.serving:clip_decoder"))


@selfsup.hookimpl
def register_augmentations(register):
    from selfsup_video.augment import options as ao

    for name, module, options, summary, produces in [
        ("clip_crop", "transforms", ao.ClipCropOptions, "One random resized crop for all frames of a clip.",
         {"{key}": "float32[T,C,{size},{size}]"}),
        ("clip_flip", "transforms", ao.ClipFlipOptions, "Mirror all frames of a clip left-right with probability p.",
         None),
        ("clip_color_jitter", "transforms", ao.ClipColorJitterOptions,
         "One set of brightness/contrast/saturation/hue factors for all frames of a clip.", None),
        ("temporal_crop", "temporal", ao.TemporalCropOptions,
         "Cut `frames` frames every `stride` at a random or centred offset.", {"{key}": "float32[{frames},C,H,W]"}),
        ("frame_rate_jitter", "temporal", ao.FrameRateJitterOptions,
         "Cut `frames` frames at a random playback rate (speed change).", {"{key}": "float32[{frames},C,H,W]"}),
        ("multi_clip", "clips", ao.MultiClipOptions,
         "N clips of one video, each its own temporal crop and clip-consistent spatial augmentation (CVRL).",
         {"clips": "float32[{clips},{frames},C,{size},{size}]"}),
    ]:
        register(name, _lazy(f"augment.{module}:build_{name}"), options=options, modality=MODALITY, summary=summary,
                 consumes=CLIP, produces=produces)

# ----------------------------------------------------------------------------- models
# (helper "video-models": register_backbones, register_pretext_tasks, register_evaluators)

#: What the video backbones and the tasks on whole clips read: a ``[T, C, H, W]`` float clip.
VIDEO = {"video": "float32[T,C,H,W]"}


@selfsup.hookimpl
def register_backbones(register):
    from selfsup_video.backbones import options as bo

    register("r2plus1d", _lazy("backbones.r2plus1d:build_r2plus1d"), options=bo.R2Plus1DOptions, modality=MODALITY,
             summary="A small residual (2+1)D or 3D CNN for short low-resolution clips; per-frame features too.",
             consumes={"video": "float32[T,{in_channels},H,W]"})
    register("framewise", _lazy("backbones.framewise:build_framewise"), options=bo.FramewiseOptions,
             modality=MODALITY, consumes=VIDEO,
             summary="A timm 2D model (or a shared image backbone) per frame, fused by mean, attention or concat.")
    register("video_vit", _lazy("backbones.video_vit:build_video_vit"), options=bo.VideoViTOptions,
             modality=MODALITY, consumes={"video": "float32[T,{in_channels},H,W]"},
             summary="A ViT over tube patches with sine-cosine space-time positions (VideoMAE's encoder).")


@selfsup.hookimpl
def register_pretext_tasks(register):
    from selfsup_video.tasks import options as to

    register("shuffle_and_learn", _lazy("tasks.shuffle_and_learn:build"), options=to.ShuffleAndLearnOptions,
             modality=MODALITY, consumes=VIDEO, feeds=VIDEO,
             summary="Frame-order verification: is the middle frame of a 3-frame tuple between the other two?")
    register("order_prediction", _lazy("tasks.order_prediction:build"), options=to.OrderPredictionOptions,
             modality=MODALITY, consumes=VIDEO, feeds=VIDEO,
             summary="OPN: sort 4 shuffled frames (12 orders up to reversal) from pairwise fused frame features.")
    register("arrow_of_time", _lazy("tasks.arrow_of_time:build"), options=to.ArrowOfTimeOptions, modality=MODALITY,
             consumes=VIDEO, feeds=VIDEO, summary="Is the clip played forward or backward?")
    register("videomae", _lazy("tasks.videomae:build"), options=to.VideoMAEOptions, modality=MODALITY,
             consumes=VIDEO, feeds=VIDEO,
             summary="Tube masking (90%) of a tube ViT, light decoder, normalised-pixel loss on the masked tubes.")
    register("cvrl", _lazy("tasks.cvrl:build"), options=to.CVRLOptions, modality=MODALITY,
             consumes={"clips": "float32[2,T,C,H,W]"}, feeds=VIDEO,
             summary="InfoNCE between two clips of one video (multi_clip) through a projection head.")


@selfsup.hookimpl
def register_evaluators(register):
    from selfsup_video.evaluators import options as eo

    register("frame_order_accuracy", _lazy("evaluators.frame_order_accuracy:build_frame_order_accuracy"),
             options=eo.FrameOrderAccuracyOptions, modality=MODALITY, consumes=VIDEO,
             summary="Linear probe on frozen clip embeddings: ordered clips against shuffled (or reversed) ones.")

RECIPES: dict[str, str] = {
    # (helper "video-models")
    "cvrl-moving-mnist": "CVRL: InfoNCE between two clips of each Moving MNIST sequence, small (2+1)D CNN.",
    "videomae-moving-mnist": "VideoMAE: 90% tube masking of a small tube ViT on Moving MNIST.",
    "shuffle-learn-moving-mnist": "Shuffle and Learn: frame-order verification on Moving MNIST, a tiny CNN per frame.",
    "opn-moving-mnist": "Order Prediction Network: sort 4 Moving MNIST frames (12 orders), a tiny CNN per frame.",
    "arrow-of-time-moving-mnist": "Arrow of time on Moving MNIST: a negative control (bouncing digits are "
                                  "time-symmetric).",
    "video-image-shared": "Shuffle and Learn on Moving MNIST and SimCLR on digits through one shared 2D CNN "
                          "(needs selfsup-vision).",
}


@selfsup.hookimpl
def register_recipes(register):
    package_recipes(register, "selfsup_video", RECIPES, modality=MODALITY)
