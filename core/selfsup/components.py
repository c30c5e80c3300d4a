"""Typed contracts for the component kinds, and the contexts their factories receive.

Samples flow like this::

    DataSource[i] -> sample dict -> Augmentation(sample, generator)* -> sample dict
      -> PretextTask.collate(samples) (or torch's default_collate) -> batch dict
      -> PretextTask(batch, backbone) -> TaskOutput(loss, metrics)

Sample keys are declared, not assumed: every component states in its ``register`` call the keys it
yields or reads, with dtype and shape (``image: float32[C,H,W]``), and recipe validation checks that
they flow (:mod:`selfsup.contract`; ``selfsup describe KIND NAME`` shows them). The first-party
plugins use ``"image"`` ``[C, H, W]`` (vision), ``"input_ids"`` ``[T]`` (text; the collate adds
``"attention_mask"``), ``"audio"`` ``[S]`` (speech) and ``"input"`` (vectors: the core's ``mlp`` and
``tensor_file``). An optional integer class ``"label"`` is used only by evaluators, never by
pretext tasks.

This module imports no torch at run time, so plugins can import it when they load.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    rank's share of the samples of one epoch in a deterministic (seeded, shuffled) order.

    Optional (API 1.6): a source whose ``iterate`` also takes ``keep`` (a predicate on stream
    positions 0, 1, 2, ...) gets it when the run has several data-loader workers, each reading
    the same stream: it yields ``None`` at every position where ``keep`` is false (and at a sample it
    could not decode) instead of decoding it, so each worker decodes only its own share while the
    positions (which seed augmentations and split the stream between workers) stay the same.
    :meth:`selfsup.lib.shards.ShardStream.decoded` implements it."""

    def iterate(self, *, epoch: int, rank: int, world_size: int, seed: int) -> Iterator[Sample]: ...


@runtime_checkable
class Augmentation(Protocol):
    """A per-sample transform. Randomness must come only from ``generator`` (seeded per sample by
    the core from the run seed, epoch and sample index), so runs and resumes are reproducible.
    Returns a new or updated sample dict (a multi-view augmentation adds e.g. ``"views"``).

    Optional (API 1.8): ``batch(samples, generators) -> samples``, a list of samples each with its
    own generator, returning what ``[self(s, g) for s, g in zip(samples, generators)]`` returns (equal
    up to float rounding, the generators left in the same state) with the work done for the whole
    list at once. Data-loader workers call it for the batches of map-style sources: per-sample
    Python and small-tensor overhead is then paid once per batch. The conformance suite checks the
    equality."""

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample: ...


class BadInput(ValueError):
    """A served input that cannot become a sample. ``field`` names where it is in the request
    (``inputs[2].image``), ``status`` is the HTTP status the service answers with: 422 (cannot be
    decoded or is out of range, the default), 413 (too large). The message says what is wrong."""

    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status


@runtime_checkable
class Decoder(Protocol):
    """Turns one raw input of a request into a sample, with the preprocessing of the data source
    it was built for (a data source's ``decoder=`` factory in its ``register`` call builds it from
    the same options, without reading the data).

    ``fields`` maps each request field it reads to its media: ``"text"`` (a JSON string), ``"image"``
    or ``"audio"`` (bytes of a file, sent base64-encoded in JSON or as a multipart upload), or
    ``"tensor"`` (nested JSON numbers). ``decoder(raw, truncate=...)`` gets one input (field ->
    str or bytes) and returns ``(sample, stats)``: the sample dict the data source would yield, and
    input statistics for monitoring (``{"chars": 120.0, "tokens": 33.0}``, ``{"width": 640.0,
    "height": 480.0}``, ``{"seconds": 1.5}``). It raises :class:`BadInput` naming the field for an
    input it cannot take; a text longer than the model's context is cut when ``truncate`` is true
    and refused otherwise."""

    fields: Mapping[str, str]

    def __call__(self, raw: Mapping[str, Any], *, truncate: bool = True) -> tuple[Sample, dict[str, float]]: ...


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
class LayerwiseMaskedEncoder(Protocol):
    """A transformer backbone that masked-prediction tasks of any modality can drive (the core's
    ``data2vec``): it says which of a batch's positions to mask, and encodes the batch with those
    positions replaced by its learned mask embedding, returning every block's output.

    A *position* is what the backbone's transformer blocks see, one per token: an image patch
    (prefix tokens such as a class token are not positions), a speech frame, a text token. ``T``
    below is the number of positions of the batch; ``D`` is ``output_dim``.

    * ``masked_positions(batch, generator, *, ratio=None, span=None) -> Tensor[B, T] bool`` (True =
      masked), drawn with the modality's own strategy from ``generator`` only (a CPU generator; the
      mask may be returned on the CPU): block-wise masking of image patches (BEiT), spans of frames
      (wav2vec 2.0), single tokens (BERT). ``ratio`` is the share (or probability) of masked
      positions and ``span`` the length of a masked run (speech span, smallest image block); ``None``
      means the backbone's default. Padding positions and special tokens are never masked, and
      every sample with a valid position has at least one masked.
    * ``encode_layers(batch, mask=None) -> (layers, padding)``: ``layers`` is the list of each
      transformer block's output ``[B, T, D]``, input side first (the input embedding is not one);
      ``padding`` is ``[B, T]`` bool (True = padding) or ``None`` when no position is padding.
      Where ``mask`` is True the input of the first block is the backbone's learned mask embedding
      (or its ``[MASK]`` token) instead of the position's own; ``mask=None`` encodes the input as is.
    * ``prepare_masking()`` (optional): called once when a task that masks is built, before the
      optimizer exists; a backbone whose mask embedding is not part of it by default creates it here
      (a timm ViT), so backbones used otherwise carry no unused parameter.

    See docs/plugin-api.md ("Masked-prediction backbones") for the first-party implementations."""

    output_dim: int

    def masked_positions(self, batch: Mapping[str, Any], generator: torch.Generator, *, ratio: float | None = None,
                         span: int | None = None) -> torch.Tensor: ...

    def encode_layers(self, batch: Mapping[str, Any],
                      mask: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor | None]: ...


