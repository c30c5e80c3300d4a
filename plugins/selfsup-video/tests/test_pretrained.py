"""Pretrained weights for the video backbones (issue 21), offline through the real loading paths: framewise's
timm frame encoder from a timm tag in the Hugging Face Hub cache (compared with timm's own loading of the same
file), r2plus1d from a selfsup export published as an hf: repository, video_vit from a local safetensors file."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file

from selfsup.components import BuildContext
from selfsup.lib.pretrained import PretrainedMismatch, WeightsNotCached
from selfsup.testing.hub import hub_cache_repo


@pytest.fixture
def caches(selfsup_weight_caches):
    """Empty Hugging Face (``<tmp>/hf``) and torch hub (``<tmp>/torch``) caches; downloads off."""
    return selfsup_weight_caches


def build(name, options, **context):
    return BuildContext(name=name, **context).build("backbones", name, options)


def saved(module):
    return {k: v.contiguous() for k, v in module.state_dict().items()}


def test_framewise_timm_tag_loads_like_timm(caches):
    import timm

    torch.manual_seed(1)
    source = timm.create_model("test_convnext", num_classes=1000).state_dict()  # a "published" tag, with its head
    snapshot = hub_cache_repo(caches / "hf", "timm/test_convnext.r160_in1k", {"model.safetensors": source})
    net = build("framewise", {"pretrained": "timm:test_convnext.r160_in1k"}).eval()  # name: the tag's; in_chans 1
    own = net.encoder.model.state_dict()
    assert set(own) == {k for k in source if not k.startswith("head.fc.")}  # the classifier is dropped
    stem = "stem.0.weight"
    assert torch.allclose(own[stem], source[stem].sum(dim=1, keepdim=True))  # 3 -> 1 channel: summed
    assert all(torch.equal(v, source[k]) for k, v in own.items() if k != stem)
    reference = timm.create_model("test_convnext", pretrained=True, num_classes=0, in_chans=1,
                                  pretrained_cfg_overlay=dict(file=str(snapshot / "model.safetensors"))).eval()
    video = torch.rand(2, 3, 1, 32, 32)  # [B, T, C, H, W]
    with torch.no_grad():
        torch.testing.assert_close(net.frame_features(video), reference(video.flatten(0, 1)).reshape(2, 3, -1))
    record = net.pretrained_record  # on the backbone itself: the run's pretrained.json reads it there
    digest = hashlib.sha256((snapshot / "model.safetensors").read_bytes()).hexdigest()
    assert record["spec"] == "timm:test_convnext.r160_in1k" and record["files"]["model.safetensors"]["sha256"] == digest


def test_framewise_refuses_pretrained_with_share_and_a_disagreeing_name(caches):
    with pytest.raises(ValueError, match=r"pretrained.*with share = 'image' the shared backbone"):
        build("framewise", {"share": "image", "pretrained": "timm:test_convnext.r160_in1k"})
    with pytest.raises(ValueError, match=r"name = 'resnet18' disagrees with pretrained"):
        build("framewise", {"name": "resnet18", "pretrained": "timm:test_convnext.r160_in1k"})
    with pytest.raises(WeightsNotCached, match=r"selfsup fetch timm:test_convnext.r160_in1k"):
        build("framewise", {"pretrained": "timm:test_convnext.r160_in1k"})


def test_r2plus1d_from_a_selfsup_export_on_the_hub(caches):
    options = {"widths": [4, 8]}
    torch.manual_seed(2)
    source = build("r2plus1d", options).eval()
    manifest = {"format": "selfsup-export", "type": "r2plus1d", "options": options, "weights": "backbone.safetensors"}
    hub_cache_repo(caches / "hf", "org/r2p1d", {"backbone.safetensors": saved(source),
                                                "selfsup.json": json.dumps(manifest).encode()})
    net = build("r2plus1d", {**options, "pretrained": "hf:org/r2p1d"}).eval()
    video = torch.rand(2, 4, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(video), source(video))
    assert net.pretrained_record["load"]["matched"] == len(source.state_dict())
    with pytest.raises(PretrainedMismatch, match=r"shape mismatches"):
        build("r2plus1d", {"widths": [4, 16], "pretrained": "hf:org/r2p1d"})
    with pytest.raises(ValueError, match=r"an export of a 'r2plus1d' backbone, not 'video_vit'"):
        build("video_vit", {"dim": 16, "depth": 1, "heads": 2, "pretrained": "hf:org/r2p1d"})


def test_video_vit_from_a_safetensors_file_strict_or_not(caches, tmp_path):
    options = {"dim": 16, "depth": 1, "heads": 2, "patch_size": 4, "tube_frames": 2}
    torch.manual_seed(3)
    source = build("video_vit", options).eval()
    save_file(saved(source), str(tmp_path / "vit.safetensors"))
    net = build("video_vit", {**options, "pretrained": "vit.safetensors"}, base_dir=tmp_path).eval()  # relative
    video = torch.rand(2, 4, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(video), source(video))
    deeper = {**options, "depth": 2, "pretrained": str(tmp_path / "vit.safetensors")}
    with pytest.raises(PretrainedMismatch, match=r"backbone keys missing from it: blocks\.1\."):
        build("video_vit", deeper)
    partial = build("video_vit", {**deeper, "pretrained_strict": False})
    assert any(k.startswith("blocks.1.") for k in partial.pretrained_record["load"]["missing"])
    assert torch.equal(partial.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    with pytest.raises(ValueError, match=r"video_vit takes a local file or folder or hf:org/name"):
        build("video_vit", {**options, "pretrained": "timm:vit_tiny_patch16_224.augreg_in21k"})


def test_trained_weights_next_skip_the_pretrained_ones(caches):
    """A resume, eval or export (BuildContext.load_weights False) builds the architecture the weights name
    without reading them (not even cached here)."""
    net = build("framewise", {"pretrained": "timm:test_convnext.r160_in1k"}, load_weights=False)
    assert type(net.encoder.model).__name__ == "ConvNeXt" and not hasattr(net, "pretrained_record")
    vit = build("video_vit", {"dim": 16, "depth": 1, "heads": 2, "pretrained": "hf:org/none"}, load_weights=False)
    assert not hasattr(vit, "pretrained_record")
