"""Image augmentations: conformance, size-aware presets, view shapes, reproducibility."""

from __future__ import annotations

import pytest
import torch

from selfsup.components import BuildContext
from selfsup.plugins import get_plugin_manager
from selfsup.testing import AugmentationConformance

DIGITS = ("digits", {"split": "val", "limit": 8})


def aug(name, options):
    return get_plugin_manager().registry.get("augmentation", name).build(options, BuildContext(name=name))


class TestMultiView(AugmentationConformance):
    augmentation = ("multi_view", {"size": 8, "flip": 0.0, "mean": [0.5]})
    data = DIGITS
    bad_options = [{"size": 8, "views": 1}, {"size": 0}, {"size": 8, "flip": 2}]
    # 'auto' picks 'small' for 8 px, whose colour-jitter strength is 0.5
    option_variants = {"preset": "photo", "color_jitter": 1.0}
    inert_options = {"grayscale": "digits have one channel: grayscale leaves them as they are"}


class TestMultiCrop(AugmentationConformance):
    augmentation = ("multi_crop", {"global_size": 8, "local_size": 4, "local_crops": 3, "mean": [0.5]})
    data = DIGITS
    bad_options = [{"global_size": 8, "local_size": 4, "global_crops": 1}]
    # 'auto' picks 'small' for 8 px: flip 0.5, colour-jitter strength 0.5
    option_variants = {"preset": "photo", "flip": 1.0, "color_jitter": 1.0}
    inert_options = {"grayscale": "digits have one channel: grayscale leaves them as they are"}


class TestRandomResizedCrop(AugmentationConformance):
    augmentation = ("random_resized_crop", {"size": 6, "scale": [0.3, 1.0]})
    data = DIGITS
    bad_options = [{"size": -1}]


class TestColorJitter(AugmentationConformance):
    augmentation = ("color_jitter", {"p": 1.0})
    data = DIGITS
    bad_options = [{"hue": 0.9}, {"p": -0.1}]
    inert_options = {"saturation": "digits have one channel: no saturation to change",
                     "hue": "digits have one channel: no hue to change"}


class TestNormalize(AugmentationConformance):
    augmentation = ("normalize", {"mean": [0.3], "std": [0.2]})
    data = DIGITS
    random = False
    bad_options = [{"mean": [0.1, 0.2], "std": [0.1]}, {"std": [0.0]}]


@pytest.mark.parametrize("name", ["horizontal_flip", "grayscale", "gaussian_blur", "solarize"])
def test_single_transforms_keep_shape_and_are_seeded(name):
    image = torch.rand(3, 16, 16)
    t = aug(name, {"p": 1.0})
    a = t({"image": image}, torch.Generator().manual_seed(5))["image"]
    b = t({"image": image}, torch.Generator().manual_seed(5))["image"]
    assert a.shape == image.shape and torch.equal(a, b) and not torch.equal(a, image)


def test_views_shapes_and_presets():
    sample = {"image": torch.rand(3, 32, 32), "label": 1}
    out = aug("multi_view", {"size": 24, "views": 3})(sample, torch.Generator().manual_seed(0))
    assert out["views"].shape == (3, 3, 24, 24) and out["label"] == 1
    multi_crop = aug("multi_crop", {"global_size": 24, "local_size": 12, "local_crops": 6})
    crops = multi_crop(sample, torch.Generator().manual_seed(0))
    assert crops["global_views"].shape == (2, 3, 24, 24) and crops["local_views"].shape == (6, 3, 12, 12)
    none = aug("multi_crop", {"global_size": 24, "local_size": 12, "local_crops": 0})(sample, torch.Generator())
    assert none["local_views"].shape == (0, 3, 12, 12)
    from selfsup_vision.augment.options import MultiViewOptions
    from selfsup_vision.augment.views import preset_for

    assert preset_for(MultiViewOptions(size=8), 8).blur == 0.0  # tiny images: no blur
    assert preset_for(MultiViewOptions(size=224), 224).crop_scale == (0.08, 1.0)  # photos: SimCLR's crops


def test_augmentation_leaves_global_rng_untouched():
    t = aug("multi_view", {"size": 8})
    image = torch.rand(1, 8, 8)
    before = torch.get_rng_state()
    t({"image": image}, torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), before)


