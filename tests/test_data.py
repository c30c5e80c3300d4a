"""Batch streams: seeded order, exact resume, DDP sharding, streaming sources, splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selfsup.engine.data import AugmentedView, TaskStream, sample_seed, sample_seeds, splitmix64
from selfsup.splits import split_indices


class Numbers:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"input": torch.tensor([float(i)])}


def jitter(sample, generator):
    return {"input": sample["input"] + torch.rand(1, generator=generator)}


class Stream:
    """An iterable source: shuffled per epoch from the seed, sharded by rank."""

    def __init__(self, n):
        self.n = n

    def iterate(self, *, epoch, rank, world_size, seed):
        order = np.random.default_rng([seed, epoch]).permutation(self.n)
        for i in order[rank::world_size]:
            yield {"input": torch.tensor([float(i)])}


def take(stream, k):
    return [next(stream)["input"].flatten().tolist() for _ in range(k)]


def test_order_is_seeded_and_epochs_differ():
    a = TaskStream("t", Numbers(20), [jitter], batch_size=4, seed=1)
    b = TaskStream("t", Numbers(20), [jitter], batch_size=4, seed=1)
    c = TaskStream("t", Numbers(20), [jitter], batch_size=4, seed=2)
    first, second = take(a, 5), take(b, 5)
    assert first == second and first != take(c, 5)
    epoch0 = sorted(int(x) for batch in first for x in batch)
    assert epoch0 == list(range(20))  # one epoch: every sample once
    assert take(a, 5) != first  # epoch 1 is reshuffled and re-augmented


def test_batched_seeds_equal_one_by_one_and_splitmix64_reference():
    # First outputs of the reference SplitMix64 generator seeded with 0 (Vigna's splitmix64.c):
    # next() adds the golden gamma to the state, then mixes it; our splitmix64(x) mixes x + gamma.
    assert splitmix64(0) == 0xE220A8397B1DCDAF
    assert splitmix64(0x9E3779B97F4A7C15) == 0x6E789E6AA1B965F4
    rng = np.random.default_rng(0)
    for seed, stream, epoch in [(0, 0, 0), (-3, 2**32 - 1, 7), (2**62, 12345, 2**20)]:
        indices = rng.integers(0, 2**40, size=64).tolist() + [0, 2**32 - 1]
        assert sample_seeds(seed, stream, epoch, indices) == [sample_seed(seed, stream, epoch, i) for i in indices]
    view = AugmentedView(Numbers(50), [jitter], seed=3, stream=9)
    keys = [(2, i) for i in (5, 0, 49, 17)] + [(3, 5)]
    batched = view.__getitems__(keys)  # mixed epochs fall back to one by one
    one_by_one = [view[k] for k in keys]
    assert [b["input"].item() for b in batched] == [b["input"].item() for b in one_by_one]
    same_epoch = keys[:4]
    assert [b["input"].item() for b in view.__getitems__(same_epoch)] == [view[k]["input"].item() for k in same_epoch]
    assert batched[0]["input"].item() != batched[4]["input"].item()  # another epoch, another draw


class BatchJitter:
    """``jitter`` with a ``batch`` (API 1.8) that counts its calls and draws one sample at a time."""

    def __init__(self):
        self.calls = 0

    def __call__(self, sample, generator):
        return jitter(sample, generator)

    def batch(self, samples, generators):
        self.calls += 1
        noise = torch.cat([torch.rand(1, generator=g) for g in generators])  # [N]
        return [{**s, "input": s["input"] + n} for s, n in zip(samples, noise)]


def test_batch_augmentations_take_whole_batches_and_equal_the_per_sample_path():
    """A pipeline mixing a batch augmentation with a per-sample one: each sample keeps its generator
    from stage to stage, so the batch path gives what ``__getitem__`` gives."""
    batched, plain = BatchJitter(), BatchJitter()
    view = AugmentedView(Numbers(50), [batched, jitter], seed=3, stream=9)
    keys = [(2, i) for i in (5, 0, 49, 17, 5)]
    got = view.__getitems__(keys)
    assert batched.calls == 1
    reference = AugmentedView(Numbers(50), [plain, jitter], seed=3, stream=9)
    expected = [reference[k] for k in keys]
    assert plain.calls == 0 and [g["input"].item() for g in got] == [e["input"].item() for e in expected]
    stream = TaskStream("t", Numbers(20), [BatchJitter()], batch_size=4, seed=1)
    assert take(stream, 5) == take(TaskStream("t", Numbers(20), [jitter], batch_size=4, seed=1), 5)


def test_a_failing_batch_augmentation_is_named():
    class Broken(BatchJitter):
        def batch(self, samples, generators):
            return samples[:-1]

    view = AugmentedView(Numbers(10), [Broken()], seed=0, stream=0, labels={"augment": ["augmentations.views"]})
    with pytest.raises(Exception, match=r"augmentations\.views.*returned 1 samples for 2"):
        view.__getitems__([(0, 1), (0, 2)])


def test_resume_from_state_continues_exactly():
    full = TaskStream("t", Numbers(30), [jitter], batch_size=4, seed=0)
    expected = take(full, 17)  # crosses two epoch boundaries (7 batches per epoch)
    part = TaskStream("t", Numbers(30), [jitter], batch_size=4, seed=0)
    head = take(part, 9)
    state = part.state_dict()
    assert state == {"epoch": 1, "batches": 2}
    resumed = TaskStream("t", Numbers(30), [jitter], batch_size=4, seed=0)
    resumed.load_state_dict(state)
    assert head + take(resumed, 8) == expected


def test_workers_live_across_epochs_and_resume_exactly():
    """With data-loader workers and no epoch hook, one loader serves every epoch (its workers run on
    into the next epoch); the batches, the position and a resume from any point equal the
    in-process stream's, an epoch end included. With sampling weights it stops at each epoch end."""
    expected = take(TaskStream("t", Numbers(30), [jitter], batch_size=4, seed=0), 21)  # 7 batches per epoch
    stream = TaskStream("t", Numbers(30), [jitter], batch_size=4, seed=0, workers=2)
    states, got = [], []
    for _ in range(17):
        states.append(stream.state_dict())
        got.append(next(stream)["input"].flatten().tolist())
    loader = stream._persistent
    assert got == expected[:17] and loader is not None and stream._sampler.chain
    assert stream.state_dict() == {"epoch": 2, "batches": 3}
    assert states[7] == {"epoch": 0, "batches": 7} and states[8] == {"epoch": 1, "batches": 1}
    for at in (7, 9):  # at an epoch end, mid-epoch
        resumed = TaskStream("t", Numbers(30), [jitter], batch_size=4, seed=0, workers=2)
        resumed.load_state_dict(states[at])
        assert take(resumed, 17 - at) == expected[at:17]
    workers = loader._iterator._workers
    stream.close()  # workers stopped; fresh ones at the same position
    assert not any(w.is_alive() for w in workers)
    assert take(stream, 4) == expected[17:21] and stream._persistent is not loader
    def uniform(epoch):
        return torch.ones(30)

    weighted = TaskStream("t", Numbers(30), [jitter], batch_size=4, seed=0, workers=2, sample_weights=uniform)
    reference = TaskStream("t", Numbers(30), [jitter], batch_size=4, seed=0, sample_weights=uniform)
    assert take(weighted, 9) == take(reference, 9) and not weighted._sampler.chain
    import gc
    import weakref

    gc.disable()  # no reference cycle keeps a dropped stream's loader (and its workers) alive
    try:
        dropped = weakref.ref(weighted._persistent)
        del weighted
        assert dropped() is None
    finally:
        gc.enable()
    uniform.known_ahead = True  # weights that do not depend on the training (a round's): drawn ahead
    ahead = TaskStream("t", Numbers(30), [jitter], batch_size=4, seed=0, workers=2, sample_weights=uniform)
    assert take(ahead, 9) == take(TaskStream("t", Numbers(30), [jitter], batch_size=4, seed=0,
                                             sample_weights=uniform), 9) and ahead._sampler.chain


