"""Step 1 of ``selfsup prepare``: read the input documents.

Inputs are files, folders (searched recursively for ``.txt``/``.md``/``.text``/``.jsonl``) and glob
patterns; ``.jsonl``/``.ndjson`` files give one document per line from ``text_field``, other files one
document per file, line or blank-line paragraph (``unit``). Files that cannot be read or decoded as
UTF-8 (and malformed JSON lines) are skipped and counted. ``embedded`` corpora are read from
:mod:`selfsup_text.data.gensim_data`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from selfsup_text.data.files import find_files, split_units

TEXT_SUFFIXES = [".txt", ".md", ".text", ".jsonl", ".ndjson"]
JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass
class Inputs:
    documents: list[str] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)
    skipped_lines: int = 0


def read_jsonl(file: Path, text_field: str, inputs: Inputs) -> None:
    for raw in file.read_bytes().decode("utf-8").splitlines():
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            text = record[text_field] if isinstance(record, dict) else None
        except (ValueError, KeyError):
            text = None
        if isinstance(text, str):
            inputs.documents.append(text)
        else:
            inputs.skipped_lines += 1


def read_inputs(paths: list[str], *, unit: str = "file", text_field: str = "text", corpus: str | None = None,
                base_dir: Path | None = None) -> Inputs:
    """Every document of ``paths`` (in sorted file order) and of the embedded ``corpus``."""
    inputs = Inputs()
    if corpus is not None:
        from selfsup_text.data.gensim_data import corpus_documents

        inputs.documents.extend(corpus_documents(corpus))
    if paths:
        for file in find_files(paths, base_dir or Path.cwd(), TEXT_SUFFIXES):
            try:
                if file.suffix.lower() in JSONL_SUFFIXES:
                    read_jsonl(file, text_field, inputs)
                else:
                    inputs.documents.extend(split_units(file.read_bytes().decode("utf-8"), unit))
            except (OSError, UnicodeDecodeError):
                inputs.skipped_files.append(str(file))
    return inputs
