"""The ``selfsup`` command line.

``--help``, ``plugins``, ``tasks``, ``recipes``, ``install`` and ``plugin new`` never import torch;
``train`` and ``eval`` import it when they run, and ``validate`` when it imports the factories
(``lazy("pkg.mod:fn")`` targets) of the recipe's components, to find a broken one before ``train``.
Errors in recipes print one readable message (no traceback) and exit with status 2; a diverged run exits with status 3,
a run stopped by SIGTERM/SIGINT after saving with 75, a failed checkpoint write with 74.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import click

from selfsup import __version__
from selfsup.plugins import PluginManager, PluginWarning, get_plugin_manager
from selfsup.recipe import RecipeError
from selfsup.report.command import report as report_command
from selfsup.serving.command import serve as serve_command
from selfsup.sweep.command import sweep as sweep_command

EXIT_COMPONENT = 1
EXIT_RECIPE = 2
EXIT_DIVERGED = 3
EXIT_IO = 74  # EX_IOERR: a checkpoint could not be written


def _pre_parse(argv: list[str]) -> tuple[list[str], bool]:
    """The top-level ``--plugins-dir`` values and ``--trust`` flag, read before click parses (plugins
    add commands). Only the options before the subcommand count: ``selfsup train x --plugins-dir d``
    is click's error, not a directory whose code runs first."""
    dirs, trust, i = [], False, 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--plugins-dir":
            if i + 1 < len(argv):
                dirs.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith("--plugins-dir="):
            dirs.append(arg.split("=", 1)[1])
        elif arg == "--trust":
            trust = True
        elif arg == "--" or not arg.startswith("-"):
            break  # the subcommand: the rest is its own
        i += 1
    return dirs, trust


def _pre_parse_plugin_dirs(argv: list[str]) -> list[str]:
    """The top-level ``--plugins-dir`` values of ``argv`` (see :func:`_pre_parse`)."""
    return _pre_parse(argv)[0]


def _pm() -> PluginManager:
    return get_plugin_manager()


def _fail(message: str, code: int = EXIT_RECIPE) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _console():
    from rich.console import Console

    return Console()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="selfsup")
@click.option(
    "--plugins-dir",
    multiple=True,
    type=click.Path(file_okay=False),
    help="Also load every *.py file in DIR as a plugin (repeatable; also SELFSUP_PLUGINS_DIR). A folder other "
    "users can write to is refused unless --trust is given.",
)
@click.option(
    "--trust",
    is_flag=True,
    help="Load --plugins-dir / SELFSUP_PLUGINS_DIR folders even when other users can write to them "
    "(also SELFSUP_TRUST_PLUGINS_DIR=1).",
)
def cli(plugins_dir: tuple[str, ...], trust: bool) -> None:
    """selfsup: self-supervised learning from plugins and TOML recipes.

    Plugins are found through the 'selfsup' entry-point group; SELFSUP_PLUGINS=a,b restricts which
    load, SELFSUP_TRACE_PLUGINS=1 logs hook calls.
    """


# ----------------------------------------------------------------------------- recipes & runs


def _load(recipe: str, overrides: tuple[str, ...]):
    from selfsup.recipe import load_recipe

    return load_recipe(recipe, _pm().registry, overrides)


@cli.command()
@click.argument("recipe")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a field, e.g. train.lr=3e-4.")
def validate(recipe: str, overrides: tuple[str, ...]) -> None:
    """Check RECIPE (a .toml file or a shipped recipe name) without training."""
    try:
        loaded = _load(recipe, overrides)
    except RecipeError as err:
        _fail(str(err))
    r = loaded.recipe
    click.echo(f"{loaded.source}: valid")
    for name, task in r.tasks.items():
        augs = " -> ".join(task.augment) or "none"
        click.echo(f"  task {name}: {task.type} on data {task.data!r} ({r.data[task.data].type}), "
                   f"backbone {_backbone_text(r, task.backbone)}, augment {augs}, weight {task.weight:g}")
    for name, ev in r.evaluators.items():
        when = f"every {ev.every} steps" if ev.every else "at the end"
        click.echo(f"  evaluator {name}: {ev.type} on {ev.data!r}, {when}")
    length = f"{r.train.max_steps} steps" if r.train.max_steps else f"{r.train.epochs:g} epochs"
    click.echo(f"  train: {r.train.optimizer} lr {r.train.lr:g}, batch {r.train.batch_size}, {length}, "
               f"{r.train.precision}, output {r.run_dir()}")