def test_ranks_split_the_global_batch():
    single = take(TaskStream("t", Numbers(32), [jitter], batch_size=8, seed=0), 4)
    ranks = [take(TaskStream("t", Numbers(32), [jitter], batch_size=4, seed=0, rank=r, world_size=2), 4)
             for r in (0, 1)]
    for step in range(4):
        assert sorted(single[step]) == sorted(ranks[0][step] + ranks[1][step])


def test_epoch_hook_is_called_at_each_epoch_start():
    seen = []
    stream = TaskStream("t", Numbers(8), [], batch_size=4, seed=0, on_epoch_start=seen.append)
    take(stream, 5)
    assert seen == [0, 1, 2]


@pytest.mark.parametrize("workers", [0, 1])
def test_too_small_source_is_a_clear_error(workers):
    with pytest.raises(ValueError, match="3 samples, fewer than one batch of 4"):
        next(TaskStream("t", Numbers(3), [], batch_size=4, seed=0, workers=workers))


def test_streaming_source_with_workers_and_resume():
    full = take(TaskStream("s", Stream(24), [jitter], batch_size=3, seed=0, workers=0), 10)
    part = TaskStream("s", Stream(24), [jitter], batch_size=3, seed=0)
    head = take(part, 4)
    resumed = TaskStream("s", Stream(24), [jitter], batch_size=3, seed=0)
    resumed.load_state_dict(part.state_dict())
    assert head + take(resumed, 6) == full
    with_workers = take(TaskStream("s", Stream(24), [jitter], batch_size=3, seed=0, workers=2), 8)
    assert sorted(x for b in with_workers for x in b) == sorted(x for b in full[:8] for x in b)


