"""Reading text in bounded memory: files streamed, documents cut to a maximum length, bad Unicode replaced.

Shared by the text sources and ``selfsup prepare``. Every event is counted in a
:class:`selfsup.lib.BadFiles` and named by file and line:

* a document (file, line or paragraph, by ``unit``) longer than ``max_doc_chars`` characters is cut
  into documents of at most that length, at the last whitespace in the second half of each piece
  when there is one (kind ``cut``, once per original document). A file is read line by line in
  pieces of at most ``max_doc_chars`` characters, so a 50 MB single-line file never needs more than
  its documents plus two pieces in memory;
* undecodable bytes (read with ``errors="surrogateescape"``) and lone surrogates (JSON escapes such
  as ``"\\ud800"``, which no tokenizer or UTF-8 writer accepts) become U+FFFD (kind
  ``invalid_unicode``, once per line). A file where more than :data:`MAX_INVALID_FRACTION` of the
  characters are undecodable is not text in that encoding (a wrong ``encoding``, a binary file): it is
  unreadable, skipped by ``on_error = "skip"`` or fatal under "raise".

Documents are the same as before these guards for every file without such problems: ``unit =
"file"`` is the stripped file, ``"line"`` each stripped non-empty line (``str.splitlines`` breaks),
``"paragraph"`` each stripped non-empty block between blank lines (``\\n\\s*\\n``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Sequence

from selfsup.lib import BadFiles
from selfsup_text.data.options import DEFAULT_MAX_DOC_CHARS

__all__ = ["DEFAULT_MAX_DOC_CHARS", "ENCODE_BATCH_CHARS", "MAX_INVALID_FRACTION", "char_batches", "cut_point",
           "cut_text", "read_file_documents", "replace_invalid"]

#: Characters tokenized per ``encode_batch`` call: the tokenizer's intermediate objects take about
#: 150 bytes per character, so a batch stays near 150 MB however long the input is.
ENCODE_BATCH_CHARS = 1_000_000
#: Above this fraction of undecodable characters a file is taken not to be text in its encoding.
MAX_INVALID_FRACTION = 0.01

_SURROGATE = re.compile("[\ud800-\udfff]")


def replace_invalid(text: str) -> tuple[str, int]:
    """``(text, n)``: ``text`` with its ``n`` lone surrogates (undecodable bytes read with
    ``surrogateescape``, or JSON ``\\ud800`` escapes) replaced by U+FFFD (the same object when n = 0)."""
    n = len(_SURROGATE.findall(text))
    return (_SURROGATE.sub("\ufffd", text), n) if n else (text, 0)


def char_batches(texts: Sequence[str], max_chars: int = ENCODE_BATCH_CHARS) -> list[tuple[int, int]]:
    """``(start, end)`` ranges of ``texts`` holding at most ``max_chars`` characters each (or one text)."""
    ranges, start, size = [], 0, 0
    for i, text in enumerate(texts):
        if i > start and size + len(text) > max_chars:
            ranges.append((start, i))
            start, size = i, 0
        size += len(text)
    if start < len(texts):
        ranges.append((start, len(texts)))
    return ranges


def cut_point(text: str, limit: int) -> int:
    """Where to end a piece of at most ``limit`` characters of ``text`` (stripped): after the last space or
    line break in its second half or right after it, else at ``limit`` exactly."""
    if len(text) <= limit:
        return len(text)
    space = max(text.rfind(" ", limit // 2, limit + 1), text.rfind("\n", limit // 2, limit + 1))
    return space + 1 if space >= 0 else limit


def cut_text(text: str, limit: int) -> list[str]:
    """``text`` cut into stripped, non-empty pieces of at most ``limit`` characters (see :func:`cut_point`)."""
    pieces, start = [], 0
    while start < len(text):
        window = text[start : start + limit + 1]
        end = cut_point(window, limit)
        piece = window[:end].strip()
        if piece:
            pieces.append(piece)
        start += end
    return pieces


_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # the line boundaries of str.splitlines


class _Document:
    """One document assembled from pieces and appended to ``out``, cut into pieces of at most ``limit``
    characters when its content (stripped) is longer. Leading whitespace is dropped as it comes and
    trailing whitespace is capped, so the buffer never holds more than three pieces' worth. ``where``
    (the file and line its content starts at) names it when it is counted as cut."""

    def __init__(self, out: list[str], limit: int, bad: BadFiles):
        self.out, self.limit, self.bad = out, limit, bad
        self.parts: list[str] = []
        self.where, self.size, self.chars, self.pieces = "", 0, 0, 0

    def add(self, text: str, where: str) -> None:
        if not self.size:
            text = text.lstrip()
            if not text:
                return
        if not self.chars:
            self.where = where
        self.parts.append(text)
        self.size += len(text)
        self.chars += len(text)
        if self.size > 2 * self.limit:
            rest = self._cut("".join(self.parts))
            self.parts, self.size = [rest], len(rest)

    def _cut(self, buffer: str) -> str:
        """Emit pieces of ``buffer`` while its content is over the limit; the rest, trailing whitespace capped."""
        while len(buffer.rstrip()) > self.limit:
            end = cut_point(buffer, self.limit)
            self._emit(buffer[:end])
            buffer = buffer[end:].lstrip()
        return buffer[: len(buffer.rstrip()) + self.limit]

    def _emit(self, text: str) -> None:
        text = text.strip()
        if text:
            self.out.append(text)
            self.pieces += 1

    def close(self, keep_empty: bool = False) -> None:
        """Emit the rest; with ``keep_empty`` an empty document when nothing was emitted (whole-file
        documents stay one per file, as the source's ``empty`` count expects)."""
        self._emit(self._cut("".join(self.parts)))
        if keep_empty and not self.pieces:
            self.out.append("")
        if self.pieces > 1:
            self.bad.note("cut", self.where, f"a document of {self.chars:,} characters cut into {self.pieces}")
        self.parts, self.size, self.chars, self.pieces = [], 0, 0, 0


def _pieces(file: Path, encoding: str, limit: int) -> Iterator[tuple[int, str]]:
    """``(line number, piece)``: the file's ``\\n``-terminated lines in pieces of at most ``limit``
    characters (undecodable bytes as lone surrogates; line endings kept, not translated)."""
    with open(file, encoding=encoding, errors="surrogateescape", newline="\n") as f:
        number = 1
        while True:
            piece = f.readline(limit)
            if not piece:
                return
            yield number, piece
            if piece.endswith("\n"):
                number += 1


def read_file_documents(file: Path, unit: str, encoding: str, max_doc_chars: int, bad: BadFiles) -> list[str]:
    """The documents of ``file`` by ``unit`` (see the module docstring), cuts and replaced characters
    counted in ``bad``. Raises ``OSError``/``UnicodeError`` when the file cannot be read as text, and
    ``ValueError`` when too much of it is undecodable, for the caller's ``on_error`` policy (nothing is
    counted then)."""
    if unit not in ("file", "line", "paragraph"):
        raise ValueError(f"unit must be 'file', 'line' or 'paragraph', got {unit!r}")
    docs: list[str] = []
    events = BadFiles(bad.source, "skip", what=bad.what, max_doc_chars=max_doc_chars)  # merged if readable
    doc = _Document(docs, max_doc_chars, events)
    chars = invalid = last_invalid = 0
    line_start, blank = True, True
    for number, piece in _pieces(file, encoding, max_doc_chars):
        where = f"{file}:{number}"
        piece, found = replace_invalid(piece)
        chars, invalid = chars + len(piece), invalid + found
        if found:
            if number != last_invalid:  # once per line
                events.note("invalid_unicode", where, f"{found} undecodable byte(s) replaced by U+FFFD")
                last_invalid = number
        ends = piece.endswith("\n")
        if unit == "line":
            for segment in piece.splitlines(keepends=True):
                doc.add(segment, where)
                if segment[-1] in _BREAKS:
                    doc.close()
        elif unit == "paragraph":
            blank = (line_start or blank) and not piece.strip()
            if ends and blank and number > 1:
                doc.close()  # a whitespace-only line between two line breaks: \n\s*\n
            else:
                doc.add(piece, where)
        else:
            doc.add(piece, where)
        line_start = ends
    if invalid > MAX_INVALID_FRACTION * chars:
        raise ValueError(f"not {encoding} text: {invalid} of {chars} characters cannot be decoded "
                         "(is the encoding right?)")
    doc.close(keep_empty=unit == "file")
    bad.merge(events)
    return docs
