"""The core's built-in components, registered through the same hooks as any plugin.

They are modality-agnostic: a data source for arrays saved to disk, an MLP backbone for vector
data, feature-based evaluators (weighted kNN, linear probe) that work with any backbone, and
fine-tuning: the ``finetune`` task, its heads (classification, multi-label, regression) and the
evaluators of their task metrics; the ``pseudo_labels`` feedback of training in rounds; and
``data2vec``, one masked-prediction task for any backbone that implements
:class:`selfsup.components.LayerwiseMaskedEncoder` (the plugins' ViT, wav2vec 2.0 and BERT).
Implementations live in sibling modules and are imported inside the factories.
"""

from __future__ import annotations

from typing import Any

import selfsup
from selfsup.builtins.options import (
    ClassificationHeadOptions,
    Data2VecOptions,
    FineTuneOptions,
    HeadMetricsOptions,
    KNNOptions,
    LinearProbeOptions,
    MLPOptions,
    MultiLabelHeadOptions,
    NoiseOptions,
    PseudoLabelOptions,
    RegressionHeadOptions,
    SubsetOptions,
    TensorFileOptions,
)
from selfsup.components import BuildContext


def _tensor_file(options: TensorFileOptions, context: BuildContext) -> Any:
    from selfsup.builtins.tensor_file import TensorFile

    return TensorFile(options)


def _subset(options: SubsetOptions, context: BuildContext) -> Any:
    from selfsup.builtins.subset import Subset

    return Subset(options, context)


def _tensor_decoder(options: TensorFileOptions, context: BuildContext) -> Any:
    from selfsup.lib.serving import TensorDecoder

    return TensorDecoder("input")


def _subset_decoder(options: SubsetOptions, context: BuildContext) -> Any:
    """A subset's samples are its source's: so are its served inputs."""
    return context.decoder(options.data["type"], options.data.get("options") or {})


def _mlp(options: MLPOptions, context: BuildContext) -> Any:
    from selfsup.builtins.mlp import MLP
    from selfsup.lib.pretrained import load_pretrained_into

    mlp = MLP(options)
    load_pretrained_into(mlp, options, type_name="mlp", base_dir=context.base_dir, context=context)
    return mlp


def _noise(options: NoiseOptions, context: BuildContext) -> Any:
    from selfsup.builtins.noise import GaussianNoise

    return GaussianNoise(options)


def _knn(options: KNNOptions, context: BuildContext) -> Any:
    from selfsup.builtins.knn import KNNEvaluator

    return KNNEvaluator(options)


def _linear_probe(options: LinearProbeOptions, context: BuildContext) -> Any:
    from selfsup.builtins.linear_probe import LinearProbe

    return LinearProbe(options)


#: What the core's heads read by default (their ``target`` option names another key): the samples of
#: a fine-tuning task carry one of them.
HEAD_TARGETS = {"label?": "any[*]", "labels?": "any[*]", "target?": "any[*]"}


def _finetune(options: FineTuneOptions, context: BuildContext) -> Any:
    from selfsup.builtins.finetune import FineTune

    return FineTune(options, context)


def _data2vec(options: Data2VecOptions, context: BuildContext) -> Any:
    from selfsup.builtins.data2vec import Data2Vec

    return Data2Vec(options, context)


def _pseudo_labels(options: PseudoLabelOptions, context: BuildContext) -> Any:
    from selfsup.builtins.pseudo_labels import PseudoLabels

    return PseudoLabels(options)


def _head(name: str) -> Any:
    def build(options: Any, context: BuildContext) -> Any:
        from selfsup.builtins import heads

        return getattr(heads, name)(options, context)

    return build


def _head_metrics(name: str) -> Any:
    def build(options: HeadMetricsOptions, context: BuildContext) -> Any:
        from selfsup.builtins import head_metrics

        return getattr(head_metrics, name)(options)

    return build


@selfsup.hookimpl
def register_data_sources(register):
    register(
        "tensor_file",
        _tensor_file,
        options=TensorFileOptions,
        produces={"input": "float32[*]", "label?": "int64[]"},
        summary="Arrays from a .npz, .npy or .safetensors file; one sample per row of the first axis.",
        decoder=_tensor_decoder,
    )
    register(
        "subset",
        _subset,
        options=SubsetOptions,
        produces={},  # the keys of its `data` source (options.wraps_data)
        summary="A seeded share of another source's samples, stratified by label: label-efficiency runs.",
        decoder=_subset_decoder,
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
    register(
        "classification",
        _head_metrics("Classification"),
        options=HeadMetricsOptions,
        consumes=HEAD_TARGETS,
        summary="A fine-tuned classifier's accuracy, macro/micro/weighted precision, recall and F1, ECE; "
                "per-class table and confusion matrix.",
    )
    register(
        "regression",
        _head_metrics("Regression"),
        options=HeadMetricsOptions,
        consumes=HEAD_TARGETS,
        summary="A fine-tuned regression head's MSE, MAE and R^2 on held-out data.",
    )


@selfsup.hookimpl
def register_pretext_tasks(register):
    register(
        "finetune",
        _finetune,
        options=FineTuneOptions,
        consumes=HEAD_TARGETS,
        summary="Supervised fine-tuning with a registered head: full, linear (frozen) or partial, with "
                "layer-wise lr decay.",
    )
    register(
        "data2vec",
        _data2vec,
        options=Data2VecOptions,
        modality="any",
        consumes={},  # the backbone's keys: it masks and encodes the batch (LayerwiseMaskedEncoder)
        summary="data2vec: regress the EMA teacher's average top-K layer outputs at masked positions, for any "
                "transformer backbone that masks its own inputs (ViT patches, speech frames, text tokens).",
    )


@selfsup.hookimpl
def register_heads(register):
    register("classification", _head("ClassificationHead"), options=ClassificationHeadOptions,
             consumes={"{target}": "int64[]"},
             summary="One class per sample: (MLP +) linear layer, cross entropy with class weights.")
    register("multilabel", _head("MultiLabelHead"), options=MultiLabelHeadOptions,
             consumes={"{target}": "float32[C]"},
             summary="Any number of labels per sample: binary cross entropy per label, thresholded.")
    register("regression", _head("RegressionHead"), options=RegressionHeadOptions,
             consumes={"{target}": "float32[*]"},
             summary="Real values: MSE or Huber loss on standardised targets.")


@selfsup.hookimpl
def register_feedback(register):
    register("pseudo_labels", _pseudo_labels, options=PseudoLabelOptions,
             consumes={"{measure_labels}?": "int64[]"},
             produces={"{field}": "int64[]", "{confidence_field}": "float32[]"},
             summary="k-means pseudo-labels of the embeddings, refined each round, with confidence-weighted, "
                     "class-balanced sampling (DeepCluster / noisy-student self-training; any modality).")


@selfsup.hookimpl
def report_sections(run):
    """Confusion matrices of fine-tuned classifiers (``selfsup report``; builtins/report.py)."""
    from selfsup.builtins.report import sections

    return sections(run)
