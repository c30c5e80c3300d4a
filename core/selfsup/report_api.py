"""What a plugin's ``report_sections`` hook receives and returns (``selfsup report RUN``).

``selfsup report`` writes one self-contained HTML file about a run. Plugins add sections to it
through the ``report_sections(run)`` hook: ``run`` is a :class:`ReportRun` (the run directory, its
recipe, its metrics, and the trained model, loaded only when a plugin asks for it); the hook
returns a list of :class:`ReportSection`, or ``None`` when nothing of the plugin's applies::

    import selfsup
    from selfsup.report_api import ReportSection

    @selfsup.hookimpl
    def report_sections(run):
        keys = run.tasks_of_type("my_task")
        if not keys:
            return None
        from my_plugin.report import usage_figure  # matplotlib and torch only when it applies

        return [ReportSection(f"My task ({key})", figures=[usage_figure(run, key)]) for key in keys]

Importing this module imports neither torch nor matplotlib.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

__all__ = ["ReportSection", "ReportRun", "TrainedComponents"]


@dataclass
class ReportSection:
    """One section of a run report, as a plugin returns it.

    ``figures``: matplotlib ``Figure`` objects (rendered to PNG and closed by the core) or PNG bytes;
    ``captions``: one text per figure, by position (fewer is fine). ``table``: rows as dicts (the
    columns are the keys, in first-seen order). ``note``: a paragraph of plain text. Every text is
    escaped: a section cannot add markup, scripts or links to external resources."""

    title: str
    figures: Sequence[Any] = ()
    captions: Sequence[str] = ()
    table: Sequence[Mapping[str, Any]] = ()
    note: str = ""


@dataclass
class TrainedComponents:
    """A run rebuilt from its recipe with the weights of a checkpoint: ``backbones`` and ``tasks``
    (``nn.Module`` objects by recipe key, in eval mode, on ``device``), ``task_backbones`` (each
    task's backbone, or ``{role: backbone}`` for a task with several), ``data`` (the data sources by
    recipe key, without augmentations) and the ``checkpoint`` directory loaded."""

    backbones: dict[str, Any]
    tasks: dict[str, Any]
    task_backbones: dict[str, Any]
    data: dict[str, Any]
    checkpoint: Path
    device: str = "cpu"


@dataclass
class ReportRun:
    """A run directory as a report sees it.

    ``recipe``: the resolved recipe (``recipe.json``) as a dict; ``records``: the history of
    ``metrics.jsonl`` (``{"kind": "train" | "eval", "step": N, metric: value, ...}``, superseded
    records after a resume already dropped); ``environment``: ``environment.json`` (empty when the
    run has none). :attr:`components` and :attr:`model` build the trained model on first use only."""

    path: Path
    recipe: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    _loader: Callable[[], Any] | None = field(default=None, repr=False)
    _loaded: Any = field(default=None, repr=False)
    _load_error: BaseException | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ recipe

    def task_types(self) -> dict[str, str]:
        """``{task key: task type}`` of the recipe's ``[tasks]``."""
        return {key: str(spec.get("type")) for key, spec in (self.recipe.get("tasks") or {}).items()}

    def tasks_of_type(self, *types: str) -> list[str]:
        """The keys of the recipe's tasks whose type is one of ``types``."""
        return [key for key, kind in self.task_types().items() if kind in types]

    def data_types(self) -> dict[str, str]:
        """``{data key: data source type}`` of the recipe's ``[data]``."""
        return {key: str(spec.get("type")) for key, spec in (self.recipe.get("data") or {}).items()}

    def evaluators_of_type(self, *types: str) -> list[str]:
        """The keys of the recipe's evaluators whose type is one of ``types``."""
        return [key for key, spec in (self.recipe.get("evaluators") or {}).items() if spec.get("type") in types]

    # ------------------------------------------------------------------ metrics

    def series(self, key: str, kind: str | None = "train") -> tuple[list[int], list[float]]:
        """``(steps, values)`` of metric ``key`` over the records of ``kind`` (``None``: any kind);
        non-finite values (stored as strings such as ``"nan"``) come back as floats."""
        from selfsup.report.records import series

        return series(self.records, key, kind)

    # ------------------------------------------------------------------ the trained model

    @property
    def components(self) -> TrainedComponents:
        """The run rebuilt with its best (else newest intact) checkpoint's weights, loaded once.
        Raises (``FileNotFoundError`` without a checkpoint, a recipe error when a plugin is missing)."""
        if self._loaded is None and self._load_error is None:
            if self._loader is None:
                raise RuntimeError("this ReportRun has no loader: the model is not available")
            try:
                self._loaded = self._loader()
            except BaseException as err:
                self._load_error = err
        if self._load_error is not None:
            raise self._load_error
        return self._loaded[0]

    @property
    def model(self) -> Any:
        """The trained model as :func:`selfsup.load` gives it (a :class:`selfsup.Model`), built from
        :attr:`components` (so loaded once for all plugins)."""
        self.components  # noqa: B018 - loads, or raises the loading error
        return self._loaded[1]

    def samples(self, data: str, count: int, keys: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Up to ``count`` samples of the recipe's data source ``data``, unaugmented, spread evenly over
        a map-style source (the first ones of a streaming one); only ``keys`` of each when given."""
        source = self.components.data[data]
        if hasattr(source, "__len__") and hasattr(source, "__getitem__"):
            size = len(source)
            picked = sorted({int(i * size / min(count, size)) for i in range(min(count, size))}) if size else []
            samples = [source[i] for i in picked]
        else:
            samples = []
            for sample in source.iterate(epoch=0, rank=0, world_size=1, seed=int(self.recipe.get("seed", 0))):
                samples.append(sample)
                if len(samples) >= count:
                    break
        if keys is not None:
            samples = [{k: s[k] for k in keys if k in s} for s in samples]
        return samples

