"""The core's built-ins and the toy test plugin pass selfsup.testing's conformance suites."""

import numpy as np
import pytest

import selfsup_toy
from selfsup.testing import (
    AugmentationConformance,
    BackboneConformance,
    DataSourceConformance,
    EvaluatorConformance,
    TaskConformance,
)

BLOBS = ("blobs", {"n": 64, "dim": 8, "classes": 4})
MLP = ("mlp", {"in_dim": 8, "hidden_dims": [16], "out_dim": 8})
#: Overlapping blobs, so that evaluators' accuracies are not all 1.0 and their options show.
HARD_BLOBS = {**BLOBS[1], "spread": 3.0}


class TestToyTask(TaskConformance):
    plugins = [selfsup_toy]
    task = "toy_infonce"
    task_options = {"temperature": 0.5}
    data = BLOBS
    augment = [("noisy_views", {"std": 0.1})]
    backbone = MLP
    bad_options = [{"temperature": 0}, {"projection_dim": -3}]


class TestBlobs(DataSourceConformance):
    plugins = [selfsup_toy]
    data = BLOBS
    bad_options = [{"n": 0}, {"split": "test"}]


class TestNoisyViews(AugmentationConformance):
    plugins = [selfsup_toy]
    augmentation = ("noisy_views", {"std": 0.2})
    data = BLOBS
    bad_options = [{"std": -1}, {"views": 1}]


class TestGaussianNoise(AugmentationConformance):
    plugins = [selfsup_toy]
    augmentation = ("gaussian_noise", {"std": 0.2})
    data = BLOBS
    bad_options = [{"std": 0}]


class TestMLP(BackboneConformance):
    plugins = [selfsup_toy]
    backbone = MLP
    data = BLOBS
    bad_options = [{"in_dim": 0}, {"hidden_dims": [8, -1], "in_dim": 4}, {"dropout": 1.5, "in_dim": 3}]


class TestKNN(EvaluatorConformance):
    plugins = [selfsup_toy]
    evaluator = "knn"
    evaluator_options = {"k": 5, "raw_baseline": "input"}
    data = ("blobs", {**HARD_BLOBS, "split": "val"})
    fit_data = ("blobs", {**HARD_BLOBS, "split": "train"})
    backbone = MLP
    bad_options = [{"k": 0}, {"temperature": -0.1}]
    option_variants = {"k": 1, "temperature": 10.0}


class TestLinearProbe(EvaluatorConformance):
    plugins = [selfsup_toy]
    evaluator = "linear_probe"
    evaluator_options = {"max_iter": 20}
    data = ("blobs", {**HARD_BLOBS, "split": "val"})
    fit_data = ("blobs", {**HARD_BLOBS, "split": "train"})
    backbone = MLP
    bad_options = [{"max_iter": 0}]
    option_variants = {"max_iter": 1, "weight_decay": 10.0}


@pytest.fixture(scope="module")
def tensor_file(tmp_path_factory):
    """Two files of 40 labelled points (the second one for the options check's ``path`` variant)."""
    paths = [tmp_path_factory.mktemp("tf") / name for name in ("points.npz", "other.npz")]
    for seed, path in enumerate(paths):
        rng = np.random.default_rng(seed)
        np.savez(path, input=rng.normal(size=(40, 6)).astype("float32"), label=np.arange(40) % 4)
    return paths


class TestTensorFile(DataSourceConformance):
    data = ("tensor_file", {})
    bad_options = [{"path": "/definitely/missing.npz"}, {"path": __file__, "val_fraction": 1.5}]

    @pytest.fixture(autouse=True)
    def _use_file(self, tensor_file, monkeypatch):
        monkeypatch.setattr(type(self), "data", ("tensor_file", {"path": str(tensor_file[0]), "split": "train"}))
        monkeypatch.setattr(type(self), "option_variants", {"path": str(tensor_file[1])})