def _launch_options(command: Any) -> Any:
    """torchrun's multi-node and elastic options, shared by ``train`` and ``finetune``."""
    for option in reversed([
        click.option("--nnodes", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Machines taking part; start the same command on each (torchrun rendezvous)."),
        click.option("--node-rank", type=click.IntRange(min=0), default=None,
                     help="This machine's rank, with --rdzv-backend static (c10d assigns ranks itself)."),
        click.option("--rdzv-endpoint", default=None, metavar="HOST:PORT",
                     help="The rendezvous address every node can reach (required with --nnodes > 1)."),
        click.option("--rdzv-backend", type=click.Choice(["c10d", "static"]), default="c10d", show_default=True,
                     help="c10d: elastic rendezvous hosted by the first node to arrive; static: fixed node ranks."),
        click.option("--rdzv-id", default=None, help="The job's id, the same on every node (default: the run name)."),
        click.option("--max-restarts", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Restart every worker this many times after one fails; restarted workers resume from "
                          "the newest intact checkpoint."),
    ]):
        command = option(command)
    return command


@cli.command()
@click.argument("recipe")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a field, e.g. train.lr=3e-4.")
@click.option("--resume", is_flag=True,
              help="Continue from the newest intact checkpoint in the run's output directory.")
@click.option("--resume-weights-only", is_flag=True,
              help="Continue from the newest checkpoint's weights with a fresh optimizer (allows recipe changes "
                   "that --resume refuses, such as the optimizer or precision).")
@click.option("--nproc", type=click.IntRange(min=1), default=None,
              help="Launch N DDP processes (per node) with torchrun.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--verbose", is_flag=True, help="Show the traceback of an error raised inside a component.")
@_launch_options
def train(recipe: str, overrides: tuple[str, ...], resume: bool, resume_weights_only: bool, nproc: int | None,
          no_progress: bool, verbose: bool, **launch: Any) -> None:
    """Train from RECIPE (a .toml file or a shipped recipe name).

    Exit status: 0 completed, 2 invalid recipe or refused resume, 3 diverged (the last checkpoint with
    finite weights is kept), 74 a checkpoint could not be written (disk full...), 75 stopped by
    SIGTERM/SIGINT after saving a checkpoint (continue with --resume), 1 an error inside a component.
    """
    try:
        loaded = _load(recipe, overrides)
    except RecipeError as err:
        _fail(str(err))
    _run_training(loaded, resume, resume_weights_only, nproc, no_progress, verbose, launch)


def _train_options(command: Any) -> Any:
    """The options ``train`` and ``finetune`` share."""
    for option in reversed([
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Override a field, e.g. train.lr=3e-4."),
        click.option("--resume", is_flag=True,
                     help="Continue from the newest intact checkpoint in the run's output directory."),
        click.option("--resume-weights-only", is_flag=True,
                     help="Continue from the newest checkpoint's weights with a fresh optimizer (allows recipe "
                          "changes that --resume refuses, such as the optimizer or precision)."),
        click.option("--nproc", type=click.IntRange(min=1), default=None,
                     help="Launch N DDP processes (per node) with torchrun."),
        click.option("--no-progress", is_flag=True, help="Hide the progress bar."),
        click.option("--verbose", is_flag=True, help="Show the traceback of an error raised inside a component."),
    ]):
        command = option(command)
    return command


@cli.command()
@click.argument("pretrained", type=click.Path(exists=True, path_type=Path))
@click.argument("recipe")
@click.option("--backbone", default=None, help="The backbone's key in PRETRAINED when it has several.")
@_train_options
@_launch_options
def finetune(pretrained: Path, recipe: str, backbone: str | None, overrides: tuple[str, ...], resume: bool,
             resume_weights_only: bool, nproc: int | None, no_progress: bool, verbose: bool, **launch: Any) -> None:
    """Fine-tune a pretrained backbone with RECIPE (a .toml file or a shipped recipe name).

    PRETRAINED is a run directory (its best checkpoint if it recorded one, else its newest intact
    one), one of its checkpoints, or a `selfsup export --format selfsup` folder. It becomes the
    recipe's [backbones.pretrained] (or its only backbone), with the type and options it was trained
    with. The run is named RECIPE-RUN unless the recipe names it. Exit status as for `train`.
    """
    from selfsup.recipe import load_recipe

    try:
        loaded = load_recipe(recipe, _pm().registry, overrides, pretrained=pretrained, pretrained_backbone=backbone)
    except RecipeError as err:
        _fail(str(err))
    _run_training(loaded, resume, resume_weights_only, nproc, no_progress, verbose, launch)


def _run_training(loaded: Any, resume: bool, resume_weights_only: bool, nproc: int | None, no_progress: bool,
                  verbose: bool, launch: dict[str, Any] | None = None) -> None:
    launch = launch or {}
    if "WORLD_SIZE" not in os.environ and ((nproc or 1) > 1 or launch.get("nnodes", 1) > 1
                                           or launch.get("max_restarts", 0) > 0):
        sys.exit(_launch_torchrun(nproc or 1, loaded.recipe.run_dir(), _torchrun_args(nproc or 1, loaded, launch)))
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0 and not resume_weights_only:
        resume = True  # torchrun restarted the workers after a failure: continue from the newest checkpoint
        if int(os.environ.get("RANK", "0")) == 0:
            click.echo(f"restart {os.environ['TORCHELASTIC_RESTART_COUNT']} after a worker failed: resuming from "
                       "the newest intact checkpoint", err=True)

    from selfsup.engine.checkpoint import CheckpointWriteError
    from selfsup.engine.errors import ComponentError
    from selfsup.engine.loop import RunDirInUse, TrainingDiverged
    from selfsup.engine.loop import train as run_training
    from selfsup.engine.preempt import EXIT_PREEMPTED, Preempted

    try:
        result = run_training(loaded, _pm(), resume=resume, resume_weights_only=resume_weights_only,
                              progress=not no_progress)
    except (RecipeError, RunDirInUse) as err:
        _fail(str(err))
    except TrainingDiverged as err:
        _fail(str(err), EXIT_DIVERGED)
    except Preempted as err:
        _fail(str(err), EXIT_PREEMPTED)
    except CheckpointWriteError as err:
        _fail(str(err), EXIT_IO)
    except ComponentError as err:
        if verbose:
            import traceback

            traceback.print_exception(err.__cause__ or err)
        _fail(_component_message(err) + ("" if verbose else " (--verbose shows the traceback)"), EXIT_COMPONENT)
    if int(os.environ.get("RANK", "0")) == 0:
        _print_result(result)


def _component_message(err: Exception) -> str:
    """The one-line message of a ComponentError, also when a data-loader worker raised it (torch then
    re-raises it with the worker's traceback as its text: the last line holds the message)."""
    text = str(err)
    if text.startswith("Caught "):
        lines = [line for line in text.splitlines() if line.strip()]
        last = lines[-1] if lines else text
        return last.split("ComponentError: ", 1)[-1]
    return text


_LAUNCH_FLAGS = ("--nproc", "--nnodes", "--node-rank", "--rdzv-endpoint", "--rdzv-backend", "--rdzv-id",
                 "--max-restarts")


def _torchrun_args(nproc: int, loaded: Any, launch: dict[str, Any]) -> list[str]:
    """torchrun's arguments: one machine (``--standalone``) or a rendezvous of ``--nnodes`` machines."""
    args = [f"--nproc-per-node={nproc}", f"--max-restarts={launch.get('max_restarts', 0)}"]
    nnodes = launch.get("nnodes", 1)
    if nnodes == 1 and not launch.get("rdzv_endpoint"):
        return ["--standalone", *args]
    if not launch.get("rdzv_endpoint"):
        _fail("--nnodes > 1 needs --rdzv-endpoint HOST:PORT, the same on every node (an address of the first node)")
    backend = launch.get("rdzv_backend") or "c10d"
    args += [f"--nnodes={nnodes}", f"--rdzv-backend={backend}", f"--rdzv-endpoint={launch['rdzv_endpoint']}",
             f"--rdzv-id={launch.get('rdzv_id') or loaded.recipe.name or 'selfsup'}"]
    if backend == "static":
        if launch.get("node_rank") is None:
            _fail("--rdzv-backend static needs --node-rank (0 on the node at --rdzv-endpoint)")
        args.append(f"--node-rank={launch['node_rank']}")
    return args


def _launch_torchrun(nproc: int, run_dir: Path, torchrun_args: list[str]) -> int:
    """Re-run this command under torchrun (minus the launch options: ``--nproc``, ``--nnodes``, ...).

    A SIGTERM sent to this process is passed on to torchrun, which relays it to every worker: they
    finish the step, save and exit with 75 (torchrun itself then reports the workers' exit). Ctrl-C
    reaches every process of the terminal's group directly, so SIGINT is not relayed here."""
    import signal

    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg in _LAUNCH_FLAGS:
            skip = True
            continue
        if arg.split("=", 1)[0] in _LAUNCH_FLAGS:
            continue
        args.append(arg)
    cmd = [sys.executable, "-m", "torch.distributed.run", *torchrun_args, "-m", "selfsup", *args]
    child = subprocess.Popen(cmd)
    relayed: list[int] = []

    def relay(signum: int, _frame: Any) -> None:
        relayed.append(signum)
        child.send_signal(signum)

    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, relay),
                signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN)}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if relayed and code != 0:
        from selfsup.engine.checkpoint import latest_checkpoint
        from selfsup.engine.preempt import EXIT_PREEMPTED

        saved = latest_checkpoint(run_dir)
        click.echo(f"error: SIGTERM received: the workers stopped after saving {saved or 'no checkpoint'}; "
                   f"continue with `selfsup train RECIPE --resume --nproc {nproc}`", err=True)
        return EXIT_PREEMPTED
    return code


