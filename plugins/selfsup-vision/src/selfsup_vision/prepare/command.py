"""The ``selfsup prepare-images`` command: image files to WebDataset shards for the ``webdataset`` source.

Example::

    selfsup prepare-images photos/ --out shards/ --max-side 256 --workers 4
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click


def add_command(cli: click.Group) -> None:
    """Register ``prepare-images`` on the ``selfsup`` command group."""
    cli.add_command(prepare_images)


@click.command("prepare-images")
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--max-side", type=click.IntRange(8, 65536), default=256, show_default=True,
              help="Images are downsized so their longer side is at most this (never upscaled).")
@click.option("--format", "fmt", type=click.Choice(["jpeg", "png", "webp"]), default="jpeg", show_default=True,
              help="Encoding of the stored images (members KEY.jpg, KEY.png or KEY.webp).")
@click.option("--quality", type=click.IntRange(1, 100), default=90, show_default=True,
              help="JPEG/WebP quality.")
@click.option("--shard-size-mb", type=click.FloatRange(0.001, 1 << 20), default=64.0, show_default=True,
              help="A new shard is started once one holds this many MiB.")
@click.option("--min-side", type=click.IntRange(1), default=16, show_default=True,
              help="Images whose shorter side is under this are left out as too small.")
@click.option("--max-pixels", type=click.IntRange(1), default=178_956_970, show_default=True,
              help="Images with more pixels are left out before they are decoded (decompression bombs).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the shuffle that deals images to shards (each shard mixes the classes).")
@click.option("--workers", type=click.IntRange(1, 256), default=min(8, os.cpu_count() or 1), show_default=True,
              help="Decoding threads (the output does not depend on it).")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty output folder (its shards are replaced).")
def prepare_images(inputs, out, max_side, fmt, quality, shard_size_mb, min_side, max_pixels, seed, workers,
                   overwrite) -> None:
    """Decode, orient (EXIF), convert to RGB and downsize images into WebDataset tar shards.

    INPUTS are image files, folders (searched recursively; class sub-folders become labels, as with
    `image_folder`, stored as KEY.cls) and glob patterns. Unreadable, truncated, too small and too
    large images are left out and counted. Writes OUT/shard-*.tar, read by the `webdataset` source
    unchanged, and OUT/manifest.json (every sample, shard SHA-256s, the counts).
    """
    from selfsup_vision.prepare.images import Settings
    from selfsup_vision.prepare.images import prepare_images as run

    out_dir = Path(out)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise click.UsageError(f"{out_dir} is not empty (use --overwrite)")
    settings = Settings(max_side=max_side, format=fmt, quality=quality, shard_size_mb=shard_size_mb,
                        min_side=min_side, max_pixels=max_pixels, seed=seed, workers=workers)
    try:
        summary = run(inputs, out_dir, settings)
    except (ValueError, FileNotFoundError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    click.echo(summary.text())
    click.echo(f"wrote {out_dir}/ (manifest.json, shard-*.tar)")