class KeepStream(Stream):
    """``Stream`` with the optional ``keep`` protocol: positions ``keep`` rejects are not decoded
    (each decode is logged as a line in ``log``), and position ``bad`` cannot be decoded (a hole)."""

    def __init__(self, n, log, bad=None):
        super().__init__(n)
        self.log, self.bad = log, bad

    def iterate(self, *, epoch, rank, world_size, seed, keep=None):
        for position, sample in enumerate(super().iterate(epoch=epoch, rank=rank, world_size=world_size, seed=seed)):
            if keep is not None and not keep(position):
                yield None
                continue
            with open(self.log, "a") as f:
                f.write(f"{position}\n")
            yield None if position == self.bad else sample


def test_workers_decode_only_their_share_of_a_stream(tmp_path):
    log = tmp_path / "decoded.txt"
    plain = take(TaskStream("s", Stream(48), [jitter], batch_size=3, seed=0, workers=2), 8)
    shared = take(TaskStream("s", KeepStream(48, log), [jitter], batch_size=3, seed=0, workers=2), 8)
    assert shared == plain  # same positions, same split between the workers, same augmentations
    decoded = [int(x) for x in log.read_text().split()]
    assert len(decoded) == len(set(decoded))  # no position decoded twice (by both workers)
    assert len(decoded) < 2 * 24 + 2 * 3 * 2  # about what was consumed plus prefetch, not the whole stream twice
    single = tmp_path / "single.txt"
    take(TaskStream("s", KeepStream(48, single), [jitter], batch_size=3, seed=0, workers=0), 8)
    assert single.read_text().split() == [str(i) for i in range(24)]  # one process: no keep, read as consumed


def test_a_hole_in_a_kept_stream_is_skipped(tmp_path):
    batches = take(TaskStream("s", KeepStream(24, tmp_path / "log", bad=4), [], batch_size=3, seed=0, workers=2), 7)
    order = np.random.default_rng([0, 0]).permutation(24).tolist()
    delivered = [int(x) for b in batches for x in b]
    assert order[4] not in delivered and len(delivered) == 21 == len(set(delivered))


def test_stratified_split_is_deterministic_and_disjoint():
    labels = np.repeat(np.arange(4), 25)
    train = split_indices(100, "train", val_fraction=0.2, seed=3, labels=labels)
    val = split_indices(100, "val", val_fraction=0.2, seed=3, labels=labels)
    assert len(val) == 20 and len(train) == 80 and not set(train) & set(val)
    assert np.bincount(labels[val]).tolist() == [5, 5, 5, 5]
    assert np.array_equal(val, split_indices(100, "val", val_fraction=0.2, seed=3, labels=labels))
    assert not np.array_equal(val, split_indices(100, "val", val_fraction=0.2, seed=4, labels=labels))


def test_sample_weights_draw_in_proportion_and_samples_carry_index():
    weights = torch.zeros(40)
    weights[:10] = 1.0  # only the first ten samples may be drawn
    stream = TaskStream("t", Numbers(40), [], batch_size=8, seed=0, sample_weights=lambda epoch: weights)
    batch = next(stream)
    assert batch["index"].tolist() == [int(x) for x in batch["input"].flatten().tolist()]
    drawn = [i for _ in range(4) for i in next(stream)["index"].tolist()]
    assert set(drawn) <= set(range(10)) and len(set(drawn)) > 5


def test_length_grouped_batches_hold_similar_lengths_and_split_across_ranks():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 1000, (400,), generator=g).tolist()
    grouped = TaskStream("t", Numbers(400), [], batch_size=8, seed=0, lengths=lengths)
    plain = TaskStream("t", Numbers(400), [], batch_size=8, seed=0)

    def spread(stream):  # mean (max - min) length within a batch
        return np.mean([np.ptp([lengths[i] for _, i in batch]) for batch in stream.epoch_batches(0)])

    assert spread(grouped) < spread(plain) / 5
    batches = grouped.epoch_batches(0)
    assert sorted(i for batch in batches for _, i in batch) == list(range(400))  # an epoch: every sample once
    assert batches == TaskStream("t", Numbers(400), [], batch_size=8, seed=0, lengths=lengths).epoch_batches(0)
    assert batches != grouped.epoch_batches(1)
    ranks = [TaskStream("t", Numbers(400), [], batch_size=4, seed=0, rank=r, world_size=2, lengths=lengths)
             for r in (0, 1)]
    for one, a, b in zip(batches, ranks[0].epoch_batches(0), ranks[1].epoch_batches(0)):
        assert sorted(i for _, i in one) == sorted(i for _, i in a + b)  # the ranks share each global batch