def _print_result(result: Any) -> None:
    _print_metrics(f"{result.status} at step {result.step}", {**result.metrics, **result.evaluation})
    click.echo(f"run directory: {result.run_dir}")


def _print_metrics(title: str, metrics: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    _console().print(table)


def _backbone_text(recipe: Any, ref: str | dict[str, str]) -> str:
    if isinstance(ref, str):
        return f"{ref!r} ({recipe.backbones[ref].type})"
    return "{" + ", ".join(f"{role}: {key!r} ({recipe.backbones[key].type})" for role, key in ref.items()) + "}"


@cli.command(name="eval")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Default: the best (train.best), else the newest intact one.")
@click.option("--evaluator", "names", multiple=True, help="Run only these evaluators (repeatable).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe field first.")
@click.option("--random-init", is_flag=True,
              help="Evaluate the model before training (the seed's initialisation, or the starting weights of "
                   "a backbone loaded from trained ones): the baseline.")
@click.option("--baseline", is_flag=True, help="Evaluate the checkpoint and the baseline, side by side.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def eval_(
    run_dir: Path, checkpoint: Path | None, names: tuple[str, ...], overrides: tuple[str, ...],
    random_init: bool, baseline: bool, as_json: bool,
) -> None:
    """Evaluate a finished (or interrupted) run's checkpoint with the recipe's evaluators.

    The baseline (--random-init, --baseline) is the model before training: "random init" when every
    backbone starts from its seed, "starting weights" when one is loaded from trained weights."""
    from selfsup.evaluation import baseline_label, evaluate_run, save_baseline

    if baseline and random_init:
        _fail("--baseline already evaluates the random init; pass one of --baseline and --random-init")
    runs = [False, True] if baseline else [random_init]
    results = {}
    try:
        for untrained in runs:
            results[untrained] = evaluate_run(
                run_dir, _pm(), checkpoint=checkpoint, names=list(names), overrides=list(overrides),
                random_init=untrained
            )
    except (RecipeError, FileNotFoundError, ValueError) as err:
        _fail(str(err))
    label = baseline_label(run_dir)
    if baseline:
        (trained, used), (untrained, _) = results[False], results[True]
        save_baseline(run_dir, trained, untrained, used, evaluators=list(names), overrides=list(overrides))
        if as_json:
            key = "random_init" if label == "random init" else "starting_weights"
            click.echo(json.dumps({"trained": trained, key: untrained}, indent=2))
        else:
            _print_comparison(f"{run_dir.name}: {used.name} against {label}", trained, untrained, label)
        return
    metrics, used = results[random_init]
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    _print_metrics(f"{run_dir.name}: {label if random_init else used.name}", metrics)


def _print_comparison(title: str, trained: dict[str, Any], untrained: dict[str, Any], label: str) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("metric", "trained", label):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key in dict.fromkeys([*trained, *untrained]):
        cells = [trained.get(key), untrained.get(key)]
        table.add_row(key, *("" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in cells))
    _console().print(table)


@cli.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--format", "fmt", default="selfsup", show_default=True,
              help="selfsup, onnx, torchscript, or a format of the backbone's library (hf for text transformers, "
                   "timm for timm models).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Default: <run>/export/<format>.")
