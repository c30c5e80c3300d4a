"""``warc``: the text of WARC and WET files (a ``selfsup collect`` crawl, Common Crawl segments).

``paths`` (relative to the recipe) are files, folders (searched recursively for ``.warc``,
``.warc.gz``, ``.wet``, ``.wet.gz``) or glob patterns; files are read in sorted order, records in
file order, so the documents and their split are the same on every build. Records read:

* ``response`` records with a 2xx status and an HTML (or ``text/plain``, robots.txt files aside)
  payload: the payload with its transfer and content encodings removed (warcio), decoded as
  :func:`~selfsup_text.collect.extract.decode_body` does (BOM, header charset, ``<meta charset>``,
  UTF-8, else windows-1252), then its main text by trafilatura (``extract = "trafilatura"``) or all
  its visible text (``"raw"``). Responses cut at capture (``WARC-Truncated``), other statuses and
  other types are skipped (counted in ``source.stats``); ``revisit`` records (a duplicate payload)
  have no payload and are skipped;
* ``conversion`` records (WET files: text already extracted, e.g. Common Crawl's) as they are;
* ``resource`` records of type ``text/html`` or ``text/plain`` like responses.

Then: documents shorter than ``min_chars`` are dropped, ``languages`` keeps those py3langid
identifies as one of them (with ``min_language_score``), ``dedup`` keeps the first of exactly equal
texts, and texts over ``max_doc_chars`` are cut into several documents (counted as ``cut``).

Bad data (``source.bad_files``, a :class:`selfsup.lib.BadFiles`, warned once when built): a record
that cannot be read or decoded is skipped and counted as ``<file>@<offset>``, a file that cannot be
opened or whose gzip stream breaks as the file (documents read before the break are kept), with
``on_error = "skip"``; ``"raise"`` stops the build naming them. ``source.urls`` gives each document's
``WARC-Target-URI`` (before the split), ``source.stats`` the record counts.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from selfsup.components import BuildContext
from selfsup.lib import BadFiles
from selfsup_text.data.base import TextSource, tokenizer_for
from selfsup_text.data.reading import cut_text

SUFFIXES = (".warc", ".warc.gz", ".wet", ".wet.gz")


class _Unreadable(ValueError):
    """A bad record or file under ``on_error = "raise"``: ends the build (not caught as a file's error)."""


def find_warc_files(paths: list[str], base_dir: Path) -> list[Path]:
    """The WARC/WET files named by ``paths`` (files, folders, globs), sorted and without duplicates."""
    from selfsup_text.data.files import find_files

    return find_files(paths, base_dir, SUFFIXES, source="warc")


def record_text(record: Any, extract: str, stats: Counter) -> str | None:
    """The text of one warcio record (see the module docstring), or None (counted in ``stats`` by why)."""
    from selfsup_text.collect.extract import decode_body, main_text, sniff_kind, visible_text

    kind = record.rec_type
    if kind == "conversion":
        stats["conversion"] += 1
        return record.content_stream().read().decode("utf-8", errors="replace")
    if kind == "response":
        stats["response"] += 1
        if urlsplit(record.rec_headers.get_header("WARC-Target-URI") or "").path == "/robots.txt":
            stats["robots_txt"] += 1
            return None
        http = record.http_headers
        status = http.get_statuscode() if http is not None else None
        if not status or not str(status).startswith("2"):
            stats["not_2xx"] += 1
            return None
        content_type = http.get_header("Content-Type")
    elif kind == "resource":
        stats["resource"] += 1
        content_type = record.rec_headers.get_header("Content-Type")
    else:
        return None
    if record.rec_headers.get_header("WARC-Truncated"):
        stats["truncated"] += 1
        return None
    payload = record.content_stream().read()
    page = sniff_kind(content_type, payload)
    if page is None:
        stats["not_text"] += 1
        return None
    text, _, _ = decode_body(payload, content_type, html=page == "html")
    if page == "plain":
        return text
    stats["html"] += 1
    return main_text(text) if extract == "trafilatura" else visible_text(text)


def read_warc_documents(files: list[Path], options: Any) -> tuple[list[str], list[str], Counter, BadFiles]:
    """``(documents, their URLs, record counts, bad-data record)`` of ``files`` under ``options``."""
    from warcio.archiveiterator import ArchiveIterator

    from selfsup_text.collect.extract import identify_language, language_codes

    bad = BadFiles("warc", options.on_error, what="WARC record", max_doc_chars=options.max_doc_chars)  # type: ignore
    if options.languages is not None:
        unknown = sorted(set(options.languages) - language_codes())
        if unknown:
            raise ValueError(f"warc: py3langid knows no language {unknown}")
    docs: list[str] = []
    urls: list[str] = []
    stats: Counter = Counter()
    seen: set[bytes] = set()
    budget = options.max_records
    for file in files:
        if budget is not None and stats["records"] >= budget:
            break
        stats["files"] += 1
        try:
            with open(file, "rb") as f:
                records = ArchiveIterator(f)
                for record in records:
                    if budget is not None and stats["records"] >= budget:
                        break
                    stats["records"] += 1
                    where = f"{file}@{_offset(records)}"
                    try:
                        text = record_text(record, options.extract, stats)
                    except Exception as exc:  # noqa: BLE001 - any decoding failure makes the record unreadable
                        _record(bad, where, exc)
                        continue
                    if text is None:
                        continue
                    text = text.strip()
                    if len(text) < options.min_chars:
                        stats["short"] += 1
                        continue
                    if options.languages is not None:
                        language, score = identify_language(text)
                        if language not in options.languages or score < options.min_language_score:
                            stats["other_language"] += 1
                            continue
                    if options.dedup:
                        digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()
                        if digest in seen:
                            stats["duplicate"] += 1
                            continue
                        seen.add(digest)
                    url = record.rec_headers.get_header("WARC-Target-URI") or ""
                    pieces = cut_text(text, options.max_doc_chars) if len(text) > options.max_doc_chars else [text]
                    if len(pieces) > 1:
                        bad.note("cut", where, f"a text of {len(text):,} characters cut into {len(pieces)} documents")
                    docs += pieces
                    urls += [url] * len(pieces)
                    stats["kept"] += 1
        except _Unreadable:
            raise
        except Exception as exc:  # noqa: BLE001 - OSError, a broken gzip stream, warcio's ArchiveLoadFailed
            _record(bad, file, exc)
    bad.warn(f"({len(files)} files)")
    return docs, urls, stats, bad


def _offset(records: Any) -> int | str:
    """The current record's offset (warcio's ``offset`` before the record is read: ``get_record_offset()``
    would read the record to its end first)."""
    return getattr(records, "offset", "?")


def _record(bad: BadFiles, where: Any, exc: BaseException) -> None:
    try:
        bad.record(where, exc)
    except ValueError as stop:  # on_error = "raise"
        raise _Unreadable(str(stop)) from None


def build(options: Any, context: BuildContext) -> TextSource:
    try:
        import warcio  # noqa: F401
    except ImportError:
        raise ImportError("the warc source needs the web extra: pip install 'selfsup-text[web]'") from None
    files = find_warc_files(options.paths, Path(context.base_dir))
    docs, urls, stats, bad = read_warc_documents(files, options)
    if not docs:
        kept = ", ".join(f"{k} {v}" for k, v in sorted(stats.items())) or "no record"
        raise ValueError(f"warc: no document in {len(files)} file(s) ({kept}; {len(bad.skipped)} unreadable)")
    source = TextSource(docs, tokenizer_for(options, context), options)
    source.files = files
    source.urls = urls
    source.stats = dict(stats)
    source.bad_files = bad
    source.skipped_files = bad.skipped
    return source
