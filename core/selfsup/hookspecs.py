"""The selfsup hook contract.

Every way a plugin can extend selfsup is one hook below. A plugin is a module (or object) whose
functions carry the ``@selfsup.hookimpl`` marker and are named like these specifications; it is
found through the ``selfsup`` entry-point group, a ``--plugins-dir`` file, or direct registration.

Three kinds of hooks:

* **Registration hooks** (``register_*``) are called once, when the plugin manager is first asked
  for components. Each receives a ``register`` callback (see :class:`selfsup.registry.Register`)::

      register(name, factory, *, options=OptionsModel, modality="vision", summary="...",
               produces={"image": "float32[C,H,W]"}, consumes=..., feeds=...)

  ``factory(options, context)`` builds the component later; keep heavy imports (torch,
  transformers) inside it so that loading plugins stays fast. ``produces``/``consumes``/``feeds``
  declare the sample keys the component yields and reads (:mod:`selfsup.contract`), which recipe
  validation checks. These hooks return nothing.

* **Lifecycle events** (``on_*``) are called by the training loop on rank 0 in the order
  ``on_train_start``, (``on_step_end`` | ``on_evaluation_end`` | ``on_checkpoint_saved`` |
  ``on_round_end``)*, ``on_train_end``. They are for loggers and callbacks, return nothing, and must not change the
  model. An exception raised by one plugin is reported as a warning and does not stop training.

* **Report sections** (``report_sections``) are called by ``selfsup report RUN``; each returns
  sections (:class:`selfsup.report_api.ReportSection`) for the run's HTML report, or ``None``.

Each plugin's implementation is called on its own, in load order (entry points sorted by name,
then plugins-directory files), so one plugin failing never hides the others. Because selfsup does
the calling, pluggy's ordering and wrapping markers cannot be honoured: an implementation marked
``tryfirst``, ``trylast``, ``wrapper`` or ``hookwrapper`` makes its plugin fail to register, with
an error naming the plugin and the hook. A ``@hookimpl`` function whose name matches no hook below
is reported as an error of its plugin (``selfsup plugins``, and a warning), with the nearest hook
name; the plugin's other hooks still work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import pluggy

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps plugin loading free of heavy imports
    import click

    from selfsup.events import RunInfo
    from selfsup.registry import Register
    from selfsup.report_api import ReportRun, ReportSection

hookspec = pluggy.HookspecMarker("selfsup")


# --------------------------------------------------------------------------------------------
# Registration hooks: called once per process, when components are first looked up.
# --------------------------------------------------------------------------------------------


@hookspec
def register_data_sources(register: Register) -> None:
    """Register data sources: factories returning a :class:`selfsup.components.DataSource`
    (map-style: ``len`` + ``__getitem__`` giving a sample dict) or an
    :class:`selfsup.components.IterableDataSource` (streaming).

    Called once, the first time data sources are listed or a recipe is validated.
    """


@hookspec
def register_augmentations(register: Register) -> None:
    """Register augmentations: factories returning a :class:`selfsup.components.Augmentation`,
    a callable ``(sample, generator) -> sample`` applied per sample in data-loader workers.

    Called once, the first time augmentations are listed or a recipe is validated.
    """


@hookspec
def register_pretext_tasks(register: Register) -> None:
    """Register pretext tasks: factories returning a :class:`selfsup.components.PretextTask`,
    an ``nn.Module`` whose ``forward(batch, backbone)`` gives a :class:`TaskOutput` (scalar loss
    plus named metrics). The factory's context carries the task's backbone, to size heads.

    Called once, the first time tasks are listed or a recipe is validated.
    """


@hookspec
def register_backbones(register: Register) -> None:
    """Register backbones: factories returning a :class:`selfsup.components.Backbone`, an
    ``nn.Module`` with an ``output_dim`` attribute and ``embed(batch) -> [B, output_dim]``.

    Called once, the first time backbones are listed or a recipe is validated.
    """


@hookspec
def register_evaluators(register: Register) -> None:
    """Register evaluators: factories returning a :class:`selfsup.components.Evaluator`, whose
    ``evaluate(context)`` returns named float metrics.

    Called once, the first time evaluators are listed or a recipe is validated.
    """


@hookspec
def register_heads(register: Register) -> None:
    """Register supervised heads for fine-tuning: factories returning a :class:`selfsup.components.Head`,
    an ``nn.Module`` mapping a backbone's features to predictions, with its own loss and decoding.
    A ``finetune`` task builds one by name (``head = "classification"``); the context carries the
    backbone (size the head from ``backbone.output_dim``) and the task's data.

    Called once, the first time heads are listed or a recipe is validated.
    """


@hookspec
def register_feedback(register: Register) -> None:
    """Register feedback components for training in rounds (``[rounds]``, docs/autonomous.md):
    factories returning a :class:`selfsup.components.Feedback`, whose ``run(context)`` looks at the
    model trained so far and its training data (a :class:`selfsup.components.FeedbackContext`) and
    returns a :class:`selfsup.components.FeedbackResult`: per-sample sampling weights for the next
    round (a curriculum), fields added to every sample (pseudo-labels), samples appended to the data,
    and metrics. ``produces`` declares the fields it adds (``{"pseudo_label": "int64[]"}``),
    ``consumes`` what it reads of its data.

    Called once, the first time feedback components are listed or a recipe is validated.
    """


@hookspec
def register_recipes(register: Register) -> None:
    """Register recipes the plugin ships, by name. Here ``factory`` is a zero-argument callable
    returning the recipe's TOML text (e.g. read with ``importlib.resources``); ``options`` is unused.

    Called once, when ``selfsup recipes`` lists them or ``selfsup train NAME`` resolves one.
    """


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add subcommands to the ``selfsup`` command line. ``cli`` is the top-level ``click.Group``::

        @hookimpl
        def register_commands(cli):
            @cli.command()
            def prepare(): ...

    Called once, when the CLI starts, before arguments are parsed. Keep imports inside commands.
    """


