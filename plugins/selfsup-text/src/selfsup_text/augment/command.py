"""The ``selfsup augment`` command: text files in, augmented copies out as JSONL.

Example::

    selfsup augment reviews.jsonl --aug eda --set alpha_sr=0.05 --copies 4 --keep-original --out aug.jsonl
    selfsup augment corpus/ --aug back_translation --set forward_model=opus-mt-en-de \\
        --set backward_model=opus-mt-de-en --out bt.jsonl

Each output line is ``{"text", "source_index", "augmentation", "copy"}`` (plus the ``--keep-fields`` of
JSONL inputs): originals first when kept (``copy`` 0, ``augmentation`` null), then copy 1 of every text,
copy 2, ... Copy ``c`` of text ``i`` is seeded by ``(--seed, c, i)`` only, so it does not depend on the
other inputs' order or count of copies.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

EXAMPLES = 3  # failures shown by text


def add_command(cli: click.Group) -> None:
    """Register ``augment`` on the ``selfsup`` command group."""
    cli.add_command(augment)


def parse_settings(settings: tuple[str, ...]) -> dict[str, Any]:
    """``("alpha_sr=0.2", "operations=['sr']", "a.b=x")`` -> options dict; values are TOML, a bare word a string."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib

    options: dict[str, Any] = {}
    for expr in settings:
        if "=" not in expr:
            raise click.BadParameter(f"expected KEY=VALUE, got {expr!r}", param_hint="--set")
        key, raw = expr.split("=", 1)
        path = [p.strip() for p in key.split(".")]
        if not all(path):
            raise click.BadParameter(f"empty key in {expr!r}", param_hint="--set")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        node = options
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise click.BadParameter(f"{key}: {part} is already set to a value", param_hint="--set")
        node[path[-1]] = value
    return options


@click.command("augment")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--aug", "name", required=True, help="A text augmentation: eda, back_translation, paraphrase, ...")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="An option of the augmentation (TOML value), e.g. alpha_sr=0.05 or \"operations=['sr']\".")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output JSONL file.")
@click.option("--copies", type=click.IntRange(1, 1000), default=1, show_default=True,
              help="Augmented copies of every text.")
@click.option("--keep-original/--no-keep-original", default=False, show_default=True,
              help="Also write every input text unchanged (copy 0).")
@click.option("--seed", type=click.IntRange(0, (1 << 63) - 1), default=0, show_default=True,
              help="Seed of every random choice.")
@click.option("--text-field", default="text", show_default=True, help="Text field of JSONL inputs.")
@click.option("--keep-fields", default="", metavar="F1,F2",
              help="Copy these fields of JSONL inputs to every output line (e.g. label); inputs must be JSONL.")