@click.option("--checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Default: the best (train.best), else the newest intact one.")
@click.option("--backbone", default=None, help="The backbone to export, by its recipe key (default: the fine-tuned "
                                               "one, else the first).")
def export(run_dir: Path, fmt: str, out: Path | None, checkpoint: Path | None, backbone: str | None) -> None:
    """Write RUN_DIR's model (backbone, and a fine-tuned head) in a format other tools load, with a
    model card (README.md). onnx and torchscript exports are checked against PyTorch before they are kept."""
    from selfsup.api import export as export_model
    from selfsup.exporting import ExportError

    try:
        folder = export_model(run_dir, format=fmt, out=out, checkpoint=checkpoint, backbone=backbone)
    except (RecipeError, ExportError, FileNotFoundError, ValueError) as err:
        _fail(str(err))
    click.echo(f"exported {run_dir} ({fmt}) to {folder}")


@cli.command()
@click.argument("model_path", metavar="RUN_OR_EXPORT", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", required=True, help="A data key of the run's recipe (e.g. val) or a TOML data table, "
                                            "e.g. '{ type = \"digits\", options = { split = \"val\" } }'.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="FILE.npy, FILE.npz or FILE.parquet.")
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Data-loader processes reading samples.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--backbone", default=None, help="A run's backbone by recipe key (default: the fine-tuned one, else the "
                                               "first).")
