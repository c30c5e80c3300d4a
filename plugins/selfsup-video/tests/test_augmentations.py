"""Clip augmentations: the same spatial parameters for every frame, temporal crops, frame-rate jitter, multi-clip."""

from __future__ import annotations

import pytest
import torch

from selfsup.components import BuildContext
from selfsup.plugins import get_plugin_manager
from selfsup.testing import AugmentationConformance

# small tensor ops: a second torch thread on the shared 2-core box only adds waiting
pytestmark = pytest.mark.usefixtures("one_thread")

DATA = ("moving_mnist", {"n": 8, "frames": 12})


def build(name, options):
    comp = get_plugin_manager().registry.get("augmentation", name)
    return comp.build(comp.options.model_validate(options), BuildContext(name=name))


def g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class TestClipCrop(AugmentationConformance):
    augmentation = ("clip_crop", {"size": 24})
    data = DATA
    bad_options = [{"size": 0}, {"size": 8, "scale": (0.5, 0.2)}, {"size": 8, "scale": (0.5, 1.5)}]


class TestClipFlip(AugmentationConformance):
    augmentation = ("clip_flip", {"p": 0.7})  # generator seeds 1 and 2 draw 0.76 and 0.61: one flips
    data = DATA
    bad_options = [{"p": 1.5}]


class TestClipColorJitter(AugmentationConformance):
    augmentation = ("clip_color_jitter", {})
    data = ("moving_mnist", {"n": 8, "frames": 12, "channels": 3, "digits": 2})
    bad_options = [{"hue": 0.6}, {"brightness": -1}]
    inert_options = {"hue": "moving_mnist is grey (R = G = B); test_hue_and_saturation_change_colour_clips",
                     "saturation": "moving_mnist is grey (R = G = B); test_hue_and_saturation_change_colour_clips"}


class TestTemporalCrop(AugmentationConformance):
    augmentation = ("temporal_crop", {"frames": 4})
    data = DATA
    bad_options = [{"frames": 0}, {"frames": 4, "offset": "end"}]


class TestFrameRateJitter(AugmentationConformance):
    augmentation = ("frame_rate_jitter", {"frames": 4})
    data = DATA
    bad_options = [{"frames": 4, "rate": (2.0, 1.0)}, {"frames": 4, "rate": (0.0, 1.0)}]


class TestMultiClip(AugmentationConformance):
    augmentation = ("multi_clip", {"frames": 4, "size": 24, "color_jitter": 1.0})
    data = ("moving_mnist", {"n": 8, "frames": 12, "channels": 3, "digits": 2})
    bad_options = [{"frames": 4, "size": 24, "clips": 1}, {"frames": 4, "size": 24, "crop_scale": (0.5, 2.0)}]


def still_clip(frames: int = 6, channels: int = 3, size: int = 20) -> dict:
    """A clip whose frames are all the same random image: any clip-consistent augmentation keeps them equal."""
    image = torch.rand(channels, size, size, generator=g(123))
    return {"video": image.expand(frames, -1, -1, -1).clone()}


@pytest.mark.parametrize("name, options", [
    ("clip_crop", {"size": 12, "scale": (0.1, 0.5)}),
    ("clip_flip", {"p": 0.5}),
    ("clip_color_jitter", {"p": 1.0}),
])
def test_spatial_augmentations_give_every_frame_the_same_parameters(name, options):
    aug = build(name, options)
    changed = 0
    for seed in range(12):
        out = aug(still_clip(), g(seed))["video"]  # [T, C, H, W]
        assert all(torch.equal(out[0], out[t]) for t in range(1, len(out))), (name, seed)
        changed += out.shape != still_clip()["video"].shape or not torch.equal(out, still_clip()["video"])
    assert changed >= 4  # the augmentation does something for most seeds


@pytest.mark.parametrize("option", ["hue", "saturation"])
def test_hue_and_saturation_change_colour_clips(option):
    only = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0, "p": 1.0}
    clip = still_clip()
    assert torch.equal(build("clip_color_jitter", only)(clip, g(0))["video"], clip["video"])
    out = build("clip_color_jitter", {**only, option: 0.4})(clip, g(0))["video"]
    assert not torch.allclose(out, clip["video"], atol=1e-3) and torch.equal(out[0], out[-1])


