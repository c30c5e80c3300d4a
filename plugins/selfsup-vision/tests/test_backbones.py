"""Image backbones: conformance, timm models by name, small-image stem, clear errors."""

from __future__ import annotations

import pytest
import torch

from selfsup.components import BuildContext
from selfsup.plugins import get_plugin_manager
from selfsup.testing import BackboneConformance

DIGITS = ("digits", {"split": "val", "limit": 4})


def backbone(name, options):
    return get_plugin_manager().registry.get("backbone", name).build(options, BuildContext(name=name))


#: Why the load options change nothing in the suites' base options (no pretrained weights there).
NO_WEIGHTS = "no pretrained weights in the base options (the pretrained variant loads fitting ones)"
LOAD_INERT = {"pretrained_strict": NO_WEIGHTS, "pretrained_download": NO_WEIGHTS}


class TestSmallCNN(BackboneConformance):
    backbone = ("small_cnn", {"widths": [8, 16]})
    data = DIGITS
    bad_options = [{"widths": []}, {"widths": [8, 0]}, {"norm": "layer"}, {"pretrained": "missing/weights.pt"},
                   {"pretrained": "timm:resnet18.a1_in1k"}]
    inert_options = LOAD_INERT

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _weights(cls, tmp_path_factory):
        from selfsup_vision.backbones.options import SmallCNNOptions
        from selfsup_vision.backbones.small_cnn import SmallCNN

        torch.manual_seed(123)
        path = tmp_path_factory.mktemp("cnn") / "cnn.pt"
        torch.save(SmallCNN(SmallCNNOptions(widths=[8, 16])).state_dict(), path)
        cls.option_variants = {**cls.option_variants, "pretrained": str(path)}


def _other_weights(tmp_path_factory, name: str, options: dict) -> str:
    """A timm checkpoint for ``name`` with ``options``, initialised from another seed (the options
    check's ``pretrained`` variant: loading it must change the features)."""
    import timm

    torch.manual_seed(123)
    path = tmp_path_factory.mktemp("timm") / f"{name}.pth"
    torch.save(timm.create_model(name, pretrained=False, num_classes=0, **options).state_dict(), path)
    return str(path)


class TestTimmResNet(BackboneConformance):
    backbone = ("timm", {"name": "resnet18", "in_chans": 1, "small_image_stem": True})
    data = ("digits", {"split": "val", "limit": 4, "size": 32})  # batch-norm at batch 1 needs > 1x1 maps
    bad_options = [{"name": "resnet18", "in_chans": 0}, {}, {"name": "resnet34", "pretrained": "timm:resnet18.a1_in1k"},
                   {"name": "resnet18", "pretrained": "torchaudio:HUBERT_BASE"}]
    option_variants = {"kwargs": {"global_pool": "max"}}
    inert_options = LOAD_INERT

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _checkpoint(cls, tmp_path_factory):
        path = _other_weights(tmp_path_factory, "resnet18", {"in_chans": 1})
        cls.option_variants = {**cls.option_variants, "pretrained": path}


class TestTimmViT(BackboneConformance):
    backbone = ("timm", {"name": "vit_tiny_patch16_224", "in_chans": 1, "img_size": 8, "patch_size": 4})
    data = DIGITS
    option_variants = {"kwargs": {"depth": 2}}
    inert_options = {"pretrained": "not varied here: TestTimmResNet loads weights", **LOAD_INERT}


def test_small_image_stem_keeps_resolution():
    stem = backbone("timm", {"name": "resnet18", "in_chans": 3, "small_image_stem": True})
    plain = backbone("timm", {"name": "resnet18", "in_chans": 3})
    x = torch.rand(2, 3, 32, 32)
    assert stem.model.forward_features(x).shape[-1] == 4 and plain.model.forward_features(x).shape[-1] == 1
    assert stem.output_dim == plain.output_dim == 512


def test_unknown_timm_model_suggests_names():
    with pytest.raises(ValueError, match=r"timm has no model 'resnet181'; did you mean .*resnet18"):
        backbone("timm", {"name": "resnet181"})


def test_small_stem_on_a_vit_is_rejected():
    with pytest.raises(ValueError, match="small_image_stem applies to ResNet-style models"):
        backbone("timm", {"name": "vit_tiny_patch16_224", "small_image_stem": True, "img_size": 32})


TIMM_LOADER = """
import json, sys
sys.modules["selfsup"] = sys.modules["selfsup_vision"] = None  # the export must load without selfsup
import timm, torch
folder = sys.argv[1]
config = json.load(open(folder + "/config.json"))
model = timm.create_model(config["architecture"], pretrained=True,
                          pretrained_cfg_overlay=dict(file=folder + "/model.safetensors"), **config["model_args"])
torch.manual_seed(0)
print(json.dumps(model.eval()(torch.randn(2, 1, 8, 8)).tolist()))
"""


@pytest.mark.parametrize("options", [{"name": "resnet18", "in_chans": 1},
                                     {"name": "vit_tiny_patch16_224", "in_chans": 1, "img_size": 8, "patch_size": 4}])
def test_timm_export_loads_in_plain_timm(options, tmp_path):
    import json
    import subprocess
    import sys

    b = backbone("timm", options).eval()
    assert list(b.export_formats()) == ["timm"]
    b.export_formats()["timm"](tmp_path / "x")
    res = subprocess.run([sys.executable, "-c", TIMM_LOADER, str(tmp_path / "x")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    torch.manual_seed(0)
    with torch.no_grad():
        expected = b(torch.randn(2, 1, 8, 8))
    assert torch.allclose(torch.tensor(json.loads(res.stdout)), expected, atol=1e-5)
    with pytest.raises(ValueError, match="small_image_stem ResNet is not a timm architecture"):
        backbone("timm", {"name": "resnet18", "in_chans": 1, "small_image_stem": True}).export_timm(tmp_path / "y")
