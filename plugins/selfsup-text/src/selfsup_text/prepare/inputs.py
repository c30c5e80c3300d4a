"""Step 1 of ``selfsup prepare``: read the input documents.

Inputs are files, folders (searched recursively for ``.txt``/``.md``/``.text``/``.jsonl``) and glob
patterns; ``.jsonl``/``.ndjson`` files give one document per line from ``text_field``, other files one
document per file, line or blank-line paragraph (``unit``). ``embedded`` corpora are read from
:mod:`selfsup_text.data.gensim_data`.

Files are read as the text sources read them (:mod:`selfsup_text.data.reading`, :mod:`selfsup_text.data.jsonl`):
in bounded memory, documents longer than ``max_doc_chars`` cut into several, undecodable bytes and lone
surrogates replaced by U+FFFD; each counted and named by file and line. Files that cannot be read, or
are mostly not UTF-8, and malformed JSON lines are skipped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from selfsup.lib import BadFiles
from selfsup_text.data.files import find_files
from selfsup_text.data.jsonl import read_records
from selfsup_text.data.reading import DEFAULT_MAX_DOC_CHARS, read_file_documents

TEXT_SUFFIXES = [".txt", ".md", ".text", ".jsonl", ".ndjson"]
JSONL_SUFFIXES = (".jsonl", ".ndjson")


@dataclass
class Inputs:
    """The documents read, and what was skipped, cut or replaced on the way: ``files`` records whole
    files (and the cuts and replacements in plain-text files), ``lines`` the JSON lines."""

    documents: list[str] = field(default_factory=list)
    max_doc_chars: int = DEFAULT_MAX_DOC_CHARS
    files: BadFiles = field(init=False)
    lines: BadFiles = field(init=False)

    def __post_init__(self) -> None:
        self.files = BadFiles("prepare", "skip", what="input file", max_doc_chars=self.max_doc_chars)
        self.lines = BadFiles("prepare", "skip", what="JSON line", max_doc_chars=self.max_doc_chars)

    @property
    def skipped_files(self) -> list[str]:
        return [path for path, _ in self.files.skipped]

    @property
    def skipped_lines(self) -> int:
        return self.lines.counts()["skipped"]

    def count(self, kind: str) -> int:
        """Events of ``kind`` (cut, invalid_unicode, ...) in files and JSON lines together."""
        return self.files.counts()[kind] + self.lines.counts()[kind]

    def warnings(self) -> list[str]:
        """One line per record with something in it: counts, each with an example naming file and line."""
        return [text for text in (self.files.summary("inputs"), self.lines.summary("JSONL inputs")) if text]


def read_jsonl(file: Path, text_field: str, inputs: Inputs) -> None:
    records, _ = read_records([file], [text_field], "skip", inputs.max_doc_chars, bad=inputs.lines)
    inputs.documents.extend(r[text_field] for r in records)


def read_inputs(paths: list[str], *, unit: str = "file", text_field: str = "text", corpus: str | None = None,
                base_dir: Path | None = None, max_doc_chars: int = DEFAULT_MAX_DOC_CHARS) -> Inputs:
    """Every document of ``paths`` (in sorted file order) and of the embedded ``corpus``."""
    inputs = Inputs(max_doc_chars=max_doc_chars)
    if corpus is not None:
        from selfsup_text.data.gensim_data import corpus_documents

        inputs.documents.extend(corpus_documents(corpus))
    if paths:
        for file in find_files(paths, base_dir or Path.cwd(), TEXT_SUFFIXES):
            try:
                if file.suffix.lower() in JSONL_SUFFIXES:
                    read_jsonl(file, text_field, inputs)
                else:
                    inputs.documents.extend(read_file_documents(file, unit, "utf-8", max_doc_chars, inputs.files))
            except (OSError, UnicodeError, ValueError) as e:
                inputs.files.record(file, e)
    return inputs