def test_multi_clip_augments_each_clip_consistently_and_the_clips_differently():
    aug = build("multi_clip", {"clips": 3, "frames": 4, "size": 12, "crop_scale": (0.2, 0.6), "color_jitter": 1.0,
                               "color_jitter_p": 1.0})
    for seed in range(5):
        clips = aug(still_clip(frames=10), g(seed))["clips"]  # [3, 4, C, 12, 12]
        assert clips.shape == (3, 4, 3, 12, 12)
        for c in clips:
            assert all(torch.equal(c[0], c[t]) for t in range(1, 4))
        assert not torch.equal(clips[0], clips[1]) and not torch.equal(clips[1], clips[2])


def numbered(frames: int) -> dict:
    """A clip whose frame t is filled with t, so an output's frames say which input frames they are."""
    return {"video": torch.arange(frames, dtype=torch.float32).view(frames, 1, 1, 1).expand(frames, 1, 4, 4).clone()}


def taken(out: torch.Tensor) -> list[int]:
    return out[:, 0, 0, 0].long().tolist()


def test_temporal_crop_bounds_stride_and_offsets():
    aug = build("temporal_crop", {"frames": 4, "stride": 3})
    starts = set()
    for seed in range(200):
        idx = taken(aug(numbered(20), g(seed))["video"])
        assert idx == [idx[0] + 3 * i for i in range(4)] and 0 <= idx[0] <= 20 - 10
        starts.add(idx[0])
    assert starts == set(range(11))  # every possible start is drawn
    assert taken(build("temporal_crop", {"frames": 4, "stride": 3, "offset": "center"})(numbered(20), g(0))["video"]) \
        == [5, 8, 11, 14]
    assert taken(build("temporal_crop", {"frames": 4, "stride": 3, "offset": "start"})(numbered(20), g(0))["video"]) \
        == [0, 3, 6, 9]
    # shorter than the span: from the start, the last frame repeated
    assert taken(aug(numbered(6), g(0))["video"]) == [0, 3, 5, 5]


def test_temporal_crop_keeps_the_other_fields_and_follows_the_key():
    sample = {**numbered(10), "label": 3, "other": numbered(10)["video"]}
    out = build("temporal_crop", {"frames": 2, "key": "other", "offset": "start"})(sample, g(0))
    assert out["label"] == 3 and out["video"].shape[0] == 10 and taken(out["other"]) == [0, 1]


def test_frame_rate_jitter_changes_speed_within_the_range():
    aug = build("frame_rate_jitter", {"frames": 5, "rate": (1.0, 3.0)})
    steps = set()
    for seed in range(100):
        idx = taken(aug(numbered(40), g(seed))["video"])
        diffs = [b - a for a, b in zip(idx, idx[1:])]
        assert all(1 <= d <= 3 for d in diffs) and idx[-1] < 40, idx
        assert max(diffs) - min(diffs) <= 1  # one rate per clip: steps are floor(rate) or ceil(rate)
        steps.add(round(sum(diffs) / len(diffs)))
    assert steps == {1, 2, 3}
    slow = build("frame_rate_jitter", {"frames": 6, "rate": (0.5, 0.5)})
    idx = taken(slow(numbered(40), g(1))["video"])
    assert [b - a for a, b in zip(idx, idx[1:])] == [0, 1, 0, 1, 0] or [b - a for a, b in zip(idx, idx[1:])] == [
        1, 0, 1, 0, 1]


def test_augmentations_compose_on_moving_mnist_and_keep_values_in_range():
    comp = get_plugin_manager().registry.get("data_source", "moving_mnist")
    src = comp.build(comp.options.model_validate({"n": 4, "frames": 16, "channels": 3}), BuildContext(name="d"))
    pipeline = [build("temporal_crop", {"frames": 8, "stride": 2}), build("clip_crop", {"size": 24}),
                build("clip_flip", {}), build("clip_color_jitter", {})]
    for i in range(4):
        s = src[i]
        for step in pipeline:
            s = step(s, g(i))
        assert s["video"].shape == (8, 3, 24, 24) and 0 <= s["video"].min() and s["video"].max() <= 1
