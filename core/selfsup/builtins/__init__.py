"""The core's built-in components, registered through the same hooks as any plugin.

They are modality-agnostic: a data source for arrays saved to disk, an MLP backbone for vector
data, and feature-based evaluators (weighted kNN, linear probe) that work with any backbone.
Implementations live in sibling modules and are imported inside the factories.
"""

from __future__ import annotations

from typing import Any

import selfsup
from selfsup.builtins.options import KNNOptions, LinearProbeOptions, MLPOptions, NoiseOptions, TensorFileOptions
from selfsup.components import BuildContext


def _tensor_file(options: TensorFileOptions, context: BuildContext) -> Any:
    from selfsup.builtins.tensor_file import TensorFile

    return TensorFile(options)


def _mlp(options: MLPOptions, context: BuildContext) -> Any:
    from selfsup.builtins.mlp import MLP

    return MLP(options)


def _noise(options: NoiseOptions, context: BuildContext) -> Any:
    from selfsup.builtins.noise import GaussianNoise

    return GaussianNoise(options)


def _knn(options: KNNOptions, context: BuildContext) -> Any:
    from selfsup.builtins.knn import KNNEvaluator

    return KNNEvaluator(options)


def _linear_probe(options: LinearProbeOptions, context: BuildContext) -> Any:
    from selfsup.builtins.linear_probe import LinearProbe

    return LinearProbe(options)


@selfsup.hookimpl
def register_data_sources(register):
    register(
        "tensor_file",
        _tensor_file,
        options=TensorFileOptions,
        produces={"input": "float32[*]", "label?": "int64[]"},
        summary="Arrays from a .npz, .npy or .safetensors file; one sample per row of the first axis.",
    )


@selfsup.hookimpl
def register_augmentations(register):
    register(
        "gaussian_noise",
        _noise,
        options=NoiseOptions,
        consumes={"{key}": "float[*]"},
        summary="Adds seeded Gaussian noise to a float tensor field (default 'input').",
    )


@selfsup.hookimpl
def register_backbones(register):
    register("mlp", _mlp, options=MLPOptions, consumes={"input": "float32[*]"},
             summary="A multilayer perceptron for vector inputs.")


@selfsup.hookimpl
def register_evaluators(register):
    register(
        "knn",
        _knn,
        options=KNNOptions,
        consumes={"label": "int64[]", "{raw_baseline}": "any[*]"},
        summary="Weighted kNN accuracy on frozen features (cosine similarity, exp(s/t) votes).",
    )
    register(
        "linear_probe",
        _linear_probe,
        options=LinearProbeOptions,
        consumes={"label": "int64[]"},
        summary="Accuracy of a logistic-regression classifier trained on frozen features.",
    )