@click.option("--unit", type=click.Choice(["file", "line", "paragraph"]), default="line", show_default=True,
              help="Texts of plain-text files: whole file, non-empty line or blank-line paragraph.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def augment(inputs, name, settings, out, copies, keep_original, seed, text_field, keep_fields, unit, overwrite) -> None:
    """Write augmented copies of the texts of INPUTS (files, folders, globs: .txt/.md/.text/.jsonl).

    Builds the registered text augmentation NAME (--aug) with the --set options and runs its batched
    form (edit_batch: model-based methods generate in batches and cache), then prints how many copies
    changed, came out unchanged or failed.
    """
    out_path = Path(out)
    if out_path.exists() and not overwrite:
        raise click.UsageError(f"{out_path} exists (use --overwrite)")
    fields = [f.strip() for f in keep_fields.split(",") if f.strip()]
    try:
        documents, extras, warnings = _read(list(inputs), unit=unit, text_field=text_field, keep=fields)
        for line in warnings:
            click.echo(f"warning: {line}", err=True)
        if not documents:
            raise ValueError("the inputs hold no text")
        aug = _build(name, parse_settings(settings), seed)
    except (ValueError, FileNotFoundError, TypeError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"{len(documents):,} texts; {name}, {copies} cop{'y' if copies == 1 else 'ies'}, seed {seed}", err=True)
    started = time.perf_counter()
    counts = {"changed": 0, "unchanged": 0, "failed": 0}
    failures: list[str] = []
    tmp = out_path.with_name(out_path.name + ".partial")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as fh:
        if keep_original:
            for i, text in enumerate(documents):
                _write(fh, text, i, None, 0, extras[i])
        for copy in range(1, copies + 1):
            results = _run_copy(aug, documents, _copy_seed(seed, copy), failures)
            for i, (text, new) in enumerate(zip(documents, results)):
                if new is None:
                    counts["failed"] += 1
                    continue
                counts["changed" if new != text else "unchanged"] += 1
                _write(fh, new, i, name, copy, extras[i])
    os.replace(tmp, out_path)
    written = counts["changed"] + counts["unchanged"] + (len(documents) if keep_original else 0)
    seconds = time.perf_counter() - started
    click.echo(f"copies: {counts['changed']:,} changed, {counts['unchanged']:,} unchanged, {counts['failed']:,} failed "
               f"({seconds:.1f} s)")
    for example in failures[:EXAMPLES]:
        click.echo(f"  failed: {example}", err=True)
    stats = getattr(aug, "stats", None)
    if stats:
        click.echo("augmentation: " + ", ".join(f"{k} {v:,}" for k, v in sorted(dict(stats).items())))
    click.echo(f"wrote {written:,} lines to {out_path}")
    if counts["failed"]:
        sys.exit(1)


def _build(name: str, options: dict[str, Any], seed: int) -> Any:
    from selfsup.components import BuildContext

    aug = BuildContext(name="augment", seed=seed, base_dir=Path.cwd()).build("augmentations", name, options)
    if not callable(getattr(aug, "edit_batch", None)):
        raise ValueError(f"augmentation {name!r} edits token ids, not text: `selfsup augment` takes the text-level "
                         f"ones (eda, back_translation, paraphrase, counterfactual, ...)")
    return aug


def _copy_seed(seed: int, copy: int) -> int:
    from selfsup.lib.seeding import sample_seed

    return sample_seed(seed, "augment", copy, 0)


def _run_copy(aug: Any, documents: list[str], seed: int, failures: list[str]) -> list[str | None]:
    """``aug.edit_batch`` over every text; if it raises, text by text (the same seeds), so one bad text fails
    alone (``None``) and is named in ``failures``."""
    try:
        return list(aug.edit_batch(documents, seed))
    except Exception as exc:  # noqa: BLE001 - isolate the failing texts below
        batch_error = exc
    from selfsup_text.augment.text import text_generator

    results: list[str | None] = []
    for i, text in enumerate(documents):
        try:
            results.append(aug.edit(text, text_generator(seed, i)))
        except Exception as exc:  # noqa: BLE001 - counted and reported
            results.append(None)
            failures.append(f"text {i} ({text[:60]!r}): {type(exc).__name__}: {exc}")
    if all(r is None for r in results):  # nothing works: the batch error is the one to show
        raise click.ClickException(f"{type(batch_error).__name__}: {batch_error}")
    return results


def _read(paths: list[str], *, unit: str, text_field: str, keep: list[str]) -> tuple[list[str], list[dict], list[str]]:
    """The texts of ``paths`` (with the ``keep`` fields of each JSONL record) and the input warnings."""
    from selfsup_text.prepare.inputs import JSONL_SUFFIXES, TEXT_SUFFIXES, Inputs, read_inputs

    if not keep:
        inputs = read_inputs(paths, unit=unit, text_field=text_field)
        return inputs.documents, [{}] * len(inputs.documents), inputs.warnings()
    from selfsup_text.data.files import find_files
    from selfsup_text.data.jsonl import read_records

    inputs = Inputs()
    extras: list[dict] = []
    for file in find_files(paths, Path.cwd(), TEXT_SUFFIXES):
        if file.suffix.lower() not in JSONL_SUFFIXES:
            raise ValueError(f"--keep-fields reads JSONL inputs only; {file} is not one")
        try:
            records, _ = read_records([file], [text_field, *keep], "skip", inputs.max_doc_chars, bad=inputs.lines)
        except OSError as exc:
            inputs.files.record(file, exc)
            continue
        inputs.documents.extend(r[text_field] for r in records)
        extras.extend({k: r[k] for k in keep} for r in records)
    return inputs.documents, extras, inputs.warnings()


def _write(fh: Any, text: str, index: int, name: str | None, copy: int, extra: dict) -> None:
    fh.write(json.dumps({"text": text, "source_index": index, "augmentation": name, "copy": copy, **extra},
                        ensure_ascii=False) + "\n")
