"""The ``selfsup prepare`` command: raw text to token shards for ``token_shards`` (see the package docs).

Example::

    selfsup prepare data/ --out shards/ --split 0.9,0.05,0.05 --seed 0 --train-bpe 8192
    selfsup prepare --corpus embedded --out shards/ --tokenizer bytes
    selfsup prepare crawl.jsonl --out shards/ --pii --languages en --quality gopher+c4
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import click

CORPORA = {"embedded": "all", "embedded-wiki": "wiki", "embedded-news": "news"}
QUALITY = ["none", "gopher", "c4", "gopher+c4"]


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
@click.option("--strip-urls/--keep-urls", default=True, show_default=True,
              help="Remove URLs and e-mail addresses (with --pii, e-mails become <EMAIL> instead).")
@click.option("--lowercase", is_flag=True, help="Lowercase the text.")
@click.option("--pii/--no-pii", default=False, show_default=True,
              help="Replace e-mail addresses, phone numbers and IP addresses by <EMAIL>, <PHONE>, <IP> (counted).")
@click.option("--languages", default=None, metavar="CODES",
              help="Keep only documents identified (py3langid) as one of these comma-separated languages, "
              "e.g. en,fr (extra 'web').")
@click.option("--min-language-score", type=click.FloatRange(0, 1), default=0.65, show_default=True,
              help="With --languages: the identified language's minimum probability.")
@click.option("--quality", type=click.Choice(QUALITY), default=None,
              help="Rule-based quality filters: Gopher (Rae et al. 2021), C4 (Raffel et al. 2020), both, or none "
              "(the default, unless --quality-config enables a group).")
@click.option("--quality-config", type=click.Path(dir_okay=False), default=None,
              help="TOML file with [gopher] and [c4] tables setting any threshold (see docs/text.md).")
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
@click.option("--counterfactual", type=click.Choice(["add", "substitute"]), default=None,
              help="Counterfactual data augmentation of the train split (after the split): 'add' a copy of each "
              "document with its attribute words swapped, or 'substitute' such documents with probability 0.5.")
@click.option("--overwrite", is_flag=True, help="Write into a non-empty output folder.")
def prepare(inputs, out, corpus, unit, text_field, max_doc_chars, nfkc, strip_urls, lowercase, pii, languages,
            min_language_score, quality, quality_config, near_dup_threshold, no_near_dup, num_perm, split_spec, seed,
            tokenizer_spec, train_bpe, counterfactual, overwrite) -> None:
    """Clean, filter, de-duplicate, split and tokenize text into shards for the `token_shards` source.

    INPUTS are text files, folders (.txt/.md/.text/.jsonl, recursive) and glob patterns. Steps: read,
    clean, --pii, --languages, --quality, exact and near de-duplication, split, --counterfactual (train),
    tokenize. Writes OUT/{train,val,test}.bin, meta.json, tokenizer/ and manifest.json (every step's counts).
    """
    if not inputs and corpus is None:
        raise click.UsageError("give INPUTS or --corpus")
    out_dir = Path(out)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise click.UsageError(f"{out_dir} is not empty (use --overwrite)")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            from selfsup_text.prepare.language import LanguageOptions
            from selfsup_text.prepare.pipeline import run_pipeline
            from selfsup_text.prepare.quality import resolve_quality

            quality_options, problems = resolve_quality(quality, quality_config)
            for problem in problems:
                warnings.warn(problem, stacklevel=1)
            codes = [c for c in (languages or "").split(",") if c.strip()]
            if languages is not None and not codes:
                raise ValueError("--languages needs at least one language code, e.g. --languages en")
            manifest = run_pipeline(
                list(inputs), out_dir, corpus=CORPORA.get(corpus) if corpus else None, unit=unit,
                text_field=text_field, nfkc=nfkc, strip_urls=strip_urls, lowercase=lowercase,
                near_dup_threshold=None if no_near_dup else near_dup_threshold, num_perm=num_perm,
                split=split_spec, seed=seed, tokenizer=tokenizer_spec, train_bpe=train_bpe,
                max_doc_chars=max_doc_chars, pii=pii,
                languages=LanguageOptions(languages=codes, min_score=min_language_score) if codes else None,
                quality=quality_options, counterfactual=counterfactual,
            )
    except (ValueError, FileNotFoundError, ImportError) as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    for w in caught:
        click.echo(f"warning: {w.message}", err=True)
    click.echo(manifest.summary())
    click.echo(f"wrote {out_dir}/ (manifest.json, meta.json, tokenizer/, *.bin)")
