"""VideoMAE: tube masks (same positions in every frame, exact ratio, seeded), normalised targets and
the masked loss against their formulas, the visible-only encoder, conformance, a short run."""

from __future__ import annotations

import pytest
import torch

from selfsup.components import BuildContext
from selfsup.testing import TaskConformance, train_against_random_init
from selfsup_video.tasks.videomae import masked_mse, normalised_targets, tube_mask

CLIPS = ("moving_mnist", {"split": "val", "n": 4, "frames": 4, "size": 16, "digit_size": 8})
VIT = {"dim": 16, "depth": 1, "heads": 2, "patch_size": 4, "tube_frames": 2}


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
def test_tube_mask_hides_the_same_positions_in_every_frame(ratio):
    grid = (3, 4, 5)
    mask = tube_mask(16, grid, ratio, torch.Generator().manual_seed(0))
    assert mask.shape == (16, 60) and mask.dtype == torch.bool
    per_time = mask.reshape(16, 3, 20)
    assert (per_time == per_time[:, :1]).all()  # tubes: the same spatial positions at every time
    assert (per_time[:, 0].sum(1) == round(ratio * 20)).all()
    assert len({tuple(m.tolist()) for m in per_time[:, 0]}) > 1  # clips differ
    again = tube_mask(16, grid, ratio, torch.Generator().manual_seed(0))
    assert torch.equal(mask, again)
    with pytest.raises(ValueError, match="visible"):
        tube_mask(1, (1, 2, 2), 0.99, torch.Generator())


def test_targets_normalise_each_tube_and_channel():
    patches = torch.rand(2, 3, 2 * 4 * 3)  # [B, L, t*p*p*C] with C = 3, channel last
    target = normalised_targets(patches, 3)
    for b in range(2):
        for tube in range(3):
            for c in range(3):
                x = patches[b, tube, c::3]  # the tube's 8 pixels of channel c
                expected = (x - x.mean()) / (x.std(unbiased=True) + 1e-6)
                torch.testing.assert_close(target[b, tube, c::3], expected)


def test_masked_mse_counts_masked_tokens_only():
    torch.manual_seed(0)
    pred, target = torch.randn(2, 6, 4), torch.randn(2, 6, 4)
    mask = torch.tensor([[1, 0, 1, 0, 0, 1], [0, 1, 1, 1, 0, 0]], dtype=torch.bool)
    expected = sum(((pred[b, i] - target[b, i]) ** 2).sum() for b in range(2) for i in range(6) if mask[b, i]) / (6 * 4)
    torch.testing.assert_close(masked_mse(pred, target, mask), expected)
    assert masked_mse(pred + 100 * (~mask)[:, :, None], target, mask) == masked_mse(pred, target, mask)


def _task(**options):
    torch.manual_seed(0)
    context = BuildContext(name="vmae", seed=2)
    vit = context.build("backbones", "video_vit", VIT)
    task = context.build("tasks", "videomae", {"decoder_dim": 16, "decoder_heads": 2, **options}, backbone=vit)
    return task, vit


def test_loss_matches_its_formula_and_ignores_visible_predictions():
    task, vit = _task()
    batch = {"video": torch.rand(2, 4, 1, 16, 16), "index": torch.tensor([3, 9])}
    task.on_step(4)
    out = task(batch, vit)
    grid = vit.grid(batch["video"])
    mask = tube_mask(2, grid, 0.9, task.generator(batch))  # the task's own draw
    visible = (~mask).nonzero()[:, 1].reshape(2, -1)
    with torch.no_grad():
        latent = vit.encode_visible(batch["video"], visible)
        pred = task.decode(latent, mask, grid)
        target = normalised_targets(vit.patchify(batch["video"]), 1)
    expected = ((pred - target) ** 2).mean(-1)[mask].mean()
    assert out.loss.item() == pytest.approx(float(expected), rel=1e-5)
    # the encoder saw only the visible tubes: changing masked pixels changes the target, not the latent
    hidden = vit.unpatchify(mask[:, :, None].float().expand(-1, -1, 32), grid).bool()  # [B, T, C, H, W]
    changed = torch.where(hidden, torch.rand_like(batch["video"]), batch["video"])
    with torch.no_grad():
        torch.testing.assert_close(vit.encode_visible(changed, visible), latent)


def test_needs_a_tube_vit():
    context = BuildContext(name="vmae")
    cnn = context.build("backbones", "r2plus1d", {"widths": [4]})
    with pytest.raises(ValueError, match="video_vit"):
        context.build("tasks", "videomae", {}, backbone=cnn)


class TestVideoMAEConformance(TaskConformance):
    task = "videomae"
    task_options = {"decoder_dim": 16, "decoder_heads": 2}
    data = CLIPS
    backbone = ("video_vit", VIT)
    bad_options = [{"mask_ratio": 1.0}, {"mask_ratio": 0.0}, {"decoder_dim": 12},
                   {"decoder_dim": 16, "decoder_heads": 3}]


def test_shortened_quickstart_beats_random_init(tmp_path, one_thread):
    """videomae-moving-mnist shrunk (test_cvrl.SMALL: 4-frame 16x16 clips; 60 steps): held-out kNN on the
    motion label must beat the same ViT at random init by 5 points (measured: see docs/video.md)."""
    from test_cvrl import SMALL

    trained, random_init = train_against_random_init(
        "videomae-moving-mnist", tmp_path / "run",
        [*SMALL, "train.max_steps=60", "augmentations.clip8.options.frames=4"], evaluators=["knn_motion"])
    print(f"kNN motion: random init {random_init['knn_motion/accuracy']:.3f}, "
          f"trained {trained['knn_motion/accuracy']:.3f}")
    assert trained["knn_motion/accuracy"] > random_init["knn_motion/accuracy"] + 0.05, (trained, random_init)
