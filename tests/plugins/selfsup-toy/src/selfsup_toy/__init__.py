"""selfsup-toy: Gaussian blobs, noisy views and an InfoNCE task on vectors.

The plugin shape every selfsup plugin follows: options models at import (no torch), factories
that import the implementation when called, and one ``@hookimpl`` per kind registered.
"""

from __future__ import annotations

from importlib import resources

from pydantic import Field

import selfsup
from selfsup.options import Options


class BlobsOptions(Options):
    n: int = Field(1024, gt=0, description="Number of points.")
    dim: int = Field(16, gt=0, description="Dimension of each point ('input').")
    classes: int = Field(4, gt=1, description="Number of blobs (labels).")
    spread: float = Field(0.5, gt=0, description="Std of each blob around its centre.")
    nuisance: float = Field(0.0, ge=0, description="Std of a shared random offset per point (what SSL should ignore).")
    split: str = Field("all", pattern="^(all|train|val)$", description="All points, or a stratified train/val split.")
    seed: int = Field(0, ge=0, description="Seed of the generated data (not of training).")


class NoisyViewsOptions(Options):
    std: float = Field(0.3, gt=0, description="Standard deviation of the noise of each view.")
    views: int = Field(2, ge=2, description="Noisy copies stacked as 'views'.")


class InfoNCEOptions(Options):
    temperature: float = Field(0.2, gt=0, description="Softmax temperature of the InfoNCE logits.")
    projection_dim: int = Field(32, gt=0, description="Output size of the projection head.")


def _blobs(options, context):
    from selfsup_toy.blobs import Blobs

    return Blobs(options)


def _noisy_views(options, context):
    from selfsup_toy.blobs import NoisyViews

    return NoisyViews(options)


def _infonce(options, context):
    from selfsup_toy.infonce import InfoNCETask

    return InfoNCETask(options, context.backbone.output_dim)


def _blobs_decoder(options, context):
    from selfsup.lib import TensorDecoder

    return TensorDecoder("input", shape=(options.dim,))


@selfsup.hookimpl
def register_data_sources(register):
    register("blobs", _blobs, options=BlobsOptions, modality="vector",
             summary="Labelled Gaussian blobs, generated from a seed.",
             produces={"input": "float32[{dim}]", "label": "int64[]"}, decoder=_blobs_decoder)


@selfsup.hookimpl
def register_augmentations(register):
    register("noisy_views", _noisy_views, options=NoisyViewsOptions, modality="vector",
             summary="Stacks noisy copies of 'input' as 'views'.",
             consumes={"input": "float32[D]"}, produces={"views": "float32[{views},D]"})


@selfsup.hookimpl
def register_pretext_tasks(register):
    register("toy_infonce", _infonce, options=InfoNCEOptions, modality="vector", summary="InfoNCE between noisy views.",
             consumes={"views": "float32[V,D]"}, feeds={"input": "float32[D]"})


@selfsup.hookimpl
def register_recipes(register):
    register(
        "toy-quickstart",
        lambda: resources.files("selfsup_toy").joinpath("recipes/toy-quickstart.toml").read_text(),
        modality="vector",
        summary="InfoNCE on Gaussian blobs with an MLP, kNN-evaluated (seconds on a CPU).",
    )
