"""Endless, resumable, seeded batch streams, one per pretext task.

For map-style sources, order and augmentation randomness depend only on (run seed, task, epoch,
sample index), never on global RNG, worker count or rank layout, so a resumed run sees exactly the
batches it would have seen, and a DDP run at the same global batch sees the same samples as one
process. Streaming sources are deterministic for a given seed, process count and ``train.workers``
(workers interleave the stream, so changing their number regroups samples into batches).
"""

from __future__ import annotations

import inspect
import weakref
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, default_collate, get_worker_info

from selfsup.engine.errors import component_error
from selfsup.engine.transfer import ByValue
from selfsup.lib.data import is_iterable_source, to_device  # noqa: F401 - re-exported for the core
from selfsup.lib.seeding import (  # noqa: F401 - the seeding scheme is public (selfsup.lib.seeding)
    sample_generator,
    sample_seed,
    sample_seeds,
    splitmix64,
    stream_id,
)

Pipeline = Sequence[Callable[[dict[str, Any], torch.Generator], dict[str, Any]]]


def apply_pipeline(sample: dict[str, Any], pipeline: Pipeline, generator: torch.Generator,
                   labels: Sequence[str] = ()) -> dict[str, Any]:
    """Each augmentation in turn; one that raises is named (``labels[i]``: its recipe field) in a
    :class:`ComponentError` with the keys of the sample it got."""
    for i, augment in enumerate(pipeline):
        try:
            sample = augment(sample, generator)
        except Exception as exc:  # noqa: BLE001 - re-raised naming the augmentation
            label = labels[i] if i < len(labels) else f"augmentation {i} of the pipeline"
            raise component_error(label, exc, "__call__", sample, "sample") from exc
    return sample


def read_sample(source: Any, index: int, label: str) -> dict[str, Any]:
    """``source[index]``; an exception is re-raised naming the data source (``label``) and the index."""
    try:
        return source[index]
    except Exception as exc:  # noqa: BLE001 - re-raised naming the data source
        raise component_error(label, exc, f"__getitem__({index})") from exc


