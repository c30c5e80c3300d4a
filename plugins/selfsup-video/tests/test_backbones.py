"""Video backbones: conformance, shapes, per-frame features, order sensitivity, sharing an image backbone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from selfsup.components import BuildContext
from selfsup.testing import BackboneConformance

CLIPS = ("moving_mnist", {"split": "val", "n": 4, "frames": 4, "size": 16, "digit_size": 8})
CLIPS32 = ("moving_mnist", {"split": "val", "n": 4, "frames": 4, "size": 32})  # timm's test models downsample 32x


def build(name, options, **context):
    return BuildContext(name=name, **context).build("backbones", name, options)


#: Why the load options change nothing in the suites' base options (no pretrained weights there).
NO_WEIGHTS = "no pretrained weights in the base options (the pretrained variant loads fitting ones)"
LOAD_INERT = {"pretrained_strict": NO_WEIGHTS, "pretrained_download": NO_WEIGHTS}


def _other_weights(tmp_path_factory, name: str, options: dict) -> str:
    """Weights of backbone ``name`` with ``options`` from another seed (the ``pretrained`` variant)."""
    torch.manual_seed(123)
    path = tmp_path_factory.mktemp(name) / "weights.pt"
    torch.save(build(name, options).state_dict(), path)
    return str(path)


def _timm_weights(tmp_path_factory, name: str, **options) -> str:
    import timm

    torch.manual_seed(123)
    path = tmp_path_factory.mktemp("timm") / f"{name}.pth"
    torch.save(timm.create_model(name, pretrained=False, num_classes=0, **options).state_dict(), path)
    return str(path)


class TestR2Plus1D(BackboneConformance):
    backbone = ("r2plus1d", {"widths": [4, 8]})
    data = CLIPS
    bad_options = [{"widths": []}, {"widths": [4, 0]}, {"temporal_kernel": 2}, {"conv": "2d"}, {"norm": "layer"},
                   {"pretrained": "timm:resnet18.a1_in1k"}]
    inert_options = LOAD_INERT

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _weights(cls, tmp_path_factory):
        cls.option_variants = {"pretrained": _other_weights(tmp_path_factory, "r2plus1d", {"widths": [4, 8]})}


class TestFramewiseAttention(BackboneConformance):
    backbone = ("framewise", {"name": "test_convnext", "fusion": "attention", "frames": 4})
    data = CLIPS32
    bad_options = [{"fusion": "max"}, {"kwargs": {"num_classes": 3}}, {"share": "image", "name": "resnet18"},
                   {"frames": 0}, {"share": "image", "pretrained": "timm:resnet18.a1_in1k"},
                   {"name": "resnet34", "pretrained": "timm:resnet18.a1_in1k"}]
    option_variants = {"name": "test_efficientnet", "kwargs": {"drop_rate": 0.5}, "in_chans": 3,
                       "attention_heads": 4, "share": "image"}  # share: no backbone 'image' here, the build raises
    inert_options = LOAD_INERT

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _weights(cls, tmp_path_factory):
        path = _timm_weights(tmp_path_factory, "test_convnext", in_chans=1)
        cls.option_variants = {**cls.option_variants, "pretrained": path}


class TestFramewiseConcat(BackboneConformance):
    backbone = ("framewise", {"name": "test_convnext", "fusion": "concat", "frames": 4})
    data = CLIPS32
    option_variants = {"name": "test_efficientnet", "kwargs": {"drop_rate": 0.5}, "in_chans": 3, "share": "image"}
    inert_options = {"attention_layers": "concat fusion has no attention", "attention_heads": "concat fusion has no "
                     "attention", "pretrained": "not varied here: TestFramewiseAttention loads weights", **LOAD_INERT}


class TestVideoViT(BackboneConformance):
    backbone = ("video_vit", {"dim": 16, "depth": 1, "heads": 2, "patch_size": 4, "tube_frames": 2})
    data = CLIPS
    bad_options = [{"dim": 12}, {"dim": 16, "heads": 3}, {"patch_size": 0}]
    inert_options = LOAD_INERT

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _weights(cls, tmp_path_factory):
        options = {"dim": 16, "depth": 1, "heads": 2, "patch_size": 4, "tube_frames": 2}
        cls.option_variants = {"pretrained": _other_weights(tmp_path_factory, "video_vit", options)}


# ------------------------------------------------------------------------------------ shapes and order


@pytest.mark.parametrize("conv", ["2plus1d", "3d"])
def test_r2plus1d_shapes_and_per_frame_features(conv):
    torch.manual_seed(0)
    net = build("r2plus1d", {"widths": [4, 8, 8], "conv": conv}).eval()
    video = torch.rand(2, 5, 1, 16, 16)
    assert net(video).shape == (2, 8) and net.output_dim == 8
    frames = net.frame_features(video)
    assert frames.shape == (2, 5, 8)  # temporal stride 1: one feature per input frame
    torch.testing.assert_close(frames.mean(1), net(video))  # the pooled features are their mean (same h x w)


def test_r2plus1d_factorisation_matches_3d_parameters():
    """Tran et al.'s M_i keeps a (2+1)D pair's parameters close to the full 3D conv's."""
    from selfsup_video.backbones.r2plus1d import SpatioTemporalConv, mid_channels

    assert mid_channels(64, 64, 3, 3) == (3 * 9 * 64 * 64) // (9 * 64 + 3 * 64) == 144
    count = {conv: sum(p.numel() for p in SpatioTemporalConv(32, 32, t=3, conv=conv, norm="none").parameters())
             for conv in ("2plus1d", "3d")}
    assert abs(count["2plus1d"] - count["3d"]) / count["3d"] < 0.05, count


