"""Span masking (wav2vec 2.0 / HuBERT): ratio in expectation, padding never masked, seeded."""

from __future__ import annotations

import pytest
import torch

from selfsup_speech.tasks.masking import batch_generator, compute_span_mask


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_single_frame_spans_hit_the_requested_ratio_in_expectation():
    # span 1: spans never overlap, so E[masked fraction] = mask_prob exactly (random rounding of
    # mask_prob * T); 4,000 rows of 50 frames: the mean is within 0.005 (about 10 standard errors)
    mask = compute_span_mask((4000, 50), 0.3, 1, gen())
    assert abs(mask.float().mean().item() - 0.3) < 0.005


def test_random_rounding_makes_the_span_count_exact_in_expectation():
    # 0.37 * 20 / 4 = 1.85 spans per row: 1 or 2 disjoint-or-not spans; counted by starts, i.e.
    # rows with a single span mask exactly 4 frames (spans are 4 long, may overlap when 2)
    mask = compute_span_mask((6000, 20), 0.37, 4, gen(1))
    per_row = mask.sum(1)
    assert set(per_row.unique().tolist()) <= set(range(4, 9))
    one_span = (per_row == 4).float().mean().item()  # rows with 1 span, or 2 fully overlapping
    assert 0.15 - 0.02 < one_span < 0.15 + 0.05  # P(1 span) = 0.15, plus a few coinciding pairs


def test_long_spans_overlap_so_the_fraction_is_below_mask_prob():
    # the paper's setting (0.65, 10) masks about half of the frames (overlaps), never more than 0.65
    mask = compute_span_mask((500, 400), 0.65, 10, gen(2))
    fraction = mask.float().mean().item()
    assert 0.45 < fraction < 0.58


def test_padding_is_never_masked_and_spans_stay_inside_valid_frames():
    g = gen(3)
    lengths = torch.randint(0, 60, (300,), generator=g)
    padding = torch.arange(60)[None] >= lengths[:, None]  # [B, T]
    mask = compute_span_mask((300, 60), 0.65, 5, gen(4), padding_mask=padding, min_masks=2)
    assert not (mask & padding).any()
    assert not mask[lengths == 0].any()
    assert (mask.sum(1)[lengths >= 5] >= 5).all()  # at least one whole span where one fits


def test_min_masks_and_short_sequences():
    mask = compute_span_mask((200, 30), 0.01, 3, gen(5), min_masks=2)
    assert (mask.sum(1) >= 3).all()  # two spans of 3 (possibly overlapping) at least 3 frames
    short = compute_span_mask((50, 2), 0.9, 10, gen(6), min_masks=2)  # span longer than the sequence
    assert short.shape == (50, 2) and short.any()


def test_deterministic_under_a_seed():
    padding = torch.arange(40)[None] >= torch.tensor([40, 30, 12, 1])[:, None]
    a = compute_span_mask((4, 40), 0.5, 4, gen(7), padding, 1)
    b = compute_span_mask((4, 40), 0.5, 4, gen(7), padding, 1)
    c = compute_span_mask((4, 40), 0.5, 4, gen(8), padding, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_arguments():
    with pytest.raises(ValueError, match="mask_prob"):
        compute_span_mask((2, 10), 1.0, 2, gen())
    with pytest.raises(ValueError, match="padding_mask"):
        compute_span_mask((2, 10), 0.5, 2, gen(), padding_mask=torch.zeros(2, 9, dtype=torch.bool))


def test_batch_generator_depends_on_seed_step_and_indices():
    batch = {"index": torch.tensor([3, 5])}
    draw = lambda *a: torch.rand(4, generator=batch_generator(*a)).tolist()  # noqa: E731
    assert draw(0, 1, batch) == draw(0, 1, batch)
    assert draw(0, 1, batch) != draw(0, 2, batch)
    assert draw(0, 1, batch) != draw(1, 1, batch)
    assert draw(0, 1, batch) != draw(0, 1, {"index": torch.tensor([3, 6])})


def test_batches_with_equal_index_sums_get_different_masks():
    """Regression: the seed once hashed the sum of a batch's indices, so batches {0, 3} and {1, 2}
    (both summing to 3) drew identical masks at the same step. The batch generator now hashes every
    index and its position (selfsup.lib.batch_generator)."""
    padding = torch.zeros(2, 60, dtype=torch.bool)
    masks = [compute_span_mask((2, 60), 0.5, 4, batch_generator(0, 7, {"index": torch.tensor(i)}), padding, 1)
             for i in ([0, 3], [1, 2], [3, 0])]
    assert not torch.equal(masks[0], masks[1])
    assert not torch.equal(masks[0], masks[2])  # the same samples in another order: another draw
    again = compute_span_mask((2, 60), 0.5, 4, batch_generator(0, 7, {"index": torch.tensor([0, 3])}), padding, 1)
    assert torch.equal(masks[0], again)