class AugmentedView(Dataset):
    """A map-style source seen through an augmentation pipeline; keys are ``(epoch, index)``."""

    def __init__(self, source: Any, pipeline: Pipeline, seed: int, stream: int, labels: dict[str, Any] | None = None):
        self.source, self.pipeline, self.seed, self.stream = source, list(pipeline), seed, stream
        self.data_label = (labels or {}).get("data", "the data source")
        self.augment_labels = list((labels or {}).get("augment", []))
        self._generator = torch.Generator()  # reseeded per sample (each worker has its own copy)
        self._generators: list[torch.Generator] = []  # one per sample of a batch, for batch augmentations

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        return self._augmented(index, sample_seed(self.seed, self.stream, epoch, index) if self.pipeline else 0)

    def __getitems__(self, keys: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
        """A whole batch (the data loader calls this when it exists): the samples' seeds in one
        vectorised computation, equal to ``__getitem__``'s one by one."""
        if not keys:
            return []
        indices = [index for _epoch, index in keys]
        epochs = {epoch for epoch, _index in keys}
        if not self.pipeline or len(epochs) != 1:
            return [self[key] for key in keys]
        seeds = sample_seeds(self.seed, self.stream, epochs.pop(), indices)
        if any(callable(getattr(augment, "batch", None)) for augment in self.pipeline):
            return self._batched(indices, seeds)
        # the per-sample work of _augmented, inlined: a batch of small samples spends a measurable
        # share of its time in function calls (bench/overhead.py); errors are named the same way
        source, pipeline, generator, out = self.source, self.pipeline, self._generator, []
        for index, seed in zip(indices, seeds):
            stage, sample = -1, None  # -1: reading the source; i: the pipeline's augmentation i
            try:
                sample = source[index]
                if "index" not in sample:
                    sample = {**sample, "index": index}
                generator.manual_seed(seed)
                for stage, augment in enumerate(pipeline):
                    sample = augment(sample, generator)
            except Exception as exc:  # noqa: BLE001 - re-raised naming the component
                raise self._error(exc, stage, index, sample) from exc
            out.append(sample)
        return out

    def _batched(self, indices: list[int], seeds: list[int]) -> list[dict[str, Any]]:
        """The batch through a pipeline with augmentations that take whole batches
        (``Augmentation.batch``, API 1.8): each sample keeps its own generator, seeded as in
        ``__getitem__``, from stage to stage, so the samples equal the per-sample path's."""
        samples = []
        for index in indices:
            sample = read_sample(self.source, index, self.data_label)
            samples.append(sample if "index" in sample else {**sample, "index": index})
        while len(self._generators) < len(samples):
            self._generators.append(torch.Generator())
        generators = self._generators[: len(samples)]
        for generator, seed in zip(generators, seeds):
            generator.manual_seed(seed)
        for stage, augment in enumerate(self.pipeline):
            try:
                batch = getattr(augment, "batch", None)
                out = batch(samples, generators) if callable(batch) else [
                    augment(sample, generator) for sample, generator in zip(samples, generators)]
                if len(out) != len(samples):
                    raise ValueError(f"batch() returned {len(out)} samples for {len(samples)}")
            except Exception as exc:  # noqa: BLE001 - re-raised naming the augmentation
                raise self._error(exc, stage, indices[0], samples[0]) from exc
            samples = list(out)
        return samples

    def _error(self, exc: Exception, stage: int, index: int, sample: Any) -> Exception:
        """The error of ``read_sample`` (stage -1) or ``apply_pipeline`` (stage i) for ``exc``."""
        if stage < 0:
            return component_error(self.data_label, exc, f"__getitem__({index})")
        label = (self.augment_labels[stage] if stage < len(self.augment_labels)
                 else f"augmentation {stage} of the pipeline")
        return component_error(label, exc, "__call__", sample, "sample")

    def _augmented(self, index: int, seed: int) -> dict[str, Any]:
        sample = read_sample(self.source, index, self.data_label)
        if "index" not in sample:  # tasks that keep per-sample state (DeepCluster) need it
            sample = {**sample, "index": index}
        if not self.pipeline:
            return sample
        return apply_pipeline(sample, self.pipeline, self._generator.manual_seed(seed), self.augment_labels)


def takes_keep(source: Any) -> bool:
    """Whether the source's ``iterate`` takes ``keep`` (see :class:`selfsup.components.IterableDataSource`)."""
    try:
        return "keep" in inspect.signature(source.iterate).parameters
    except (TypeError, ValueError):
        return False


class AugmentedStream(IterableDataset):
    """An iterable source's epoch seen through the pipeline, skipping ``skip`` samples (resume),
    split between data-loader workers. A source that takes ``keep`` decodes only the worker's share;
    its positions then count the samples it could not decode too (``None``), so with several workers
    a resumed epoch that met such samples before the resume point may repeat as many samples."""

    def __init__(
        self, source: Any, pipeline: Pipeline, seed: int, stream: int, epoch: int, rank: int, world: int, skip: int
    ):
        self.source, self.pipeline = source, list(pipeline)
        self.seed, self.stream, self.epoch, self.rank, self.world, self.skip = seed, stream, epoch, rank, world, skip

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)

        def mine(position: int) -> bool:
            return position >= self.skip and position % workers == worker

        extra = {"keep": mine} if workers > 1 and takes_keep(self.source) else {}  # decode only this worker's share
        it = self.source.iterate(epoch=self.epoch, rank=self.rank, world_size=self.world, seed=self.seed, **extra)
        for position, sample in enumerate(it):
            if sample is None or not mine(position):
                continue
            g = sample_generator(self.seed, self.stream, self.epoch, position)
            yield apply_pipeline(sample, self.pipeline, g) if self.pipeline else sample


class EpochBatches:
    """The batch sampler of a data loader whose workers live across epochs (it runs in this process;
    the workers keep their copy of the data): the batches of ``stream`` from ``(epoch, skip)`` on,
    that epoch's only or, with ``chain``, epoch after epoch, so the workers prepare the next epoch's
    first batches while this one's last are trained on. ``lengths``: batches per epoch, as drawn."""

    def __init__(self, stream: "TaskStream", chain: bool):
        # a weak reference: a cycle stream -> loader -> sampler -> stream would leave the loader to the
        # cyclic garbage collector, which may finalize its queues first and then wait seconds for workers
        self.stream, self.chain = weakref.ref(stream), chain
        self.epoch, self.skip = 0, 0
        self.lengths: dict[int, int] = {}

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, skip = self.epoch, self.skip
        while True:
            stream = self.stream()  # not held while suspended at the yield below (a cycle again)
            if stream is None:
                return
            batches, stream = stream.batches_of(epoch), None
            self.lengths[epoch] = len(batches)
            yield from batches[skip:]
            if not self.chain:
                return
            epoch, skip = epoch + 1, 0