@runtime_checkable
class PretextTask(Protocol):
    """An ``nn.Module`` holding the task's heads. ``forward(batch, backbone)`` returns a
    :class:`TaskOutput`. Optional methods the loop uses when present:

    * ``collate(samples) -> batch``: batching (padding, masking, packing); default is the data
      source's ``collate`` if it has one, else ``torch.utils.data.default_collate``. Runs in data-loader workers: no
      CUDA there.
    * ``on_epoch_start(context: EpochContext)``: called before each pass over the task's data
      (DeepCluster re-clusters here). State it computes must live in buffers, so that it is
      checkpointed (a run resumed mid-epoch does not call it again).
    * ``sample_weights(epoch) -> Tensor[N] | None``: draw the epoch's samples with replacement
      in proportion to these weights instead of a permutation (balanced sampling).
    * ``on_step(step: int)``: called once per optimizer step, before its forward passes, with the
      number of optimizer steps completed so far (0 at the first). Schedules inside a task (prototype
      freezing, temperature decay, mask seeds) count these, never forward calls: with
      ``grad_accum = 4`` a step has four forward calls. Also called after a resume, with the
      restored step, so a schedule needs no state of its own.
    * ``after_step(step: int, total_steps: int)``: called once per optimizer step right after the
      update (``step`` = optimizer steps completed, 1-based, of ``total_steps``), before logging,
      evaluation and checkpoints; momentum teachers (:class:`selfsup.lib.EMATeacher`) are updated
      here, so a checkpoint of step ``s`` holds the teacher that absorbed step ``s``.
    * ``health(batch, backbone) -> dict[str, float]``: the task's own training-health metrics
      (``health/<task>/<name>``, docs/health.md), called on rank 0 in eval mode without gradients
      with each batch of the task's fixed probe; no collectives, no state changes.
    * ``health_inputs(batch) -> batch``: the probe batch as the backbone's ``embed`` reads it, when the
      task's batches hold more (``clm``: T + 1 tokens for a context of T).

    Samples from map-style sources carry their position as ``"index"`` (unless the source
    already sets it), for tasks that keep per-sample state.
    """

    def __call__(self, batch: Batch, backbone: Backbone) -> TaskOutput: ...


