"""The ``selfsup prepare-audio`` command: audio files to shards for the ``audio_shards`` source.

Example::

    selfsup prepare-audio recordings/ --out prepared/ --sample-rate 16000 --workers 4
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click


def add_command(cli: click.Group) -> None:
    """Register ``prepare-audio`` on the ``selfsup`` command group."""
    cli.add_command(prepare_audio)


@click.command("prepare-audio")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--sample-rate", type=click.IntRange(1000, 192000), default=16000, show_default=True,
              help="Every file is resampled to this rate (the recipe's sample_rate).")
@click.option("--format", "fmt", type=click.Choice(["int16", "flac"]), default="int16", show_default=True,
              help="int16: raw samples, memory-mapped when read (fastest); flac: tar shards of FLAC files "
              "(about half the disk, decoded when read).")
@click.option("--shard-size-mb", type=click.FloatRange(0.001, 1 << 20), default=64.0, show_default=True,
              help="A new shard is started once one holds this many MiB.")
@click.option("--min-dbfs", type=float, default=-60.0, show_default=True,
              help="Files whose RMS level is below this (dB relative to full scale) are left out as too quiet.")
@click.option("--min-seconds", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Files shorter than this are left out.")
@click.option("--max-seconds", type=click.FloatRange(0.01), default=None,
              help="Files longer than this are cut into equal pieces of at most this length (one entry each).")
@click.option("--workers", type=click.IntRange(1, 256), default=min(8, os.cpu_count() or 1), show_default=True,
              help="Decoding threads (the output does not depend on it).")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty output folder (its shards are replaced).")
def prepare_audio(inputs, out, sample_rate, fmt, shard_size_mb, min_dbfs, min_seconds, max_seconds, workers,
                  overwrite) -> None:
    """Decode, mono-mix, resample and loudness-check audio into shards for the `audio_shards` source.

    INPUTS are audio files (WAV, FLAC, OGG, ... anything soundfile reads), folders (searched
    recursively; class sub-folders become labels, as with `audio_folder`) and glob patterns.
    Unreadable, silent, too quiet and too short files are left out and counted. Writes
    OUT/shard-*.bin (or .tar) and OUT/manifest.json (every entry, shard SHA-256s, the counts).
    """
    from selfsup_speech.prepare.audio import Settings
    from selfsup_speech.prepare.audio import prepare_audio as run

    out_dir = Path(out)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise click.UsageError(f"{out_dir} is not empty (use --overwrite)")
    settings = Settings(sample_rate=sample_rate, format=fmt, shard_size_mb=shard_size_mb, min_dbfs=min_dbfs,
                        min_seconds=min_seconds, max_seconds=max_seconds, workers=workers)
    try:
        summary = run(inputs, out_dir, settings)
    except (ValueError, FileNotFoundError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    click.echo(summary.text())
    click.echo(f"wrote {out_dir}/ (manifest.json, shard-*.{'bin' if fmt == 'int16' else 'tar'})")
