"""Pretrained weights for the image backbones (issue 21), through the real loading paths, offline: weights made
here and put where the libraries cache downloads (the Hugging Face Hub cache for timm tags and hf: repos,
torch hub's for torchvision), then compared with what timm itself loads from the same file."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch
from pydantic import ValidationError

from selfsup.components import BuildContext
from selfsup.lib.pretrained import PretrainedMismatch, WeightsNotCached
from selfsup.plugins import get_plugin_manager
from selfsup.testing.hub import hub_cache_repo, torch_hub_file


@pytest.fixture
def caches(selfsup_weight_caches):
    """Empty Hugging Face (``<tmp>/hf``) and torch hub (``<tmp>/torch``) caches; downloads off."""
    return selfsup_weight_caches


def backbone(name, options, base_dir=None):
    if base_dir is not None:  # options validated against the recipe's folder, as the core does
        return BuildContext(name=name, base_dir=base_dir).build("backbones", name, options)
    return get_plugin_manager().registry.get("backbone", name).build(options, BuildContext(name=name))


def timm_state(name, seed=1, **kwargs):
    import timm

    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False, **kwargs).state_dict()


def timm_reference(name, file, **kwargs):
    """What timm itself builds from ``file``: its own pretrained-loading path, classifier dropped."""
    import timm

    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(file)), num_classes=0,
                             **kwargs).eval()


def same_outputs(a, b, x):
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------ timm tags


def test_timm_tag_loads_from_the_hub_cache_as_timm_does(caches):
    source = timm_state("resnet18", num_classes=1000)  # a "published" resnet18.a1_in1k, classifier included
    snapshot = hub_cache_repo(caches / "hf", "timm/resnet18.a1_in1k", {"model.safetensors": source})
    b = backbone("timm", {"pretrained": "timm:resnet18.a1_in1k"})  # name omitted: the tag's architecture
    own = b.model.state_dict()
    assert set(own) == set(source) - {"fc.weight", "fc.bias"}  # the classifier is dropped
    for key, value in own.items():
        assert torch.equal(value, source[key]), key
    same_outputs(b, timm_reference("resnet18", snapshot / "model.safetensors"), torch.rand(2, 3, 32, 32))
    record = b.pretrained_record
    digest = hashlib.sha256((snapshot / "model.safetensors").read_bytes()).hexdigest()
    assert record["spec"] == "timm:resnet18.a1_in1k" and record["files"]["model.safetensors"]["sha256"] == digest
    assert record["revision"] == snapshot.name and record["load"]["unexpected"] == []
    assert b.model.pretrained_cfg["tag"] == "a1_in1k"  # built as the tag: its mean, std, input size


def test_timm_tag_adapts_in_chans_and_agrees_with_name(caches):
    source = timm_state("resnet18", num_classes=1000)
    snapshot = hub_cache_repo(caches / "hf", "timm/resnet18.a1_in1k", {"model.safetensors": source})
    b = backbone("timm", {"name": "resnet18", "pretrained": "timm:resnet18.a1_in1k", "in_chans": 1})
    assert torch.allclose(b.model.conv1.weight, source["conv1.weight"].sum(dim=1, keepdim=True))
    same_outputs(b, timm_reference("resnet18", snapshot / "model.safetensors", in_chans=1), torch.rand(2, 1, 32, 32))
    with pytest.raises(ValidationError, match=r"name = 'resnet34' disagrees with pretrained = "
                                              r"'timm:resnet18.a1_in1k'.*set it to 'resnet18'"):
        backbone("timm", {"name": "resnet34", "pretrained": "timm:resnet18.a1_in1k"})


def test_vit_position_embeddings_are_resampled_for_another_image_size(caches):
    source = timm_state("test_vit", img_size=32, num_classes=10)  # grid 2x2 (patch 16): pos_embed [1, 1+4, E]
    snapshot = hub_cache_repo(caches / "hf", "timm/test_vit.r160_in1k", {"model.safetensors": source})
    b = backbone("timm", {"pretrained": "timm:test_vit.r160_in1k", "img_size": 64})  # grid 4x4
    assert b.model.pos_embed.shape[1] == 1 + 16 and source["pos_embed"].shape[1] == 1 + 4
    assert "head.weight" not in b.model.state_dict()
    assert torch.equal(b.model.blocks[0].attn.qkv.weight, source["blocks.0.attn.qkv.weight"])
    reference = timm_reference("test_vit", snapshot / "model.safetensors", img_size=64)
    assert torch.equal(b.model.pos_embed, reference.pos_embed)  # timm's own resampling
    same_outputs(b, reference, torch.rand(2, 3, 64, 64))


def test_not_cached_without_downloads_says_how_to_fetch(caches):
    with pytest.raises(WeightsNotCached, match=r"selfsup fetch timm:resnet18.a1_in1k"):
        backbone("timm", {"pretrained": "timm:resnet18.a1_in1k"})
    with pytest.raises(WeightsNotCached, match=r"selfsup fetch hf:org/tiny"):
        backbone("timm", {"name": "resnet18", "pretrained": "hf:org/tiny"})
    with pytest.raises(WeightsNotCached, match=r"selfsup fetch torchvision:ResNet18_Weights.IMAGENET1K_V1"):
        backbone("timm", {"pretrained": "torchvision:ResNet18_Weights.IMAGENET1K_V1"})


# ---------------------------------------------------------------------------------- torchvision


def test_torchvision_weights_load_into_timm_resnet(caches):
    from torchvision.models import ResNet18_Weights, resnet18

    torch.manual_seed(2)
    source = resnet18().state_dict()
    file = torch_hub_file(ResNet18_Weights.IMAGENET1K_V1.url, source)
    assert file.parent == caches / "torch" / "hub" / "checkpoints"
    b = backbone("timm", {"pretrained": "torchvision:ResNet18_Weights.IMAGENET1K_V1", "in_chans": 1})
    own = b.model.state_dict()
    assert set(own) == set(source) - {"fc.weight", "fc.bias"}
    assert torch.allclose(own["conv1.weight"], source["conv1.weight"].sum(dim=1, keepdim=True))
    for key in set(own) - {"conv1.weight"}:
        assert torch.equal(own[key], source[key]), key
    same_outputs(b, timm_reference("resnet18", file, in_chans=1), torch.rand(2, 1, 32, 32))
    assert b.pretrained_record["details"]["weights"] == "ResNet18_Weights.IMAGENET1K_V1"


def test_small_image_stem_replaces_the_loaded_stem_and_says_so(caches):
    from torchvision.models import ResNet18_Weights, resnet18

    source = resnet18().state_dict()
    torch_hub_file(ResNet18_Weights.IMAGENET1K_V1.url, source)
    b = backbone("timm", {"pretrained": "torchvision:resnet18.IMAGENET1K_V1", "small_image_stem": True})
    assert b.model.conv1.kernel_size == (3, 3) and isinstance(b.model.maxpool, torch.nn.Identity)
    assert torch.equal(b.model.layer1[0].conv1.weight, source["layer1.0.conv1.weight"])
    assert "small_image_stem" in b.pretrained_record["summary"]


# ------------------------------------------------------------------------------- strict or not


def test_strict_loading_names_the_keys_that_do_not_fit(caches):
    file = caches / "resnet34.safetensors"
    from safetensors.torch import save_file

    source = timm_state("resnet34", num_classes=0)
    save_file(source, str(file))
    with pytest.raises(PretrainedMismatch, match=r"keys the backbone does not have: layer1\.2\..*"
                                                 r"pretrained_strict = false"):
        backbone("timm", {"name": "resnet18", "pretrained": str(file)})
    b = backbone("timm", {"name": "resnet18", "pretrained": str(file), "pretrained_strict": False})
    load = b.pretrained_record["load"]
    assert "layer1.2.conv1.weight" in load["unexpected"] and load["missing"] == [] and load["mismatched"] == []
    assert torch.equal(b.model.layer4[1].conv2.weight, source["layer4.1.conv2.weight"])  # what matches, loaded


def test_hf_timm_repo_brings_its_architecture_and_model_args(caches, tmp_path):
    options = {"name": "test_vit", "in_chans": 1, "img_size": 16, "patch_size": 8}
    torch.manual_seed(3)
    source = backbone("timm", options)
    source.export_timm(tmp_path / "export")  # config.json + model.safetensors: timm's hub layout
    hub_cache_repo(caches / "hf", "org/tiny-vit", {p.name: p for p in (tmp_path / "export").iterdir()})
    b = backbone("timm", {"pretrained": "hf:org/tiny-vit"})  # architecture and sizes from config.json
    assert b.architecture == "test_vit" and b.model_args["in_chans"] == 1
    same_outputs(b, source, torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"name = 'resnet18' disagrees with pretrained = 'hf:org/tiny-vit', "
                                         r"which holds a 'test_vit'"):
        backbone("timm", {"name": "resnet18", "pretrained": "hf:org/tiny-vit"})


def test_hf_bare_state_dict_needs_a_name(caches):
    hub_cache_repo(caches / "hf", "org/bare", {"model.safetensors": timm_state("test_resnet", num_classes=0)})
    with pytest.raises(ValueError, match=r"name: not set, and pretrained = 'hf:org/bare' does not say"):
        backbone("timm", {"pretrained": "hf:org/bare"})
    b = backbone("timm", {"name": "test_resnet", "pretrained": "hf:org/bare"})
    assert b.pretrained_record["load"]["missing"] == []


def test_trained_weights_next_build_the_architecture_without_reading_weights(caches, tmp_path):
    """A resume, an eval of a checkpoint or an export (BuildContext.load_weights False) loads trained
    weights right after the build: nothing pretrained is read (these are not even cached here)."""
    later = BuildContext(name="timm", load_weights=False)
    b = later.build("backbones", "timm", {"pretrained": "timm:resnet18.a1_in1k", "in_chans": 1})
    assert b.architecture == "resnet18" and b.model.pretrained_cfg["tag"] == "a1_in1k"
    assert not hasattr(b, "pretrained_record")
    b = later.build("backbones", "timm", {"pretrained": "torchvision:ResNet50_Weights.IMAGENET1K_V2"})
    assert b.architecture == "resnet50" and not hasattr(b, "pretrained_record")
    torch.manual_seed(6)
    backbone("timm", {"name": "test_vit", "img_size": 16, "patch_size": 8}).export_timm(tmp_path / "export")
    hub_cache_repo(caches / "hf", "org/vit", {p.name: p for p in (tmp_path / "export").iterdir()})
    b = later.build("backbones", "timm", {"pretrained": "hf:org/vit"})  # its config names the architecture
    assert b.architecture == "test_vit" and b.model.patch_embed.patch_size == (8, 8)
    assert not hasattr(b, "pretrained_record")
    cnn = BuildContext(name="cnn", load_weights=False).build("backbones", "small_cnn", {"pretrained": "hf:org/none"})
    assert not hasattr(cnn, "pretrained_record")


def test_options_require_a_name_or_weights_that_name_one(tmp_path):
    with pytest.raises(ValidationError, match=r"name: required"):
        backbone("timm", {"in_chans": 1})
    (tmp_path / "w.pth").write_bytes(b"")
    with pytest.raises(ValidationError, match=r"name: required .*is a weights file"):
        backbone("timm", {"pretrained": str(tmp_path / "w.pth")})
    with pytest.raises(ValueError, match=r"timm has no model 'vit_b_16'; set name"):
        BuildContext(name="enc", load_weights=False).build("backbones", "timm",
                                                          {"pretrained": "torchvision:ViT_B_16_Weights.DEFAULT"})
    with pytest.raises(ValidationError, match=r"not torchaudio: weights"):
        backbone("timm", {"name": "resnet18", "pretrained": "torchaudio:HUBERT_BASE"})
    with pytest.raises(ValidationError, match=r"checkpoint"):  # the old option is gone: pretrained replaces it
        backbone("timm", {"name": "resnet18", "checkpoint": "w.pth"})


# -------------------------------------------------------------------------------------- small_cnn


def test_small_cnn_from_a_local_file_and_an_hf_export(caches, tmp_path):
    from safetensors.torch import save_file

    options = {"widths": [8, 16], "in_channels": 1}
    torch.manual_seed(4)
    source = backbone("small_cnn", options)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    save_file(state, str(tmp_path / "cnn.safetensors"))
    local = backbone("small_cnn", {**options, "pretrained": "cnn.safetensors"}, base_dir=tmp_path)  # relative
    manifest = {"format": "selfsup-export", "type": "small_cnn", "weights": "backbone.safetensors"}
    hub_cache_repo(caches / "hf", "org/cnn", {"backbone.safetensors": state,
                                              "selfsup.json": json.dumps(manifest).encode()})
    hub = backbone("small_cnn", {**options, "pretrained": "hf:org/cnn"})
    x = torch.rand(3, 1, 8, 8)
    same_outputs(local, source, x)
    same_outputs(hub, source, x)
    with pytest.raises(PretrainedMismatch, match=r"shape mismatches features\.0\.weight"):
        backbone("small_cnn", {"widths": [4, 16], "in_channels": 1, "pretrained": "hf:org/cnn"})


# ------------------------------------------------------------------------------------ end to end

RECIPE = """
seed = 0
output_dir = "{out}"

