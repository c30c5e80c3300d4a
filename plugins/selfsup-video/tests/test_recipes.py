"""The shipped video recipes: they validate, probe appearance and motion beside raw pixels, and the
multimodal recipe trains one 2D CNN shared by a video task and an image task (needs selfsup-vision)."""

from __future__ import annotations

import json
from importlib import metadata, resources

import pytest
import tomllib

from selfsup.plugins import get_plugin_manager
from selfsup.recipe import load_recipe
from selfsup_video import RECIPES


def _vision_installed() -> bool:
    try:
        metadata.distribution("selfsup-vision")
        return True
    except metadata.PackageNotFoundError:
        return False


NEEDS_VISION = {"video-image-shared"}
QUICKSTARTS = sorted(set(RECIPES) - NEEDS_VISION)


def _toml(name: str) -> dict:
    return tomllib.loads((resources.files("selfsup_video") / "recipes" / f"{name}.toml").read_text())


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_validates(name):
    if name in NEEDS_VISION and not _vision_installed():
        pytest.skip("needs selfsup-vision (its digits, multi_view, small_cnn and simclr)")
    loaded = load_recipe(name, get_plugin_manager().registry)
    assert loaded.recipe.tasks and loaded.recipe.evaluators


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_probes_digit_and_motion_beside_raw_pixels(name):
    recipe = _toml(name)
    labels = {key: spec["options"].get("label", "digit") for key, spec in recipe["data"].items()
              if spec["type"] == "moving_mnist"}
    evaluators = recipe["evaluators"]
    for kind in ("knn", "linear_probe"):
        probed = {labels[e["data"]] for e in evaluators.values() if e["type"] == kind and e["data"] in labels}
        assert probed == {"digit", "motion"}, (kind, probed)
        for e in evaluators.values():
            if e["type"] == kind and e["data"] in labels:
                assert labels[e["fit_data"]] == labels[e["data"]]  # the bank has the same label as the queries
    assert all(e["options"]["raw_baseline"] == "video" for e in evaluators.values()
               if e["type"] == "knn" and e["data"] in labels)
    assert any(e["type"] == "frame_order_accuracy" for e in evaluators.values())


TINY = ["train.max_steps=1", "train.warmup_steps=0", "data.train.options.n=32", "data.fit_digit.options.n=32",
        "data.val_digit.options.n=32", "data.fit_motion.options.n=16", "data.val_motion.options.n=16",
        "evaluators.knn_motion=", "evaluators.probe_digit=", "evaluators.probe_motion=", "evaluators.frame_order=",
        "evaluators.knn_image=", "train.batch_size=8"]


def test_video_image_shared_trains_one_cnn_with_both_tasks(tmp_path, one_thread):
    if not _vision_installed():
        pytest.skip("needs selfsup-vision (its digits, multi_view, small_cnn and simclr)")
    from safetensors import safe_open

    import selfsup

    run = selfsup.train("video-image-shared", [f'output_dir="{tmp_path / "run"}"', *TINY])
    assert run.status == "completed"
    assert {"loss/simclr", "loss/shuffle_and_learn", "knn_digit/accuracy"} <= set(run.metrics)
    (checkpoint,) = (tmp_path / "run" / "checkpoints").glob("step-*/model.safetensors")
    with safe_open(str(checkpoint), "pt") as f:
        keys = list(f.keys())
    shared = [k for k in keys if k.endswith("features.0.weight")]
    assert shared == ["backbones.image.features.0.weight"], shared  # one tensor, stored once
    recipe = json.loads((tmp_path / "run" / "recipe.json").read_text())["recipe"]
    assert recipe["backbones"]["video"]["options"]["share"] == "image"
