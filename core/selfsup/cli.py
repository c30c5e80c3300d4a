"""The ``selfsup`` command line.

``--help``, ``plugins``, ``tasks``, ``recipes``, ``validate``, ``install`` and ``plugin new`` never
import torch; ``train`` and ``eval`` import it when they run. Errors in recipes print one readable
message (no traceback) and exit with status 2; a diverged run exits with status 3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from selfsup import __version__
from selfsup.plugins import PluginManager, get_plugin_manager
from selfsup.recipe import RecipeError

EXIT_RECIPE = 2
EXIT_DIVERGED = 3


def _pre_parse_plugin_dirs(argv: list[str]) -> list[str]:
    """``--plugins-dir`` must be known before commands are registered (plugins add commands)."""
    dirs = []
    for i, arg in enumerate(argv):
        if arg == "--plugins-dir" and i + 1 < len(argv):
            dirs.append(argv[i + 1])
        elif arg.startswith("--plugins-dir="):
            dirs.append(arg.split("=", 1)[1])
    return dirs


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
    help="Also load every *.py file in DIR as a plugin (repeatable; also SELFSUP_PLUGINS_DIR).",
)
def cli(plugins_dir: tuple[str, ...]) -> None:
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


@cli.command()
@click.argument("recipe")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a field, e.g. train.lr=3e-4.")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in the run's output directory.")
@click.option("--nproc", type=click.IntRange(min=1), default=None, help="Launch N DDP processes with torchrun.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def train(recipe: str, overrides: tuple[str, ...], resume: bool, nproc: int | None, no_progress: bool) -> None:
    """Train from RECIPE (a .toml file or a shipped recipe name)."""
    try:
        loaded = _load(recipe, overrides)
    except RecipeError as err:
        _fail(str(err))
    if nproc and nproc > 1 and "WORLD_SIZE" not in os.environ:
        sys.exit(_launch_torchrun(nproc))

    from selfsup.train.loop import RunDirInUse, TrainingDiverged, train as run_training

    try:
        result = run_training(loaded, _pm(), resume=resume, progress=not no_progress)
    except RecipeError as err:
        _fail(str(err))
    except RunDirInUse as err:
        _fail(str(err))
    except TrainingDiverged as err:
        _fail(str(err), EXIT_DIVERGED)
    if int(os.environ.get("RANK", "0")) == 0:
        _print_result(result)


def _launch_torchrun(nproc: int) -> int:
    """Re-run this command under torchrun with ``nproc`` processes (minus ``--nproc``)."""
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if arg == "--nproc":
            skip = True
            continue
        if arg.startswith("--nproc="):
            continue
        args.append(arg)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "selfsup", *args]
    return subprocess.call(cmd)


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
@click.option("--checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path), help="Default: the newest.")
@click.option("--evaluator", "names", multiple=True, help="Run only these evaluators (repeatable).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe field first.")
@click.option("--random-init", is_flag=True, help="Evaluate the untrained model (the seed's initialisation): the baseline.")
@click.option("--baseline", is_flag=True, help="Evaluate the checkpoint and the random init, side by side.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def eval_(
    run_dir: Path, checkpoint: Path | None, names: tuple[str, ...], overrides: tuple[str, ...],
    random_init: bool, baseline: bool, as_json: bool,
) -> None:
    """Evaluate a finished (or interrupted) run's checkpoint with the recipe's evaluators."""
    from selfsup.evaluate import evaluate_run

    if baseline and random_init:
        _fail("--baseline already evaluates the random init; pass one of --baseline and --random-init")
    runs = [False, True] if baseline else [random_init]
    results = {}
    try:
        for untrained in runs:
            results[untrained] = evaluate_run(
                run_dir, _pm(), checkpoint=checkpoint, names=list(names), overrides=list(overrides), random_init=untrained
            )
    except (RecipeError, FileNotFoundError, ValueError) as err:
        _fail(str(err))
    if baseline:
        (trained, used), (untrained, _) = results[False], results[True]
        if as_json:
            click.echo(json.dumps({"trained": trained, "random_init": untrained}, indent=2))
        else:
            _print_comparison(f"{run_dir.name}: {used.name} against random init", trained, untrained)
        return
    metrics, used = results[random_init]
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    _print_metrics(f"{run_dir.name}: {'random init' if random_init else used.name}", metrics)


def _print_comparison(title: str, trained: dict[str, Any], untrained: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("metric", "trained", "random init"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key in dict.fromkeys([*trained, *untrained]):
        cells = [trained.get(key), untrained.get(key)]
        table.add_row(key, *("" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in cells))
    _console().print(table)


# ----------------------------------------------------------------------------- discovery


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """Installed plugins: name, version, supported core versions, hooks, components and load errors."""
    rows = _pm().describe()
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
            click.echo(f"  {kind.replace('_', ' ')}s: {', '.join(names)}")
        for err in row["errors"]:
            where = "not loaded" if err["stage"] == "compatibility" else f"error in {err['stage']}"
            click.secho(f"  {where}: {err['message']}", fg="red")


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
        rows.append({"name": name, "modality": comp.modality or "", "family": "", "distribution": comp.distribution or comp.plugin,
                     "paper": "", "summary": comp.summary, "installed": True})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title="pretext tasks")
    for col in ("", "task", "modality", "family", "distribution", "summary"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row("✓" if r["installed"] else "", r["name"], r["modality"], r["family"], r["distribution"], r["summary"])
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


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("names", nargs=-1)
@click.option("-e", "--editable", "editables", multiple=True, type=click.Path(exists=True), help="Install a local project in editable mode.")
@click.option("--find-links", "find_links", multiple=True, help="Passed to pip.")
@click.option("-U", "--upgrade", is_flag=True, help="Passed to pip.")
@click.option("--dry-run", is_flag=True, help="Print the pip command instead of running it.")
def install(names: tuple[str, ...], editables: tuple[str, ...], find_links: tuple[str, ...], upgrade: bool, dry_run: bool) -> None:
    """pip-install plugins into this environment; a task name installs the distribution that
    provides it (e.g. `selfsup install simclr` installs selfsup-vision)."""
    from selfsup.catalog import find_task

    if not names and not editables:
        _fail("name at least one plugin, task or -e PATH")
    targets = []
    for name in names:
        entry = find_task(name)
        if entry is not None:
            click.echo(f"{name}: provided by {entry.distribution}", err=True)
            name = entry.distribution
        if name not in targets:
            targets.append(name)
    cmd = [sys.executable, "-m", "pip", "install"]
    if upgrade:
        cmd.append("--upgrade")
    for link in find_links:
        cmd += ["--find-links", link]
    for path in editables:
        cmd += ["-e", path]
    cmd += targets
    if dry_run:
        click.echo(" ".join(cmd))
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
@click.option("--modality", default="vector", show_default=True, help="Modality label of the components.")
@click.option("--force", is_flag=True, help="Overwrite the kit's files in an existing selfsup-NAME/.")
def plugin_new(name: str, directory: Path, modality: str, force: bool) -> None:
    """Write a plugin project selfsup-NAME/: package, example task, data source and recipe, tests, CI."""
    from selfsup.kit import KitError, new_plugin

    try:
        made = new_plugin(name, directory, modality=modality, force=force)
    except KitError as err:
        _fail(str(err))
    click.echo(f"created {made.root} ({len(made.files)} files)")
    click.echo(f"next:\n  cd {made.root}\n  pip install -e '.[test]'\n  selfsup train {name}-example\n  python -m pytest -q")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    pm = get_plugin_manager(_pre_parse_plugin_dirs(argv))
    pm.add_commands(cli)
    cli.main(args=argv, prog_name="selfsup")


if __name__ == "__main__":  # pragma: no cover
    main()
