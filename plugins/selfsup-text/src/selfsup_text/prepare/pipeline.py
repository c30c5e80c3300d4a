"""The ``selfsup prepare`` steps chained: read, clean, scrub PII, filter by language, filter by quality,
de-duplicate, split, add counterfactual copies to the train split, tokenize, record."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from selfsup_text.data.reading import DEFAULT_MAX_DOC_CHARS
from selfsup_text.prepare.clean import CleanOptions, clean_text
from selfsup_text.prepare.dedup import exact_duplicates, near_duplicates
from selfsup_text.prepare.inputs import read_inputs
from selfsup_text.prepare.language import LanguageOptions, check_languages, language_filter
from selfsup_text.prepare.manifest import Manifest
from selfsup_text.prepare.pii import PiiOptions, scrub_corpus
from selfsup_text.prepare.quality import QualityOptions, quality_filter, removed_total
from selfsup_text.prepare.shards import write_shards
from selfsup_text.prepare.split import parse_fractions, split_documents


def run_pipeline(inputs: list[str], out: Path, *, corpus: str | None = None, unit: str = "file",
                 text_field: str = "text", nfkc: bool = True, strip_urls: bool = True, lowercase: bool = False,
                 near_dup_threshold: float | None = 0.8, num_perm: int = 128, split: str = "0.9,0.05,0.05",
                 seed: int = 0, tokenizer: str = "bpe-8k", train_bpe: int | None = None,
                 base_dir: Path | None = None, max_doc_chars: int = DEFAULT_MAX_DOC_CHARS,
                 pii: PiiOptions | bool | None = None, languages: LanguageOptions | None = None,
                 quality: QualityOptions | None = None, counterfactual: str | None = None) -> Manifest:
    """Run every step, write ``out`` and return the manifest (also written to ``out/manifest.json``).

    Skipped files and lines, cut documents and replaced invalid Unicode are counted in the manifest and
    warned (``UserWarning``, one per kind of input, with examples naming file and line). The optional
    steps, each off when its argument is ``None``/``False``: ``pii`` (``True`` or options: replace e-mails,
    phone numbers and IP addresses, :mod:`.pii`), ``languages`` (:mod:`.language`), ``quality``
    (:mod:`.quality`; off unless a group is enabled) and ``counterfactual`` (``"add"`` or ``"substitute"``:
    :func:`selfsup_text.augment.counterfactual.counterfactual_corpus` on the train split, after the split)."""
    if pii is True:
        pii = PiiOptions()
    if counterfactual not in (None, "add", "substitute"):
        raise ValueError(f"counterfactual must be 'add' or 'substitute', got {counterfactual!r}")
    if languages is not None:
        check_languages(languages.languages)  # before the reading: a wrong code fails at once
    fractions = parse_fractions(split)
    read = read_inputs(inputs, unit=unit, text_field=text_field, corpus=corpus, base_dir=base_dir,
                       max_doc_chars=max_doc_chars)
    manifest = Manifest(documents_in=len(read.documents), skipped_files=read.skipped_files,
                        skipped_lines=read.skipped_lines, cut_documents=read.count("cut"),
                        invalid_unicode_lines=read.count("invalid_unicode"), warnings=read.warnings())
    for text in manifest.warnings:
        warnings.warn(text, stacklevel=2)
    manifest.settings = dict(inputs=inputs, corpus=corpus, unit=unit, text_field=text_field, nfkc=nfkc,
                             strip_urls=strip_urls, lowercase=lowercase, near_dup_threshold=near_dup_threshold,
                             num_perm=num_perm, split=list(fractions), seed=seed, max_doc_chars=max_doc_chars,
                             pii=pii.model_dump() if pii else False,
                             languages=languages.model_dump() if languages else None,
                             quality=quality.model_dump(mode="json") if quality and quality.enabled else None,
                             counterfactual=counterfactual)

    options = CleanOptions(nfkc=nfkc, strip_urls=strip_urls, lowercase=lowercase, keep_emails=bool(pii))
    cleaned = [clean_text(t, options) for t in read.documents]
    texts = [t for t in cleaned if t]
    manifest.empty_after_cleaning = len(cleaned) - len(texts)

    if pii:
        texts, manifest.pii = scrub_corpus(texts, pii)
    if languages is not None:
        texts, manifest.language = language_filter(texts, languages)
    if quality is not None and quality.enabled:
        texts, manifest.quality = quality_filter(texts, quality)
        manifest.quality_removed = removed_total(manifest.quality)

    exact = exact_duplicates(texts)
    manifest.exact_duplicates = sum(exact)
    texts = [t for t, dup in zip(texts, exact) if not dup]
    if near_dup_threshold is not None:
        near = near_duplicates(texts, threshold=near_dup_threshold, num_perm=num_perm)
        manifest.near_duplicates = sum(near)
        texts = [t for t, dup in zip(texts, near) if not dup]
    manifest.documents_kept = len(texts)
    if not texts:
        raise ValueError(
            f"no document left of {manifest.documents_in}: {manifest.empty_after_cleaning} empty after cleaning, "
            f"{manifest.language.get('removed', 0)} removed by the language filter, {manifest.quality_removed} by "
            f"the quality filters, {manifest.exact_duplicates} exact and {manifest.near_duplicates} near duplicates")

    parts = {name: [texts[i] for i in idx] for name, idx in split_documents(len(texts), fractions, seed).items()}
    if counterfactual is not None:
        from selfsup_text.augment.counterfactual import counterfactual_corpus

        parts["train"], counts = counterfactual_corpus(parts["train"], mode=counterfactual, seed=seed)
        manifest.counterfactual = {key: int(value) for key, value in counts.items()}
    tok = _tokenizer(tokenizer, train_bpe, parts["train"], base_dir)
    manifest.tokenizer = f"bpe trained on train ({train_bpe})" if train_bpe else tokenizer
    out.mkdir(parents=True, exist_ok=True)
    meta = write_shards(out, parts, tok)
    manifest.vocab_size, manifest.dtype = meta["vocab_size"], meta["dtype"]
    manifest.splits = {name: {"documents": len(parts[name]), "tokens": meta["tokens"][name]} for name in parts}
    manifest.write(out)
    return manifest


def _tokenizer(spec: str, train_bpe: int | None, train_texts: list[str], base_dir: Path | None) -> Any:
    from selfsup_text.tokenizers import load_tokenizer
    from selfsup_text.tokenizers import train_bpe as train

    if train_bpe is not None:
        return train(train_texts, train_bpe)
    return load_tokenizer(spec, base_dir=base_dir or Path.cwd())