[data.train]
type = "digits"
options = {{ split = "train", limit = 64 }}

[augmentations.views]
type = "multi_view"
options = {{ views = 2, size = 8, crop_scale = [0.5, 1.0], flip = 0.0 }}

[backbones.cnn]
type = "small_cnn"
options = {{ widths = [8, 16], pretrained = "hf:org/cnn" }}

[tasks.simclr]
type = "simclr"
data = "train"
augment = ["views"]
backbone = "cnn"
options = {{ projection_hidden_dim = 16, projection_dim = 8 }}

[train]
batch_size = 32
max_steps = 2
log_every = 1
tensorboard = false
"""


def test_train_records_the_hub_weights_in_pretrained_json(caches, tmp_path):
    torch.manual_seed(5)
    state = {k: v.contiguous() for k, v in backbone("small_cnn", {"widths": [8, 16]}).state_dict().items()}
    snapshot = hub_cache_repo(caches / "hf", "org/cnn", {"model.safetensors": state})
    (tmp_path / "r.toml").write_text(RECIPE.format(out=tmp_path / "run"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", "SELFSUP_MLFLOW": "0"}
    res = subprocess.run([sys.executable, "-m", "selfsup", "train", "r.toml", "--no-progress"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "backbones.cnn: pretrained hf:org/cnn (" in res.stdout
    record = json.loads((tmp_path / "run" / "pretrained.json").read_text())["backbones"]["cnn"]
    digest = hashlib.sha256((snapshot / "model.safetensors").read_bytes()).hexdigest()
    assert record["files"]["model.safetensors"]["sha256"] == digest
    assert record["revision"] == snapshot.name and record["load"]["matched"] == len(state)