class TaskStream:
    """Endless batches for one task. ``state_dict()`` is ``{"epoch", "batches"}``: the epoch in
    progress and how many of its batches were handed out; loading it resumes exactly there."""

    def __init__(
        self,
        name: str,
        source: Any,
        pipeline: Pipeline,
        *,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 0,
        collate: Callable[[list[dict[str, Any]]], Any] | None = None,
        on_epoch_start: Callable[[int], None] | None = None,
        sample_weights: Callable[[int], Any] | None = None,
        pin_memory: bool = False,
        lengths: Any = None,
        labels: dict[str, Any] | None = None,
    ):
        self.name, self.source, self.pipeline = name, source, list(pipeline)
        self.labels = labels or {}  # {"data": "data.train (selfsup-vision 0.1.0)", "augment": [...]}: for errors
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.workers, self.collate = workers, collate or default_collate
        self.on_epoch_start, self.sample_weights, self.pin_memory = on_epoch_start, sample_weights, pin_memory
        self.lengths = None if lengths is None else torch.as_tensor(list(lengths), dtype=torch.long)  # [N] or None
        self.stream = stream_id(name)
        self.iterable = is_iterable_source(source)
        self.epoch, self.batches = 0, 0
        self._it: Iterator[Any] | None = None
        self._started_epoch: int | None = None
        self._persistent: DataLoader | None = None  # the loader whose workers live across epochs

    @property
    def _sampler(self) -> EpochBatches | None:
        """The batch sampler of the loader whose workers live across epochs, if there is one."""
        return self._persistent.batch_sampler if self._persistent is not None else None

    # ------------------------------------------------------------ epoch layout (map-style)

    def epoch_batches(self, epoch: int) -> list[list[tuple[int, int]]]:
        """This rank's batches of ``epoch``: lists of ``(epoch, index)`` keys.

        Normally a seeded permutation split between ranks (``DistributedSampler``). When the task
        gives ``sample_weights(epoch)`` (a ``[N]`` tensor, e.g. inverse cluster sizes for balanced
        sampling), ``N`` indices are drawn with replacement from those weights instead."""
        weights = self.sample_weights(epoch) if self.sample_weights is not None else None
        if self.lengths is not None and weights is None:
            return [[(epoch, i) for i in batch] for batch in self.length_grouped(epoch)]
        if weights is not None:
            g = sample_generator(self.seed, self.stream, epoch, 2**32 - 2)
            probs = torch.as_tensor(weights, dtype=torch.float64)
            drawn = torch.multinomial(probs, len(self.source), replacement=True, generator=g)
            per_rank = len(self.source) // self.world_size
            order = drawn.tolist()[self.rank :: self.world_size][:per_rank]
        else:
            sampler = DistributedSampler(
                range(len(self.source)), num_replicas=self.world_size, rank=self.rank, shuffle=True,
                seed=self.seed + self.stream % 100_003, drop_last=True,
            )
            sampler.set_epoch(epoch)
            order = list(sampler)
        full = len(order) // self.batch_size
        return [[(epoch, i) for i in order[b * self.batch_size : (b + 1) * self.batch_size]] for b in range(full)]

    def length_grouped(self, epoch: int, group: int = 50) -> list[list[int]]:
        """This rank's batches of ``epoch`` with samples of similar length (less padding).

        A seeded permutation is cut into runs of ``group`` global batches; each run is sorted by
        length (longest first) and split into global batches; the global batches are shuffled
        (seeded) and each rank takes its slice of every one, so the ranks' batches line up and hold
        samples of similar length. The idea of transformers' ``LengthGroupedSampler``, made
        deterministic per (seed, task, epoch) so resume and DDP see the same batches."""
        g = sample_generator(self.seed, self.stream, epoch, 2**32 - 3)
        n, global_batch = len(self.lengths), self.batch_size * self.world_size
        order = torch.randperm(n, generator=g)
        batches: list[torch.Tensor] = []
        for start in range(0, n - n % global_batch, global_batch * group):
            run = order[start : min(start + global_batch * group, n - n % global_batch)]
            run = run[torch.argsort(self.lengths[run], descending=True, stable=True)]
            batches.extend(run.split(global_batch))
        shuffled = torch.randperm(len(batches), generator=g).tolist()
        mine = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        return [batches[b][mine].tolist() for b in shuffled]

    def check(self) -> None:
        """Raise ``ValueError`` now if the source cannot fill one batch (instead of mid-training)."""
        if not self.iterable and len(self.source) // self.world_size < self.batch_size:
            raise ValueError(
                f"its data source has {len(self.source)} samples, fewer than one batch "
                f"of {self.batch_size} per process (x{self.world_size} processes)"
            )

    def batches_per_epoch(self) -> int:
        if self.iterable:
            raise ValueError(
                "a streaming data source has no fixed epoch length; set train.max_steps instead of train.epochs"
            )
        return len(self.source) // self.world_size // self.batch_size

    # ------------------------------------------------------------ iteration

    def _loader(self) -> Iterator[Any]:
        # an own generator: creating a loader iterator must not draw from the global RNG, or a
        # resumed run (which creates one mid-epoch) would drift from an uninterrupted one
        generator = sample_generator(self.seed, self.stream, self.epoch, 2**32 - 1)
        collate = ByValue(self.collate) if self.workers else self.collate  # small tensors not via shared memory
        common = dict(collate_fn=collate, num_workers=self.workers, pin_memory=self.pin_memory, generator=generator)
        if self.iterable:
            data = AugmentedStream(
                self.source, self.pipeline, self.seed, self.stream, self.epoch, self.rank, self.world_size,
                skip=self.batches * self.batch_size,
            )
            return iter(DataLoader(data, batch_size=self.batch_size, drop_last=True, **common))
        if self.workers == 0 or self.on_epoch_start is not None:
            # a task with an epoch hook may change what its collate or the source reads: fresh workers
            batches = self.batches_of(self.epoch)
            view = AugmentedView(self.source, self.pipeline, self.seed, self.stream, self.labels)
            return iter(DataLoader(view, batch_sampler=batches[self.batches :], **common))
        if self._persistent is None:  # workers kept from epoch to epoch: starting them costs more than
            # a small epoch's batches. When an epoch's batches are known before it starts (no sampling
            # weights, or weights marked ``known_ahead``) the workers run on into the next one; a
            # task's own weights may depend on the training so far, so they are drawn at the epoch's start.
            ahead = self.sample_weights is None or getattr(self.sample_weights, "known_ahead", False)
            view = AugmentedView(self.source, self.pipeline, self.seed, self.stream, self.labels)
            self._persistent = DataLoader(view, batch_sampler=EpochBatches(self, chain=ahead), persistent_workers=True,
                                          **common)
        self._sampler.epoch, self._sampler.skip = self.epoch, self.batches
        return iter(self._persistent)

    def batches_of(self, epoch: int) -> list[list[tuple[int, int]]]:
        """``epoch_batches(epoch)``; none is an error naming the source's size."""
        batches = self.epoch_batches(epoch)
        if not batches:
            raise ValueError(
                f"task {self.name!r}: its data source has {len(self.source)} samples, fewer than one batch "
                f"of {self.batch_size} per process (x{self.world_size} processes)"
            )
        return batches

    def close(self) -> None:
        """Stop the data-loader workers now (the run ended, or a round's feedback changed the data
        they hold a copy of). The stream can go on: its next batch starts fresh workers at the same
        position ``(epoch, batches)``. Stopped here rather than left to garbage collection: a child
        process forked later (another run in this process) would inherit the live loader and try to
        stop workers that are not its own."""
        shutdown = getattr(self._it, "_shutdown_workers", None)  # torch's multi-process loader iterator
        if callable(shutdown):
            shutdown()
        self._it, self._started_epoch, self._persistent = None, None, None

    def restart(self) -> None:
        """The data changed under the stream (a round's feedback, whose source brings the workers'
        copies up to date itself): drop the batches prepared ahead from the old data. Workers kept
        across epochs stay (the next batch resumes them at ``(epoch, batches)``, with their queued
        batches discarded); others stop."""
        if self._persistent is None:
            self.close()
            return
        self._it, self._started_epoch = None, None
        self._sampler.lengths.clear()  # epochs drawn ahead were drawn from the old data

    def __iter__(self) -> TaskStream:
        return self

    def __next__(self) -> Any:
        for _attempt in range(2):
            if self._it is None:
                if self._started_epoch != self.epoch and self.batches == 0 and self.on_epoch_start is not None:
                    self.on_epoch_start(self.epoch)
                self._started_epoch = self.epoch
                self._it = self._loader()
            try:
                if self._sampler is not None and self._sampler.chain:  # the loader runs on into the next epoch
                    lengths = self._sampler.lengths
                    if self.epoch not in lengths:  # (the loader's prefetch has normally drawn it already)
                        lengths[self.epoch] = len(self.epoch_batches(self.epoch))
                    if self.batches >= lengths[self.epoch]:
                        self.epoch, self.batches = self.epoch + 1, 0
                batch = next(self._it)
            except StopIteration:
                self._it = None
                self.epoch, self.batches = self.epoch + 1, 0
                continue
            self.batches += 1
            return batch
        raise ValueError(f"task {self.name!r}: its data source yielded no batch in a whole epoch")

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches": self.batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.batches = int(state["epoch"]), int(state["batches"])
        self.close()
