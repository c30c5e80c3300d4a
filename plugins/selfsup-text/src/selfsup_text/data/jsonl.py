"""``jsonl``: JSON Lines, one object per line, with a text field and optional label/pair fields.

``path`` is a ``.jsonl`` file or a folder of them (read in sorted order). ``label_field`` values may
be integers (used as they are) or strings (mapped to 0..K-1 in sorted order; names in
``source.label_names``). ``positive_field``/``negative_field`` give ``"positive_ids"``/``"negative_ids"``
(supervised SimCSE, Gao et al. 2021).

Bad data (``source.bad_files``, a :class:`selfsup.lib.BadFiles`, warned once when built):
malformed lines and lines missing a field are skipped and counted (``source.skipped_lines``) with
``on_error = "skip"``, or fail the build naming the file and line. Undecodable bytes inside strings
and lone surrogates (``"\\ud800"``, which no tokenizer accepts) become U+FFFD, counted per line. A
text longer than ``max_doc_chars`` is cut into several documents (each with the line's label), or,
with pair fields, each text of the line is truncated to it; counted as ``cut``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from selfsup.components import BuildContext
from selfsup.lib import BadFiles
from selfsup_text.data.base import TextSource, tokenizer_for
from selfsup_text.data.reading import DEFAULT_MAX_DOC_CHARS, cut_point, cut_text, replace_invalid


def jsonl_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".jsonl", ".json", ".ndjson"))
        if not files:
            raise FileNotFoundError(f"jsonl: no .jsonl file under {path}")
        return files
    return [path]


def read_records(files: list[Path], fields: list[str], on_error: str, max_doc_chars: int = DEFAULT_MAX_DOC_CHARS,
                 *, cut: bool = True, bad: BadFiles | None = None) -> tuple[list[dict[str, Any]], BadFiles]:
    """The objects of ``files`` that hold every field of ``fields`` (``fields[0]`` the text), their
    strings' bad Unicode replaced; over-long texts cut into several records (``cut``) or truncated.
    Returns the records and the bad-data record: ``bad`` when given (the caller warns), else a new
    one, warned once here."""
    warn = bad is None
    if bad is None:
        bad = BadFiles("jsonl", on_error, what="JSON line", max_doc_chars=max_doc_chars)  # type: ignore[arg-type]
    records = []
    for file in files:
        with open(file, "rb") as f:
            for number, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                where = f"{file}:{number}"
                try:
                    record = json.loads(raw.decode("utf-8", errors="surrogateescape"))
                    if not isinstance(record, dict):
                        raise ValueError("not a JSON object")
                    missing = [k for k in fields if record.get(k) is None]
                    if missing:
                        raise KeyError(f"missing field(s) {missing}")
                    if not isinstance(record[fields[0]], str):
                        raise ValueError(f"field {fields[0]!r} is not a string")
                except (ValueError, KeyError) as e:
                    bad.record(where, e)
                    continue
                records += _clean(record, fields, max_doc_chars, cut, bad, where)
    if warn:
        bad.warn(f"({len(files)} files)")
    return records, bad


def _clean(record: dict[str, Any], fields: list[str], limit: int, cut: bool, bad: BadFiles, where: str) -> list[dict]:
    """``record`` with bad Unicode replaced in its ``fields`` (counted once per line); as several records
    when its text is cut, or with each text truncated when ``cut`` is false."""
    replaced = 0
    for key in fields:
        if isinstance(record[key], str):
            record[key], n = replace_invalid(record[key])
            replaced += n
    if replaced:
        bad.note("invalid_unicode", where, f"{replaced} undecodable byte(s) or lone surrogate(s) replaced by U+FFFD")
    long = [k for k in fields if isinstance(record[k], str) and len(record[k]) > limit]
    if not long:
        return [record]
    text = record[fields[0]]
    if cut:
        pieces = cut_text(text, limit)
        bad.note("cut", where, f"a text of {len(text):,} characters cut into {len(pieces)} documents")
        return [{**record, fields[0]: piece} for piece in pieces]
    for key in long:
        record[key] = record[key][: cut_point(record[key], limit)]
    bad.note("cut", where, f"{', '.join(long)} truncated to {limit:,} characters (pair data: one document per line)")
    return [record]


def encode_labels(values: list[Any]) -> tuple[list[int], list[str] | None]:
    """Integer labels as they are; strings mapped to their index in sorted order (with the names)."""
    if all(isinstance(v, bool) or isinstance(v, int) for v in values):
        return [int(v) for v in values], None
    names = sorted({str(v) for v in values})
    return [names.index(str(v)) for v in values], names


def build(options: Any, context: BuildContext) -> TextSource:
    optional = (options.label_field, options.positive_field, options.negative_field, options.text_pair_field)
    fields = [options.text_field] + [f for f in optional if f]
    records, bad = read_records(jsonl_files(Path(options.path)), fields, options.on_error, options.max_doc_chars,
                                cut=options.positive_field is None and options.text_pair_field is None)
    skipped = bad.counts()["skipped"]
    if not records:
        raise ValueError(f"jsonl: no usable line in {options.path} ({skipped} skipped)")
    labels = names = None
    if options.label_field:
        labels, names = encode_labels([r[options.label_field] for r in records])
    column = lambda field: None if field is None else [str(r[field]) for r in records]  # noqa: E731
    source = TextSource(
        [r[options.text_field] for r in records], tokenizer_for(options, context), options,
        labels=labels, label_names=names,
        positives=column(options.positive_field), negatives=column(options.negative_field),
        pairs=column(options.text_pair_field),
    )
    source.bad_files = bad
    source.skipped_lines = skipped
    return source
