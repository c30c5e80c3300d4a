"""``jsonl``: JSON Lines, one object per line, with a text field and optional label/pair fields.

``path`` is a ``.jsonl`` file or a folder of them (read in sorted order). ``label_field`` values may
be integers (used as they are) or strings (mapped to 0..K-1 in sorted order; names in
``source.label_names``). ``positive_field``/``negative_field`` give ``"positive_ids"``/``"negative_ids"``
(supervised SimCSE, Gao et al. 2021). Malformed lines and lines missing a field are skipped and
counted (``source.skipped_lines``) with ``on_error = "skip"``, or raise.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from selfsup.components import BuildContext
from selfsup_text.data.base import TextSource, tokenizer_for

log = logging.getLogger(__name__)


def jsonl_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in (".jsonl", ".json", ".ndjson"))
        if not files:
            raise FileNotFoundError(f"jsonl: no .jsonl file under {path}")
        return files
    return [path]


def read_records(files: list[Path], fields: list[str], on_error: str) -> tuple[list[dict[str, Any]], int]:
    """The objects of ``files`` that hold every field of ``fields``, and the number skipped."""
    records, skipped = [], 0
    for file in files:
        with open(file, "rb") as f:
            for number, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    record = json.loads(raw.decode("utf-8"))
                    if not isinstance(record, dict):
                        raise ValueError("not a JSON object")
                    missing = [k for k in fields if record.get(k) is None]
                    if missing:
                        raise KeyError(f"missing field(s) {missing}")
                    if not isinstance(record[fields[0]], str):
                        raise ValueError(f"field {fields[0]!r} is not a string")
                except (ValueError, KeyError, UnicodeDecodeError) as e:
                    if on_error == "raise":
                        raise ValueError(f"jsonl: {file}:{number}: {e}") from e
                    skipped += 1
                    continue
                records.append(record)
    if skipped:
        log.warning("jsonl: skipped %d malformed or incomplete line(s)", skipped)
    return records, skipped


def encode_labels(values: list[Any]) -> tuple[list[int], list[str] | None]:
    """Integer labels as they are; strings mapped to their index in sorted order (with the names)."""
    if all(isinstance(v, bool) or isinstance(v, int) for v in values):
        return [int(v) for v in values], None
    names = sorted({str(v) for v in values})
    return [names.index(str(v)) for v in values], names


def build(options: Any, context: BuildContext) -> TextSource:
    optional = (options.label_field, options.positive_field, options.negative_field)
    fields = [options.text_field] + [f for f in optional if f]
    records, skipped = read_records(jsonl_files(Path(options.path)), fields, options.on_error)
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
    )
    source.skipped_lines = skipped
    return source
