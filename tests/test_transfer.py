"""Batches leaving a data-loader worker: small tensors pickled by value, large ones through torch's
shared memory, and the batch unchanged either way."""

from __future__ import annotations

from multiprocessing.reduction import ForkingPickler

import pytest
import torch
import torch.multiprocessing  # noqa: F401 - registers torch's shared-memory reductions with ForkingPickler

from selfsup.engine.transfer import BATCH_BYTES, TENSOR_BYTES, ByValue


def sent(batch):
    """What the training process gets: the batch pickled as a worker's result queue does."""
    return ForkingPickler.loads(ForkingPickler.dumps(ByValue(lambda samples: samples[0])([batch])))


def test_small_tensors_go_by_value_and_come_back_equal():
    g = torch.Generator().manual_seed(0)
    batch = {
        "views": torch.rand(4, 2, 1, 8, 8, generator=g),
        "half": torch.rand(3, 5, generator=g).to(torch.bfloat16),
        "mask": torch.rand(7, generator=g) > 0.5,
        "index": torch.arange(4),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "strided": torch.rand(6, 4, generator=g).t(),  # not contiguous
        "nested": [torch.ones(2), (torch.zeros(1), "text", 3)],
        "name": ["a", "b"],
    }
    got = sent(batch)
    assert got.keys() == batch.keys() and got["name"] == ["a", "b"]
    for key in ("views", "half", "mask", "index", "scalar", "empty", "strided"):
        assert got[key].dtype == batch[key].dtype and torch.equal(got[key], batch[key]), key
        assert not got[key].is_shared(), key
    assert isinstance(got["nested"][1], tuple) and got["nested"][1][1:] == ("text", 3)
    assert torch.equal(got["nested"][0], torch.ones(2)) and not got["nested"][0].is_shared()
    got["views"].add_(1)  # an ordinary, writable tensor


def test_large_tensors_and_the_rest_of_a_full_budget_use_shared_memory():
    large = torch.rand(TENSOR_BYTES // 4 + 1)
    small = [torch.rand(TENSOR_BYTES // 4) for _ in range(BATCH_BYTES // TENSOR_BYTES + 2)]
    got = sent({"large": large, "small": small})
    assert torch.equal(got["large"], large) and got["large"].is_shared()
    shared = [t.is_shared() for t in got["small"]]
    assert shared == [False] * (BATCH_BYTES // TENSOR_BYTES) + [True, True]
    assert all(torch.equal(a, b) for a, b in zip(got["small"], small))


@pytest.mark.parametrize("kind", [tuple, list])
def test_a_batch_that_is_not_a_dict(kind):
    batch = kind([torch.arange(3), torch.ones(2, 2)])
    got = sent(batch)
    assert type(got) is kind and all(torch.equal(a, b) for a, b in zip(got, batch))
