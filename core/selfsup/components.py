"""Typed contracts for the five component kinds, and the contexts their factories receive.

Samples flow like this::

    DataSource[i] -> sample dict -> Augmentation(sample, generator)* -> sample dict
      -> PretextTask.collate(samples) (or torch's default_collate) -> batch dict
      -> PretextTask(batch, backbone) -> TaskOutput(loss, metrics)

Conventions for sample dicts: the model input is under ``"input"`` unless a plugin documents
other keys (text uses ``"input_ids"``/``"attention_mask"``); an optional integer class ``"label"``
is used only by evaluators, never by pretext tasks.

This module imports no torch at run time, so plugins can import it when they load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    import torch

Sample = dict[str, Any]
Batch = dict[str, Any]


@runtime_checkable
class DataSource(Protocol):
    """Map-style data: ``len(source)`` samples, ``source[i]`` is a sample dict (no randomness).

    A source (map-style or iterable) may define ``collate(samples) -> batch`` when its samples do
    not stack with ``default_collate`` (text of varying length: pad and add a mask). It batches
    samples for feature extraction (evaluators) and for tasks that define no ``collate`` of their own.
    A map-style source may also define ``lengths() -> Sequence[int]`` (each sample's length, cheap:
    no decoding) so that a task with ``group_by_length = true`` batches samples of similar length.
    """

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


@runtime_checkable
class IterableDataSource(Protocol):
    """Streaming data larger than memory. ``iterate(epoch, rank, world_size, seed)`` yields this
    rank's share of the samples of one epoch in a deterministic (seeded, shuffled) order."""

    def iterate(self, *, epoch: int, rank: int, world_size: int, seed: int) -> Iterator[Sample]: ...


@runtime_checkable
class Augmentation(Protocol):
    """A per-sample transform. Randomness must come only from ``generator`` (seeded per sample by
    the core from the run seed, epoch and sample index), so runs and resumes are reproducible.
    Returns a new or updated sample dict (a multi-view augmentation adds e.g. ``"views"``)."""

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample: ...


@dataclass
class TaskOutput:
    """What a pretext task returns: a scalar loss (with gradients) and named metrics.

    ``metrics`` values are floats or 0-dim tensors (detached by the loop before logging).
    """

    loss: torch.Tensor
    metrics: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backbone(Protocol):
    """An ``nn.Module`` that encodes inputs. ``output_dim`` is the size of ``embed``'s features;
    ``embed(batch)`` returns pooled features ``[B, output_dim]`` used by evaluators (and by tasks
    that need nothing more). Tasks may call other methods a backbone documents. An optional
    ``export(directory)`` is called when a run completes, with ``<run>/export/<backbone name>``, to
    save the backbone in its own library's format (e.g. ``save_pretrained``)."""

    output_dim: int

    def embed(self, batch: Mapping[str, Any]) -> torch.Tensor: ...


@runtime_checkable
class PretextTask(Protocol):
    """An ``nn.Module`` holding the task's heads. ``forward(batch, backbone)`` returns a
    :class:`TaskOutput`. Optional methods the loop uses when present:

    * ``collate(samples) -> batch``: batching (padding, masking, packing); default is the data
      source's ``collate`` if it has one, else ``torch.utils.data.default_collate``. Runs in data-loader workers: no CUDA there.
    * ``on_epoch_start(context: EpochContext)``: called before each pass over the task's data
      (DeepCluster re-clusters here). State it computes must live in buffers, so that it is
      checkpointed (a run resumed mid-epoch does not call it again).
    * ``sample_weights(epoch) -> Tensor[N] | None``: draw the epoch's samples with replacement
      in proportion to these weights instead of a permutation (balanced sampling).

    Samples from map-style sources carry their position as ``"index"`` (unless the source
    already sets it), for tasks that keep per-sample state.
    """

    def __call__(self, batch: Batch, backbone: Backbone) -> TaskOutput: ...


@runtime_checkable
class Evaluator(Protocol):
    """Measures a backbone; ``evaluate(context)`` returns named float metrics. An evaluator that
    fits on a second data set (kNN bank, probe) sets ``needs_fit_data: ClassVar[bool] = True`` on
    its options model, so recipes without ``fit_data`` are rejected at validation."""

    def evaluate(self, context: EvalContext) -> dict[str, float]: ...


# --------------------------------------------------------------------------------------------
# Contexts handed to factories and hooks
# --------------------------------------------------------------------------------------------


@dataclass
class BuildContext:
    """Given to every factory as its second argument.

    ``name`` is the component's key in the recipe (``tasks.<name>``), ``base_dir`` the directory
    relative paths are resolved against, ``seed`` the run seed. Tasks and evaluators also get
    ``backbone`` (already built, so heads can be sized from ``backbone.output_dim``; a dict
    ``{role: backbone}`` when the recipe gives a table of roles, for cross-modal tasks) and tasks
    get ``data`` (their built data source). Backbone factories get ``backbones``: the backbones
    defined before them in the recipe, so one can share another's modules (a transformer trunk
    shared by modality adapters)."""

    name: str
    seed: int = 0
    base_dir: Path = field(default_factory=Path.cwd)
    backbone: Any = None
    data: Any = None
    backbones: dict[str, Any] = field(default_factory=dict)  # backbones: those built before it, by recipe key

    def resolve(self, path: str | Path) -> Path:
        """``path`` made absolute against the recipe's directory."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)


@dataclass
class EpochContext:
    """Given to ``PretextTask.on_epoch_start``: what a task needs to look at its whole data set."""

    epoch: int
    seed: int
    device: torch.device
    backbone: Any
    data: Any
    augment: list[Any]  # the task's augmentation pipeline: callables (sample, generator) -> sample
    batch_size: int
    rank: int = 0
    world_size: int = 1


@dataclass
class EvalContext:
    """Given to ``Evaluator.evaluate``.

    ``data`` is the held-out set, ``fit_data`` the optional set to fit on (kNN bank, probe
    training set), both as data sources already passed through the evaluator's augmentations.
    ``features(source, backbone=None)`` gives ``(features [N, D] float32, labels [N] int64 or None)``
    from the frozen backbone (or the one given: an evaluator of several backbones, whose
    ``backbone`` is ``{role: backbone}``, names one), cached per call of the evaluator set. ``inputs(source, key)`` gives the raw
    ``sample[key]`` values flattened (``[N, F]``), for raw-input baselines."""

    name: str
    step: int
    seed: int
    device: torch.device
    backbone: Any
    data: Any
    fit_data: Any
    run_dir: Path
    batch_size: int
    features: Any  # Callable[[source], tuple[Tensor, Tensor | None]]
    inputs: Any = None  # Callable[[source, key], tuple[Tensor [N, F], Tensor | None]]: raw flattened inputs
    tasks: Any = None  # {task name: task module}: for evaluators that measure a task's heads (retrieval through projections)
    extras: dict[str, Any] = field(default_factory=dict)

