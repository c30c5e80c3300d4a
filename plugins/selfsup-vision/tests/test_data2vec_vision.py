"""The timm ViT as a LayerwiseMaskedEncoder for the core's data2vec: BEiT block masks, the mask token,
per-block outputs; conformance of data2vec on it, and a short end-to-end run against random init."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import default_collate

from selfsup.components import BuildContext, LayerwiseMaskedEncoder
from selfsup.plugins import get_plugin_manager
from selfsup.testing import TaskConformance, train_against_random_init
from selfsup_vision.backbones.masking import block_mask

VIT = {"name": "vit_tiny_patch16_224", "in_chans": 1, "img_size": 16, "patch_size": 4,
       "kwargs": {"embed_dim": 32, "depth": 3, "num_heads": 2, "global_pool": "avg"}}
DIGITS16 = ("digits", {"limit": 64, "size": 16})


def build(kind, name, options, **context):
    return get_plugin_manager().registry.get(kind, name).build(options, BuildContext(name=name, **context))


def vit(**kwargs):
    torch.manual_seed(0)
    return build("backbone", "timm", {**VIT, "kwargs": {**VIT["kwargs"], **kwargs}})


def digits(n=8):
    source = build("data_source", *DIGITS16)
    return default_collate([source[i] for i in range(n)])


@pytest.mark.parametrize("grid,ratio,min_block", [((4, 4), 0.6, 1), ((14, 14), 0.6, 16), ((14, 14), 0.4, 16),
                                                  ((6, 8), 0.5, 4)])
def test_block_masks_cover_about_the_ratio_in_blocks(grid, ratio, min_block):
    g = torch.Generator().manual_seed(0)
    mask = block_mask(64, grid, ratio, min_block, g)  # [B, L]
    n = grid[0] * grid[1]
    assert mask.shape == (64, n) and mask.dtype == torch.bool
    share = mask.float().mean(1)
    assert (share > 0).all() and (share <= round(ratio * n) / n + 1e-6).all()  # never above the goal
    assert abs(float(share.mean()) - ratio) < 0.12, float(share.mean())
    if min_block > 1:  # blocks, not scattered patches: most masked patches have a masked 4-neighbour
        m = mask.reshape(64, *grid)
        neighbour = torch.zeros_like(m)
        neighbour[:, 1:] |= m[:, :-1]
        neighbour[:, :-1] |= m[:, 1:]
        neighbour[:, :, 1:] |= m[:, :, :-1]
        neighbour[:, :, :-1] |= m[:, :, 1:]
        assert float((m & neighbour).sum() / m.sum()) > 0.9
    assert torch.equal(block_mask(64, grid, ratio, min_block, torch.Generator().manual_seed(0)), mask)
    assert len({tuple(row.tolist()) for row in mask}) > 1


def test_vit_implements_the_protocol_and_its_blocks_are_timms():
    backbone = vit()
    assert isinstance(backbone, LayerwiseMaskedEncoder)
    batch = digits()
    mask = backbone.masked_positions(batch, torch.Generator().manual_seed(1))
    assert mask.shape == (8, 16) and mask.any(1).all()
    backbone.eval()
    layers, padding = backbone.encode_layers(batch)
    assert padding is None and len(layers) == 3 and all(h.shape == (8, 16, 32) for h in layers)
    with torch.no_grad():  # global_pool avg: timm's final norm is the identity, fc_norm acts after pooling
        expected = backbone.model.forward_features(batch["image"])[:, backbone.model.num_prefix_tokens:]
    torch.testing.assert_close(layers[-1], expected)


def test_masked_patches_are_replaced_by_the_mask_token():
    backbone = vit().eval()
    batch = digits(4)
    mask = backbone.masked_positions(batch, torch.Generator().manual_seed(2))  # [B, 16]
    with pytest.raises(ValueError, match="no mask token"):
        backbone.encode_layers(batch, mask)
    backbone.prepare_masking()
    token = backbone.mask_token
    backbone.prepare_masking()
    assert backbone.mask_token is token, "prepare_masking makes the token once"
    masked, _ = backbone.encode_layers(batch, mask)
    # the pixels of masked patches no longer matter: change them all
    changed = {**batch, "image": batch["image"].clone()}
    patches = mask.reshape(4, 4, 4).repeat_interleave(4, 1).repeat_interleave(4, 2)  # [B, 16, 16] pixel mask
    changed["image"][:, 0][patches] = 5.0
    again, _ = backbone.encode_layers(changed, mask)
    torch.testing.assert_close(again[-1], masked[-1])
    assert not torch.allclose(backbone.encode_layers(changed)[0][-1], backbone.encode_layers(batch)[0][-1])
    masked[-1].sum().backward()
    assert backbone.mask_token.grad is not None and backbone.mask_token.grad.abs().sum() > 0


def test_mask_token_does_not_block_loading_weights_with_or_without_it():
    plain, trained = vit(), vit()
    trained.prepare_masking()
    plain.load_state_dict(trained.state_dict())  # a fine-tuning ViT from a data2vec run: token dropped
    assert plain.mask_token is None
    other = vit()
    other.prepare_masking()
    kept = other.mask_token.detach().clone()
    other.load_state_dict(vit().state_dict())  # a data2vec ViT from weights without one: keeps its own
    assert torch.equal(other.mask_token.detach(), kept)


def test_data2vec_refuses_a_resnet_and_a_cnn():
    resnet = build("backbone", "timm", {"name": "resnet18", "in_chans": 1})
    with pytest.raises(ValueError, match="VisionTransformer"):
        build("pretext_task", "data2vec", {}, backbone=resnet)
    cnn = build("backbone", "small_cnn", {"widths": [8]})
    with pytest.raises(ValueError, match="has no masked_positions or encode_layers: data2vec needs a transformer"):
        build("pretext_task", "data2vec", {}, backbone=cnn)


class TestData2VecViTConformance(TaskConformance):
    task = "data2vec"
    task_options = {"top_k": 2, "loss": "smooth_l1", "beta": 0.5, "mask_length": 2, "mask_prob": 0.5}
    data = DIGITS16
    augment = [("horizontal_flip", {"p": 0.5})]
    backbone = ("timm", VIT)
    bad_options = [{"top_k": 0}, {"mask_prob": 1.0}, {"loss": "l1"}, {"final_momentum": 2.0}]
    inert_options = {
        "final_momentum": "the suite runs no optimizer update, so the teacher never moves",
        "ramp_steps": "the suite runs no optimizer update, so the teacher never moves",
    }
    option_variants = {"mask_prob": 0.2, "mask_length": 6, "beta": 0.05}


def test_shortened_quickstart_beats_random_init(tmp_path, one_thread):
    """data2vec-digits cut to 8 epochs at batch 32 (352 steps): held-out kNN accuracy of the trained
    ViT beats the same ViT at its random initialisation by at least 5 points (measured: 0.476 vs
    0.390; at 4 epochs only 0.418: the margin grows slowly, 0.535 after the full recipe)."""
    trained, random_init = train_against_random_init(
        "data2vec-digits", tmp_path / "run", ["train.epochs=8", "train.batch_size=32"], evaluators=["knn"]
    )
    assert trained["knn/accuracy"] > random_init["knn/accuracy"] + 0.05, (trained, random_init)
