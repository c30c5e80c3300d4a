"""``text_files``: plain-text files, folders and glob patterns.

Each entry of ``paths`` (relative to the recipe) is a file, a folder (searched recursively for the
``extensions``) or a glob pattern (``**`` allowed). Files are read in sorted path order and cut into
documents by ``unit``: the whole file, each non-empty line, or each blank-line separated paragraph.
A file that cannot be read or decoded with ``encoding`` is skipped and counted
(``source.skipped_files``, a list of ``(path, reason)``) with ``on_error = "skip"``, or raises.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from selfsup.badfiles import BadFiles
from selfsup.components import BuildContext
from selfsup_text.data.base import TextSource, tokenizer_for
from selfsup_text.data.gensim_data import split_paragraphs


def find_files(paths: list[str], base_dir: Path, extensions: list[str]) -> list[Path]:
    """The files named by ``paths`` (files, folders, globs), sorted and without duplicates."""
    suffixes = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    found: set[Path] = set()
    for entry in paths:
        path = Path(entry).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        if any(ch in entry for ch in "*?["):
            matches = [Path(m) for m in glob.glob(str(path), recursive=True)]
            files = [m for m in matches if m.is_file()]
            if not files:
                raise FileNotFoundError(f"text_files: the pattern {entry!r} matches no file (in {base_dir})")
            found.update(files)
        elif path.is_dir():
            files = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes]
            if not files:
                raise FileNotFoundError(f"text_files: no {sorted(suffixes)} file under {path}")
            found.update(files)
        elif path.is_file():
            found.add(path)
        else:
            raise FileNotFoundError(f"text_files: {path} does not exist")
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
    files: list[Path], unit: str, encoding: str, on_error: str
) -> tuple[list[str], list[tuple[str, str]]]:
    """Documents from ``files`` and the ``(path, reason)`` of each file skipped."""
    docs: list[str] = []
    bad = BadFiles("text_files", on_error, what=f"{encoding} text file")  # type: ignore[arg-type]
    for file in files:
        try:
            text = file.read_bytes().decode(encoding)
        except (OSError, UnicodeDecodeError) as e:
            bad.record(file, e)
            continue
        docs.extend(split_units(text, unit))
    bad.warn(f"({len(files)} files)")
    return docs, bad.skipped


def build(options: Any, context: BuildContext) -> TextSource:
    files = find_files(options.paths, Path(context.base_dir), options.extensions)
    docs, skipped = read_documents(files, options.unit, options.encoding, options.on_error)
    if not docs:
        raise ValueError(f"text_files: no text in {len(files)} file(s) ({len(skipped)} unreadable)")
    source = TextSource(docs, tokenizer_for(options, context), options)
    source.files = files
    source.skipped_files = skipped
    return source