# --------------------------------------------------------------------------------------------
# Lifecycle events: called by the training loop, on rank 0 only.
# --------------------------------------------------------------------------------------------


@hookspec
def on_train_start(run: RunInfo) -> None:
    """Training is about to take its first step (``run.step`` is 0, or the resumed step).

    ``run`` describes the run: name, output directory, recipe (as a dict), device, world size,
    total steps and the model's parameter count.
    """


@hookspec
def on_step_end(run: RunInfo, step: int, metrics: Mapping[str, float]) -> None:
    """An optimizer step finished and metrics were logged (every ``train.log_every`` steps).

    ``metrics`` holds ``loss``, ``lr``, ``loss/<task>``, ``<task>/<metric>`` and throughput
    figures, as plain floats. ``step`` counts optimizer steps from 1.
    """


@hookspec
def on_evaluation_end(run: RunInfo, step: int, metrics: Mapping[str, float]) -> None:
    """The evaluators due at ``step`` ran; ``metrics`` maps ``<evaluator>/<metric>`` to floats.

    A plugin may call ``run.request_stop(reason)`` here (or in ``on_step_end``): the run stops after
    this step, as a sweep's pruner stops a bad trial within one evaluation interval."""


@hookspec
def on_checkpoint_saved(run: RunInfo, step: int, path: str) -> None:
    """A checkpoint was written completely (atomically) to the directory ``path``."""


@hookspec
def on_round_end(run: RunInfo, round: int, step: int, metrics: Mapping[str, float]) -> None:
    """A recipe with ``[rounds]`` finished round ``round`` (0-based) at optimizer step ``step``: its
    feedback ran, was saved to ``<run>/rounds/<round>/`` and now shapes the next round's data.
    ``metrics`` holds the feedback's own metrics (``feedback/<name>``) and the core's figures of the
    new sampling weights (``round/<name>``). Not called after the last round (it has no feedback), nor
    again when a resumed run reloads a round's saved feedback."""


@hookspec
def on_train_end(run: RunInfo, status: str, metrics: Mapping[str, Any]) -> None:
    """Training stopped. ``status`` is ``"completed"``, ``"diverged"`` (non-finite loss or
    weights), ``"preempted"`` (SIGTERM/SIGINT; a checkpoint was written), ``"stopped"`` (a plugin called
    ``run.request_stop(reason)``; a checkpoint was written, ``run.stop_reason`` says why) or ``"failed"``;
    ``metrics`` holds the last logged and evaluation metrics."""


# --------------------------------------------------------------------------------------------
# Reports: called by ``selfsup report RUN``.
# --------------------------------------------------------------------------------------------


@hookspec
def report_sections(run: ReportRun) -> list[ReportSection] | None:
    """Sections this plugin adds to a run's HTML report (``selfsup report RUN``): a list of
    :class:`selfsup.report_api.ReportSection` (title, figures, captions, table rows, note), or
    ``None`` when nothing of the plugin's applies to the run (``run.tasks_of_type("mae")`` says).

    ``run`` is a :class:`selfsup.report_api.ReportRun`: the run directory, its recipe and metric
    records; ``run.model`` / ``run.components`` load the trained model once, only if asked.
    Each plugin's implementation is called on its own: one that raises is reported as a warning
    and as a "section failed" note in the report, and the report is still written.
    """