@runtime_checkable
class Head(Protocol):
    """A supervised head for fine-tuning (``register_heads``): an ``nn.Module`` from a backbone's
    features to outputs, with its loss and its decoding.

    * ``target``: the sample key it learns (``"label"``); ``problem``: ``"single_label"`` (outputs
      ``[B, C]`` logits, targets int64 ``[B]``), ``"multi_label"`` (``[B, C]`` logits, 0/1 targets
      ``[B, C]``), ``"regression"`` (``[B, K]`` values) or ``"token"`` (``[B, T, C]`` logits, targets
      ``[B, T]`` with -100 where nothing is predicted); the evaluators pick their metrics from it.
    * ``inputs(batch, backbone)`` (optional): what the head reads; default ``backbone.embed(batch)``
      (pooled ``[B, D]``). A token head reads per-position states.
    * ``forward(features) -> outputs``, ``loss(outputs, targets) -> scalar``,
      ``predict(outputs) -> predictions`` (class ids, 0/1 labels or values)."""

    target: str
    problem: str

    def __call__(self, features: torch.Tensor) -> torch.Tensor: ...

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...

    def predict(self, outputs: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class Evaluator(Protocol):
    """Measures a backbone; ``evaluate(context)`` returns named float metrics. An evaluator that
    fits on a second data set (kNN bank, probe) sets ``needs_fit_data: ClassVar[bool] = True`` on
    its options model, so recipes without ``fit_data`` are rejected at validation."""

    def evaluate(self, context: EvalContext) -> dict[str, float]: ...


@dataclass
class FeedbackResult:
    """What a :class:`Feedback` returns after a round: how the next round's data looks.

    With ``N = len(context.data) + len(samples)`` (the feedback's data as built, then the appended
    samples):

    * ``weights``: a ``[N]`` tensor of non-negative sampling weights (not all zero), or ``None`` for
      uniform sampling. Every task that trains on the feedback's data draws its next round's samples
      with replacement in proportion to them (the ``sample_weights`` path; multiplied by the task's
      own ``sample_weights`` when it has some): the curriculum.
    * ``fields``: ``{key: tensor [N, ...]}``: ``sample[key] = fields[key][i]`` is added to sample ``i``
      as the tasks see it (pseudo-labels, confidences). ``index`` cannot be a field.
    * ``samples``: sample dicts appended after the data's own (new training signal); they replace
      the samples an earlier round appended (return ``context.previous.samples`` to keep them).
    * ``metrics``: named floats, logged as ``feedback/<name>`` in the run's ``round`` record.

    The state after round ``r`` is this result alone (saved to ``<run>/rounds/<r>/``), so a resumed
    run needs only the last round's files."""

    weights: Any = None
    fields: dict[str, Any] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Feedback(Protocol):
    """A round's self-evaluation step (``register_feedback``, ``[rounds.feedback]``): after each round
    but the last, ``run(context)`` looks at the trained backbone and tasks and the training data (a
    :class:`FeedbackContext`) and returns a :class:`FeedbackResult` for the next round. It must not
    change the model (the core checks), and its randomness must come from ``context.generator``
    (seeded by the run seed and the round), so that a resumed run computes the same result."""

    def run(self, context: FeedbackContext) -> FeedbackResult: ...


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
    shared by modality adapters).

    ``load_weights`` is False when trained weights are loaded into the component right after it is
    built (a resume, ``selfsup eval`` of a checkpoint, a served run or export): a backbone with a
    ``pretrained`` option then builds its architecture (reading what it needs to know it, such as
    a config file) but neither reads nor loads the pretrained tensors (API 1.5)."""

    name: str
    seed: int = 0
    base_dir: Path = field(default_factory=Path.cwd)
    backbone: Any = None
    data: Any = None
    backbones: dict[str, Any] = field(default_factory=dict)  # backbones: those built before it, by recipe key
    load_weights: bool = True
    _registry: Any = field(default=None, repr=False, compare=False)  # set by the core; see build()

    def resolve(self, path: str | Path) -> Path:
        """``path`` made absolute against the recipe's directory."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    def build(self, kind: str, type: str, options: Mapping[str, Any] | Any = None, **context: Any) -> Any:
        """Build another registered component by its registry name: a composite component's parts.

        ``kind`` is a recipe table name (``"data"``, ``"augmentations"``, ``"backbones"``, ``"tasks"``,
        ``"evaluators"``, ``"heads"``, ``"feedback"``) or a registry kind (``"data_source"``, ...);
        ``type`` the registered name (``"digits"``); ``options`` a dict validated by that component's
        options model (relative paths against the same ``base_dir``). The part gets this context
        (same ``seed``, ``base_dir`` and registry), with ``name``, ``backbone``, ``data`` or
        ``backbones`` replaced when given.
        A plugin uses it to build a sibling plugin's component without importing its modules, e.g.
        ``context.build("data", "synth_speech", {"split": "train", "transcripts": True})``.

        Raises ``ValueError`` naming the component when ``type`` is not registered or ``options``
        are invalid. Contexts made by hand (tests) build from the installed plugins."""
        registry = self._registry
        if registry is None:
            from selfsup.plugins import get_plugin_manager

            registry = get_plugin_manager().registry
        internal = _KIND_OF_TABLE.get(kind, kind)
        if internal not in _KIND_OF_TABLE.values():
            raise ValueError(f"{self.name}: context.build got kind {kind!r}; use one of "
                             f"{', '.join(_KIND_OF_TABLE)} (or {', '.join(_KIND_OF_TABLE.values())})")
        label = internal.replace("_", " ")
        component = registry.get(internal, type)
        if component is None:
            known = registry.names(internal)
            near = registry.closest(internal, type)
            hint = f"; did you mean {near!r}?" if near else f"; registered: {', '.join(known) or 'none'}"
            raise ValueError(f"{self.name}: no {label} named {type!r} is registered (is the plugin that provides it "
                             f"installed?){hint}")
        unknown = set(context) - {"name", "backbone", "data", "backbones"}
        if unknown:
            raise TypeError(f"context.build() may replace name, backbone, data or backbones, not {sorted(unknown)}")
        parsed = options if isinstance(options, component.options) else _parse(component, options, self, label, type)
        return component.factory(parsed, replace(self, **context))


    def decoder(self, type: str, options: Mapping[str, Any] | Any = None) -> Any:
        """The :class:`Decoder` of the data source ``type`` with ``options`` (from its ``decoder=``
        factory, given this context): how a served raw input becomes one of its samples. Raises
        ``ValueError`` when the source is not registered or declares no decoder."""
        registry = self._registry
        if registry is None:
            from selfsup.plugins import get_plugin_manager

            registry = get_plugin_manager().registry
        component = registry.get("data_source", type)
        if component is None:
            raise ValueError(f"{self.name}: no data source named {type!r} is registered")
        if component.decoder is None:
            raise ValueError(f"data source {type!r} ({component.plugin}) cannot decode served inputs: its "
                             f"plugin registers no decoder= for it")
        parsed = (options if isinstance(options, component.options)
                  else _parse(component, options, self, "data source", type, data_optional=True))
        return component.decoder(parsed, self)