@click.option("--project", default=None, help="A task (e.g. clip) whose shared-space projection the embeddings go "
                                              "through.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def embed(model_path: Path, data: str, out: Path, batch_size: int, workers: int, device: str, backbone: str | None,
          project: str | None, no_progress: bool) -> None:
    """Embed a data set with a trained backbone: one row per sample, with its id and label."""
    from selfsup.api import load
    from selfsup.embed import data_source, embed_source, write_embeddings

    try:
        model = load(model_path, device=device, backbone=backbone, project=project)
        source = data_source(model, data, _pm())
        vectors, ids, labels = embed_source(model, source, batch_size=batch_size, workers=workers,
                                            progress=not no_progress)
        write_embeddings(out, vectors, ids, labels)
    except (RecipeError, FileNotFoundError, ValueError) as err:
        _fail(str(err))
    click.echo(f"wrote {vectors.shape[0]} x {vectors.shape[1]} embeddings to {out}")


cli.add_command(serve_command, name="serve")
cli.add_command(sweep_command, name="sweep")
cli.add_command(report_command, name="report")


# ----------------------------------------------------------------------------- discovery


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--verbose", is_flag=True, help="Show each error's traceback (the plugin's own file and line).")
def plugins(as_json: bool, verbose: bool) -> None:
    """Installed plugins: name, version, supported core versions, hooks, components and load errors."""
    rows = _pm().describe(tracebacks=verbose)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        origin = ", ".join(x for x in (row["distribution"], row["source"]) if x)
        click.echo(f"{row['name']} {row['version'] or ''}".rstrip() + f" ({origin})")
        if row["source"] != "builtin":
            click.echo(f"  supports selfsup: {row['requires'] or 'any'}")
        if row["hooks"]:
            click.echo(f"  hooks: {', '.join(row['hooks'])}")
        for kind, names in row["components"].items():
            plural = "feedback components" if kind == "feedback" else f"{kind.replace('_', ' ')}s"
            click.echo(f"  {plural}: {', '.join(names)}")
        for err in row["errors"]:
            where = "not loaded" if err["stage"] == "compatibility" else f"error in {err['stage']}"
            click.secho(f"  {where}: {err['message']}", fg="red")
            if verbose and err.get("traceback"):
                click.echo("".join(f"    {line}\n" for line in err["traceback"].rstrip().splitlines()))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def tasks(as_json: bool) -> None:
    """The catalogue of known pretext tasks (ssl_registry.toml), marking the installed ones."""
    from selfsup.catalog import load_catalog

    registry = _pm().registry
    installed = set(registry.names("pretext_task"))
    rows = [{**e.model_dump(), "installed": e.name in installed} for e in load_catalog()]
    known = {r["name"] for r in rows}
    for name in sorted(installed - known):
        comp = registry.get("pretext_task", name)
        rows.append({"name": name, "modality": comp.modality or "", "family": "",
                     "distribution": comp.distribution or comp.plugin,
                     "paper": "", "summary": comp.summary, "installed": True})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title="pretext tasks")
    for col in ("", "task", "modality", "family", "distribution", "summary"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row("✓" if r["installed"] else "", r["name"], r["modality"], r["family"], r["distribution"],
                      r["summary"])
    _console().print(table)
    missing = sorted({r["distribution"] for r in rows if not r["installed"]})
    if missing:
        click.echo(f"install more with: selfsup install {' '.join(missing)}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def recipes(as_json: bool) -> None:
    """Recipes shipped by installed plugins (train one with `selfsup train NAME`)."""
    registry = _pm().registry
    rows = []
    for name in registry.names("recipe"):
        comp = registry.get("recipe", name)
        rows.append({"name": name, "plugin": comp.plugin, "modality": comp.modality, "summary": comp.summary})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no recipes are installed; `selfsup install selfsup-vision` ships some")
        return
    from rich.table import Table

    table = Table(title="shipped recipes")
    for col in ("recipe", "plugin", "modality", "summary"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], r["plugin"], r["modality"] or "", r["summary"])
    _console().print(table)


@cli.command()
@click.argument("specs", nargs=-1)
@click.option("--recipe", "recipe", default=None,
              help="Also fetch every backbone's pretrained weights that this recipe names.")
@click.option("--json", "as_json", is_flag=True, help="Print what was fetched as JSON.")
def fetch(specs: tuple[str, ...], recipe: str | None, as_json: bool) -> None:
    """Download pretrained weights once into the libraries' caches (Hugging Face Hub, torch hub), so
    runs load them offline: SPECS are hf:org/name[@revision], timm:model.tag, torchvision:Weights.NAME
    or torchaudio:BUNDLE, as in a backbone's pretrained option. Prints each file's path and sha256."""
    from selfsup.lib.pretrained import parse_pretrained, resolve_pretrained

    wanted = list(specs)
    if recipe is not None:
        try:
            loaded = _load(recipe, ())
        except RecipeError as err:
            _fail(str(err))
        wanted += [str(o.pretrained) for key, o in loaded.options.items()
                   if key.startswith("backbones.") and getattr(o, "pretrained", None)]
    if not wanted:
        _fail("nothing to fetch: give specs (e.g. hf:org/name, timm:resnet18.a1_in1k) or --recipe")
    records = []
    for text in dict.fromkeys(wanted):
        try:
            spec = parse_pretrained(text)
            if spec.kind == "path":
                click.echo(f"{text}: a local path, nothing to fetch", err=True)
                continue
            records.append(resolve_pretrained(spec, download=True).record())
        except (ValueError, OSError, ImportError) as exc:
            _fail(str(exc) if str(exc).startswith(text) else f"{text}: {exc}")
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    for record in records:
        how = "downloaded" if record["downloaded"] else "already cached"
        click.echo(f"{record['spec']}: {how} at {record['path']}" + (f" (revision {record['revision']})"
                                                                      if record["revision"] else ""))
        for name, info in record["files"].items():
            click.echo(f"  {name}  sha256 {info['sha256']}  {info['bytes']} bytes")


@cli.command()
@click.argument("kind")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def describe(kind: str, name: str | None, as_json: bool) -> None:
    """Options and sample keys of the component NAME of KIND, or a table of every component of KIND.

    KIND is a recipe table: data, augmentations, tasks, backbones, evaluators or recipes (singular
    forms and data_source, pretext_task, ... work too). Shows each option's type, default and
    description, the sample keys the component yields and reads (see selfsup.contract), and the
    plugin and version that provide it."""
    from selfsup.describe import component_info, undeclared_warning
    from selfsup.registry import LABEL_OF_KIND, TABLE_OF_KIND, kind_named

    resolved = kind_named(kind)
    if resolved is None:
        _fail(f"unknown kind {kind!r}; use one of: {', '.join(TABLE_OF_KIND.values())}")
    pm = _pm()
    registry, table_name = pm.registry, TABLE_OF_KIND[resolved]
    if name is None:
        comps = [registry.get(resolved, n) for n in registry.names(resolved)]
        rows = [component_info(c, pm.infos) for c in comps]
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        else:
            _describe_table(table_name, rows)
    else:
        comp = registry.get(resolved, name)
        if comp is None:
            near = registry.closest(resolved, name)
            hint = f"; did you mean {near!r}?" if near else f"; `selfsup describe {table_name}` lists them"
            _fail(f"no {LABEL_OF_KIND[resolved]} named {name!r} is installed{hint}")
        comps = [comp]
        if as_json:
            click.echo(json.dumps(component_info(comp, pm.infos), indent=2))
        else:
            _describe_one(component_info(comp, pm.infos))
    warning = undeclared_warning(comps)
    if warning and not as_json:
        click.secho(f"warning: {warning}", fg="yellow", err=True)


def _describe_table(table_name: str, rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from selfsup.describe import keys_text

    if not rows:
        click.echo(f"no {table_name} are installed")
        return
    table = Table(title=table_name, title_justify="left")
    for col in ("name", "plugin", "modality", "sample keys", "summary"):
        table.add_column(col, overflow="fold")
    for r in rows:
        keys = "; ".join(f"{what}: {keys_text(k)}" for what, k in r["keys"].items())
        table.add_row(r["name"], r["plugin"], r["modality"] or "", keys, r["summary"])
    _console().print(table)


def _describe_one(info: dict[str, Any]) -> None:
    from rich.table import Table

    from selfsup.describe import default_text, description_text, keys_text

    click.echo(f"{info['name']} ({info['kind']}{', ' + info['modality'] if info['modality'] else ''})")
    if info["summary"]:
        click.echo(f"  {info['summary']}")
    version = f" {info['version']}" if info["version"] else ""
    click.echo(f"  plugin: {info['plugin']} ({info['distribution'] or 'no distribution'}{version})")
    for what, keys in info["keys"].items():
        click.echo(f"  {what}: {keys_text(keys)}")
    if info["kind"] == "recipes":
        return
    if not info["options"]:
        click.echo(f"  options: none ({info['options_model']})")
        return
    table = Table(title=f"options ({info['options_model']})", title_justify="left")
    for col in ("option", "type", "default", "description"):
        table.add_column(col, overflow="fold")
    for row in info["options"]:
        table.add_row(row["name"], row["type"], default_text(row), description_text(row))
    _console().print(table)


@cli.command()
@click.argument("names", nargs=-1)
@click.option("-e", "--editable", "editables", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Install a local project folder in editable mode.")
@click.option("--find-links", "find_links", multiple=True, help="Passed to pip (a folder of wheels or a URL).")
@click.option("-U", "--upgrade", is_flag=True, help="Passed to pip.")
@click.option("--pip-args", "pip_args", default="", metavar="'ARGS'",
              help="Anything else, passed to pip as written (shell-split): other distributions, pip options.")
@click.option("--dry-run", is_flag=True, help="Print the pip command instead of running it.")
def install(names: tuple[str, ...], editables: tuple[str, ...], find_links: tuple[str, ...], upgrade: bool,
            pip_args: str, dry_run: bool) -> None:
    """pip-install plugins into this environment. NAMES are task names of the catalogue (`selfsup
    install simclr` installs selfsup-vision), distributions it names, local wheels (*.whl) or project
    folders; anything else (another distribution, a pip option) must be given with --pip-args."""
    import shlex

    from selfsup.catalog import InstallRefused, install_targets

    if not names and not editables and not pip_args.strip():
        _fail("name at least one plugin, task, wheel, -e PATH or --pip-args")
    for value, option in [*((v, "--find-links") for v in find_links), *((v, "-e") for v in editables)]:
        if value.startswith("-"):
            _fail(f"{option} {value!r} looks like a pip option; pass pip options with --pip-args '...'")
    try:
        targets, notes = install_targets(names)
        extra = shlex.split(pip_args)
    except (InstallRefused, ValueError) as err:
        _fail(f"--pip-args: {err}" if not isinstance(err, InstallRefused) else str(err))
    for note in notes:
        click.echo(note, err=True)
    cmd = [sys.executable, "-m", "pip", "install"]
    if upgrade:
        cmd.append("--upgrade")
    for link in find_links:
        cmd += ["--find-links", link]
    for path in editables:
        cmd += ["-e", path]
    cmd += targets + extra
    if extra:
        click.echo(f"passing to pip as written: {shlex.join(extra)}", err=True)
    if dry_run:
        click.echo(shlex.join(cmd))
        return
    sys.exit(subprocess.call(cmd))


# ----------------------------------------------------------------------------- plugin kit


@cli.group()
def plugin() -> None:
    """Create plugins: `selfsup plugin new NAME` starts a plugin project from the kit."""


@plugin.command(name="new")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Create selfsup-NAME/ in this directory.")
@click.option("--modality", default="vector", show_default=True, metavar="vector|vision|text|speech",
              help="The example the project holds: SCARF on generated vectors, or a task on the first-party vision, "
              "text or speech plugin's data and backbones (that plugin becomes a dependency).")
@click.option("--force", is_flag=True, help="Overwrite the kit's files in an existing selfsup-NAME/.")
def plugin_new(name: str, directory: Path, modality: str, force: bool) -> None:
    """Write a plugin project selfsup-NAME/: package, example task (and data source) and recipe, tests, CI."""
    from selfsup.kit import KitError, new_plugin

    try:
        made = new_plugin(name, directory, modality=modality, force=force)
    except KitError as err:
        _fail(str(err))
    click.echo(f"created {made.root} ({len(made.files)} files)")
    click.echo(f"next:\n  cd {made.root}\n  pip install -e '.[test]'\n  selfsup train {name}-example\n  python -m "
               f"pytest -q")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    dirs, trust = _pre_parse(argv)
    warnings.filterwarnings("ignore", message="selfsup refused plugins directory", category=PluginWarning)
    pm = get_plugin_manager(dirs, trust_dirs=True if trust else None)
    if pm.refused:  # before anything runs, --help included: the user asked for these plugins
        for err in pm.refused:
            click.echo(f"error: {err.message}", err=True)
        sys.exit(EXIT_RECIPE)
    pm.add_commands(cli)
    cli.main(args=argv, prog_name="selfsup")


def worker_main(argv: list[str] | None = None) -> None:
    """:func:`main` for a process torchrun started: run the command, then leave with its exit status
    through ``os._exit`` once ``atexit`` handlers, logging and the standard streams have been flushed,
    skipping the interpreter's teardown. Why: rank 1 of a 2-process CPU run aborted twice in this
    project's CI with "terminate called without an active exception" (SIGABRT from C++), which
    torchrun then reports as a failed run; we think it comes from the teardown, where the last
    references to the gloo process group (held by DDP's reducer and the model) are dropped after
    ``destroy_process_group``. Everything a run writes is closed before this point (``Run.close``:
    checkpoints, metrics, the process group)."""
    import atexit
    import logging
    import traceback

    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # sys.exit("message"): printed, status 1, as Python does
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - reported as Python reports it, then the same status
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