def test_framewise_mean_is_order_blind_and_attention_is_not():
    torch.manual_seed(0)
    video = torch.rand(2, 4, 1, 32, 32)
    shuffled = video[:, [2, 0, 3, 1]]
    mean = build("framewise", {"name": "test_convnext"}).eval()
    attention = build("framewise", {"name": "test_convnext", "fusion": "attention", "frames": 4}).eval()
    with torch.no_grad():
        assert mean.order_blind and not attention.order_blind
        torch.testing.assert_close(mean(video), mean(shuffled))
        assert not torch.allclose(attention(video), attention(shuffled), atol=1e-4)
        assert mean.frame_features(video).shape == (2, 4, mean.frame_dim)


def test_framewise_concat_needs_its_clip_length():
    net = build("framewise", {"name": "test_convnext", "fusion": "concat", "frames": 4})
    assert net.output_dim == 4 * net.frame_dim
    with pytest.raises(ValueError, match="exactly frames = 4"):
        net(torch.rand(1, 3, 1, 32, 32))


def test_framewise_difference_embeds_the_changes_between_frames():
    torch.manual_seed(0)
    net = build("framewise", {"name": "test_convnext", "fusion": "difference", "frames": 4}).eval()
    assert net.output_dim == 3 * net.frame_dim and not net.order_blind
    video = torch.rand(2, 4, 1, 32, 32)
    with torch.no_grad():
        f = net.frame_features(video)  # [2, 4, F]
        torch.testing.assert_close(net(video), torch.cat([f[:, 1] - f[:, 0], f[:, 2] - f[:, 1], f[:, 3] - f[:, 2]], 1))
        still = video[:, :1].expand(-1, 4, -1, -1, -1)  # a clip that does not move embeds to zero
        assert net(still).abs().max() < 1e-5
    with pytest.raises(ValueError, match="difference fusion needs clips of exactly frames = 4"):
        net(torch.rand(1, 5, 1, 32, 32))


class _ImageNet(nn.Module):
    """A stand-in image backbone: [N, C, H, W] -> [N, 6]."""

    output_dim = 6

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


def test_framewise_shares_the_image_backbone_module():
    image = _ImageNet()
    video = build("framewise", {"share": "image", "fusion": "attention", "frames": 4, "attention_heads": 2},
                  backbones={"image": image})
    assert video.encoder is image and video.frame_dim == 6
    model = nn.ModuleDict({"image": image, "video": video})
    names = [n for n, _ in model.named_parameters()]
    assert sum(n.startswith("image.conv") for n in names) == 2 and not any("encoder.conv" in n for n in names)
    video(torch.rand(2, 4, 1, 8, 8)).sum().backward()
    assert image.conv.weight.grad is not None  # the video loss reaches the shared weights
    with pytest.raises(ValueError, match="no backbone of that name is defined before"):
        build("framewise", {"share": "missing"}, backbones={"image": image})


def test_framewise_refuses_sizes_with_a_shared_backbone():
    from pydantic import ValidationError

    from selfsup_video.backbones.options import FramewiseOptions

    with pytest.raises(ValidationError, match="share"):
        FramewiseOptions(share="image", name="resnet18")


def test_video_vit_tubes_round_trip_and_positions():
    from selfsup_video.backbones.video_vit import sincos_positions_3d

    torch.manual_seed(0)
    vit = build("video_vit", {"dim": 16, "depth": 1, "heads": 2, "patch_size": 4, "tube_frames": 2})
    video = torch.rand(2, 4, 1, 8, 12)
    assert vit.grid(video) == (2, 2, 3)
    patches = vit.patchify(video)
    assert patches.shape == (2, 12, 2 * 4 * 4)
    # token (time 1, row 0, col 2): frames 2-3, rows 0-4, cols 8-12, pixels in (frame, row, col, channel) order
    block = video[:, 2:4, :, 0:4, 8:12].permute(0, 1, 3, 4, 2).reshape(2, -1)
    assert torch.equal(patches[:, 1 * 6 + 0 * 3 + 2], block)
    assert torch.equal(vit.unpatchify(patches, (2, 2, 3)), video)
    pos = sincos_positions_3d(16, (2, 2, 3))
    assert pos.shape == (12, 16) and len({tuple(p.tolist()) for p in pos}) == 12  # every token its own position
    assert vit(video).shape == (2, 16)
    visible = torch.tensor([[0, 5, 7], [1, 2, 11]])
    assert vit.encode_visible(video, visible).shape == (2, 3, 16)
    with pytest.raises(ValueError, match="not divisible into tubes"):
        vit(torch.rand(1, 3, 1, 8, 8))
