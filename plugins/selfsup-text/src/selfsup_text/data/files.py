"""``text_files``: plain-text files, folders and glob patterns.

Each entry of ``paths`` (relative to the recipe) is a file, a folder (searched recursively for the
``extensions``) or a glob pattern (``**`` allowed). Files are read in sorted path order and cut into
documents by ``unit``: the whole file, each non-empty line, or each blank-line separated paragraph.

Files are streamed in bounded memory (:mod:`selfsup_text.data.reading`): a document longer than
``max_doc_chars`` characters is cut into several, and undecodable bytes become U+FFFD; both are
counted and named by file and line (``source.bad_files``, a :class:`selfsup.lib.BadFiles`; one
warning when the source is built). A file that cannot be read, or is mostly not text in
``encoding``, is skipped and counted (``source.skipped_files``, a list of ``(path, reason)``) with
``on_error = "skip"``, or fails the build naming it.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from selfsup.components import BuildContext
from selfsup.lib import BadFiles
from selfsup_text.data.base import TextSource, tokenizer_for
from selfsup_text.data.gensim_data import split_paragraphs
from selfsup_text.data.reading import DEFAULT_MAX_DOC_CHARS, read_file_documents


def find_files(paths: list[str], base_dir: Path, extensions: list[str] | tuple[str, ...], *,
               source: str = "text_files") -> list[Path]:
    """The files named by ``paths`` (files, folders, globs), sorted and without duplicates. In folders,
    only names ending in one of ``extensions`` (case-insensitive; compound ones such as ``.warc.gz``
    work); errors name the ``source``."""
    suffixes = sorted({e.lower() if e.startswith(".") else "." + e.lower() for e in extensions})
    found: set[Path] = set()
    for entry in paths:
        path = Path(entry).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        if any(ch in entry for ch in "*?["):
            matches = [Path(m) for m in glob.glob(str(path), recursive=True)]
            files = [m for m in matches if m.is_file()]
            if not files:
                raise FileNotFoundError(f"{source}: the pattern {entry!r} matches no file (in {base_dir})")
            found.update(files)
        elif path.is_dir():
            files = [p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(tuple(suffixes))]
            if not files:
                raise FileNotFoundError(f"{source}: no {suffixes} file under {path}")
            found.update(files)
        elif path.is_file():
            found.add(path)
        else:
            raise FileNotFoundError(f"{source}: {path} does not exist")
    return sorted(found)


def split_units(text: str, unit: str) -> list[str]:
    """``text`` cut into documents: the whole text, non-empty lines, or blank-line blocks."""
    if unit == "file":
        return [text.strip()]
    if unit == "line":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if unit == "paragraph":
        return split_paragraphs(text)
    raise ValueError(f"unit must be 'file', 'line' or 'paragraph', got {unit!r}")


def read_documents(
    files: list[Path], unit: str, encoding: str, on_error: str, max_doc_chars: int = DEFAULT_MAX_DOC_CHARS,
    source: str = "text_files",
) -> tuple[list[str], BadFiles]:
    """Documents from ``files`` (in bounded memory, cut to ``max_doc_chars``) and the record of what was
    skipped, cut or replaced (warned once)."""
    docs: list[str] = []
    bad = BadFiles(source, on_error, what=f"{encoding} text file", max_doc_chars=max_doc_chars)  # type: ignore
    for file in files:
        try:
            docs.extend(read_file_documents(file, unit, encoding, max_doc_chars, bad))
        except (OSError, UnicodeError, ValueError) as e:
            bad.record(file, e)
    bad.warn(f"({len(files)} files)")
    return docs, bad


def build(options: Any, context: BuildContext) -> TextSource:
    files = find_files(options.paths, Path(context.base_dir), options.extensions)
    docs, bad = read_documents(files, options.unit, options.encoding, options.on_error, options.max_doc_chars)
    if not docs:
        raise ValueError(f"text_files: no text in {len(files)} file(s) ({len(bad.skipped)} unreadable)")
    source = TextSource(docs, tokenizer_for(options, context), options)
    source.files = files
    source.bad_files = bad
    source.skipped_files = bad.skipped
    return source
