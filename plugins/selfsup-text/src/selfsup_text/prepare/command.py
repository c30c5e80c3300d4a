"""The ``selfsup prepare`` command: raw text to token shards for ``token_shards`` (see the package docs).

Example::

    selfsup prepare data/ --out shards/ --split 0.9,0.05,0.05 --seed 0 --train-bpe 8192
    selfsup prepare --corpus embedded --out shards/ --tokenizer bytes
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import click

CORPORA = {"embedded": "all", "embedded-wiki": "wiki", "embedded-news": "news"}


def add_command(cli: click.Group) -> None:
    """Register ``prepare`` on the ``selfsup`` command group."""
    cli.add_command(prepare)


@click.command("prepare")
@click.argument("inputs", nargs=-1)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--corpus", type=click.Choice(sorted(CORPORA)), default=None,
              help="Also read the embedded corpus (Wikipedia + news, or one of them).")
@click.option("--unit", type=click.Choice(["file", "line", "paragraph"]), default="file", show_default=True,
              help="Documents of plain-text files: whole file, non-empty line or blank-line paragraph.")
@click.option("--text-field", default="text", show_default=True, help="Text field of JSONL inputs.")
@click.option("--max-doc-chars", type=click.IntRange(100, 100_000_000), default=100_000, show_default=True,
              help="Documents longer than this many characters are cut into several (counted); files are read "
              "in pieces of this size, so memory stays bounded whatever the line length.")
@click.option("--nfkc/--no-nfkc", default=True, show_default=True, help="Unicode NFKC normalization.")
@click.option("--strip-urls/--keep-urls", default=True, show_default=True, help="Remove URLs and e-mail addresses.")
@click.option("--lowercase", is_flag=True, help="Lowercase the text.")
@click.option("--near-dup-threshold", type=click.FloatRange(0, 1, min_open=True), default=0.8, show_default=True,
              help="Jaccard similarity (word 5-grams) at which a document is a near duplicate.")
@click.option("--no-near-dup", is_flag=True, help="Skip near-duplicate removal.")
@click.option("--num-perm", type=click.IntRange(16, 1024), default=128, show_default=True,
              help="MinHash permutations.")
@click.option("--split", "split_spec", default="0.9,0.05,0.05", show_default=True,
              help="train,val,test fractions.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the shuffle before the split.")
@click.option("--tokenizer", "tokenizer_spec", default="bpe-8k", show_default=True,
              help="'bytes', a shipped tokenizer ('bpe-8k') or a tokenizer folder.")
@click.option("--train-bpe", type=click.IntRange(261, 1 << 20), default=None,
              help="Instead of --tokenizer, train a byte-level BPE with this vocabulary size on the train split.")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty output folder.")
def prepare(inputs, out, corpus, unit, text_field, max_doc_chars, nfkc, strip_urls, lowercase, near_dup_threshold,
            no_near_dup, num_perm, split_spec, seed, tokenizer_spec, train_bpe, overwrite) -> None:
    """Clean, de-duplicate, split and tokenize text into shards for the `token_shards` source.

    INPUTS are text files, folders (.txt/.md/.text/.jsonl, recursive) and glob patterns. Writes
    OUT/{train,val,test}.bin, meta.json, tokenizer/ and manifest.json.
    """
    from selfsup_text.prepare.pipeline import run_pipeline

    if not inputs and corpus is None:
        raise click.UsageError("give INPUTS or --corpus")
    out_dir = Path(out)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise click.UsageError(f"{out_dir} is not empty (use --overwrite)")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            manifest = run_pipeline(
                list(inputs), out_dir, corpus=CORPORA.get(corpus) if corpus else None, unit=unit,
                text_field=text_field, nfkc=nfkc, strip_urls=strip_urls, lowercase=lowercase,
                near_dup_threshold=None if no_near_dup else near_dup_threshold, num_perm=num_perm,
                split=split_spec, seed=seed, tokenizer=tokenizer_spec, train_bpe=train_bpe,
                max_doc_chars=max_doc_chars,
            )
    except (ValueError, FileNotFoundError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    click.echo(manifest.summary())
    click.echo(f"wrote {out_dir}/ (manifest.json, meta.json, tokenizer/, *.bin)")