def test_crop_parameters_follow_torchvision_distribution():
    """Crops drawn from the per-sample generator follow torchvision's RandomResizedCrop rules: the
    same area-fraction and aspect-ratio distribution (means within 0.02 over 4,000 draws each)."""
    from torchvision.transforms import v2

    from selfsup_vision.augment.transforms import RandomResizedCrop

    scale, ratio, n = (0.2, 1.0), (3 / 4, 4 / 3), 4000
    ours = RandomResizedCrop(16, scale, ratio)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    image = torch.zeros(1, 32, 48)
    mine, theirs = [], []
    for _ in range(n):
        top, left, h, w = ours.params(32, 48, g)
        assert 0 <= top <= 32 - h and 0 <= left <= 48 - w
        mine.append((h * w / (32 * 48), w / h))
        _, _, h, w = v2.RandomResizedCrop.get_params(image, list(scale), list(ratio))
        theirs.append((h * w / (32 * 48), w / h))
    mine_t, theirs_t = torch.tensor(mine), torch.tensor(theirs)
    assert (mine_t[:, 0] >= scale[0] - 0.02).all() and (mine_t[:, 0] <= 1.0).all()
    assert torch.allclose(mine_t.mean(0), theirs_t.mean(0), atol=0.02), (mine_t.mean(0), theirs_t.mean(0))


def test_color_jitter_factors_stay_in_range():
    """Brightness alone with strength 0.4 scales pixels by a factor in [0.6, 1.4], drawn per call."""
    from selfsup_vision.augment.transforms import ColorJitter

    jitter = ColorJitter(0.4, 0.0, 0.0, 0.0, p=1.0)
    g = torch.Generator().manual_seed(0)
    image = torch.full((1, 4, 4), 0.5)
    factors = torch.tensor([float(jitter(image, g)[0, 0, 0]) / 0.5 for _ in range(500)])
    assert factors.min() >= 0.6 - 1e-6 and factors.max() <= 1.4 + 1e-6
    assert factors.std() > 0.15  # uniform on [0.6, 1.4]: std 0.23


def test_jitter_orders_are_uniform_permutations():
    """The four colour ops come in each of their 24 orders about equally often (4,800 draws)."""
    from collections import Counter

    from selfsup_vision.augment.transforms import ColorJitter

    jitter, g = ColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0), torch.Generator().manual_seed(0)
    orders = Counter(tuple(name for name, _ in jitter.draw(g, (3, 4, 4))) for _ in range(4800))
    assert len(orders) == 24 and min(orders.values()) > 140 and max(orders.values()) < 260, orders


@pytest.mark.parametrize(("shape", "size"), [((1, 8, 8), 8), ((1, 8, 8), 4), ((3, 32, 48), 16), ((3, 300, 200), 64),
                                             ((3, 40, 40), 96)])
def test_batched_views_equal_torchvision_image_by_image(shape, size):
    """Every step of a photo view (crop and resize, flip, colour jitter with hue, grayscale, blur,
    solarize, normalise) on a stack of images, each with its own parameters, equals the
    ``torchvision.transforms.v2.functional`` ops applied image by image: shrinking crops
    (antialiased), enlarging ones, grey and RGB images."""
    from selfsup_vision.augment.options import MultiViewOptions
    from selfsup_vision.augment.transforms import transform_many
    from selfsup_vision.augment.views import view_transform

    o = MultiViewOptions(size=size, preset="photo", solarize=0.3, blur=0.5, mean=[0.5] * shape[0])
    step = view_transform(o, size, (0.08, 1.0)).step
    images = [torch.rand(shape, generator=torch.Generator().manual_seed(i)) for i in range(24)]
    params = [step.draw(torch.Generator().manual_seed(100 + i), shape) for i in range(24)]
    crops = {p[0][2:] for p in params}
    assert len(crops) > 10 and any(h > size for h, _ in crops) == (shape[1] > size)
    one_by_one = torch.stack([step.apply(image, p) for image, p in zip(images, params)])
    torch.testing.assert_close(torch.stack(transform_many(step, images, params)), one_by_one)