#: Recipe table name -> registry kind (the vocabulary of :meth:`BuildContext.build`).
_KIND_OF_TABLE = {"data": "data_source", "augmentations": "augmentation", "backbones": "backbone",
                  "tasks": "pretext_task", "evaluators": "evaluator", "heads": "head", "feedback": "feedback"}


def _parse(component: Any, options: Any, context: BuildContext, label: str, type: str,
           data_optional: bool = False) -> Any:
    """``options`` validated by ``component``'s options model; errors in one line, naming the fields.
    ``data_optional``: paths the data lives at need not exist (a decoder, which never reads them)."""
    from pydantic import ValidationError

    validation = {"base_dir": context.base_dir, "data_optional": data_optional}
    try:
        return component.options.model_validate(dict(options or {}), context=validation)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"{context.name}: invalid options for the {label} {type!r}: {problems}") from None


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
    ``backbone`` is ``{role: backbone}``, names one), cached per call of the evaluator set. ``inputs(source, key)``
    gives the raw ``sample[key]`` values flattened (``[N, F]``), for raw-input baselines.
    ``batches(source)`` yields the source's collated batches in order (CPU), through the evaluator's
    augmentations, for evaluators that run more than ``embed`` (a fine-tuned head)."""

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
    # {task name: task module}: for evaluators that measure a task's heads (retrieval through projections)
    tasks: Any = None
    extras: dict[str, Any] = field(default_factory=dict)
    batches: Any = None  # Callable[[source], Iterator[batch]]: collated batches in order, on the CPU


@dataclass
class FeedbackContext:
    """Given to ``Feedback.run`` after round ``round`` (0-based) of ``rounds`` trained.

    ``backbone`` is the backbone named by ``[rounds.feedback] backbone`` in eval mode (the feedback
    runs on rank 0, without gradients); ``tasks`` the run's ``{name: task module}``. ``data`` is the
    feedback's data source as built (no fields, no appended samples); ``previous`` the result of the
    round before (``None`` after round 0): its ``fields`` are what this round trained on.
    ``features(source=None)`` gives ``(features [N, D] float32 on the CPU, labels [N] int64 or None)``:
    ``backbone.embed`` over ``source`` (default ``data``) in order, through the feedback's ``augment``
    pipeline; ``batches(source=None)`` the collated batches in order. ``generator`` is a CPU generator
    seeded by (run seed, round); ``seed`` the derived integer seed. ``out_dir`` is the folder that
    becomes ``<run>/rounds/<round>/`` when the feedback returns (files written there are kept with
    its result); ``run_dir`` the run's folder."""

    name: str
    round: int
    rounds: int
    step: int
    seed: int
    device: torch.device
    backbone: Any
    tasks: Any
    data: Any
    batch_size: int
    generator: torch.Generator
    run_dir: Path
    out_dir: Path
    features: Any  # Callable[[source | None], tuple[Tensor [N, D], Tensor | None]]
    batches: Any  # Callable[[source | None], Iterator[batch]]
    previous: FeedbackResult | None = None
    extras: dict[str, Any] = field(default_factory=dict)
