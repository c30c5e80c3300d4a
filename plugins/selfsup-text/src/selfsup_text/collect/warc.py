"""WARC files of a crawl (warcio): request + response records, one gzip member per record, files
rotated by size; and helpers to read records back by file and offset.

Every HTTP exchange of the crawl (pages, redirects, errors with a response, robots.txt, sitemaps)
is written as a ``request`` record and a ``response`` record (``WARC-Concurrent-To`` links them),
the response holding the status line, the headers as received (less ``Transfer-Encoding``: the
body is stored de-chunked) and the body as received (still ``Content-Encoding``-compressed;
warcio's ``content_stream()`` decodes it). A body cut at ``max_page_bytes`` carries
``WARC-Truncated: length``. A page whose body is byte-identical to one already stored gets a
``revisit`` record (profile *identical-payload-digest*) pointing at the first one instead of a
second copy. Each file starts with a ``warcinfo`` record naming the software and the crawl options.

Files are ``<prefix>-00000.warc.gz``, ``-00001``, ...: a new one is started when the current one
reaches ``max_bytes``. Writes go to the end of the current file; the crawl's frontier commits the
file sizes together with the URLs' states, and a resumed crawl first truncates every file to its
committed size (records written after the last commit belong to fetches that will be redone).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from io import BytesIO
from pathlib import Path
from typing import Any, Iterator

_NAME = re.compile(r"^(?P<prefix>.+)-(?P<index>\d{5})\.warc\.gz$")
REVISIT_PROFILE = "http://netpreserve.org/warc/1.0/revisit/identical-payload-digest"
_HOP_BY_HOP = {"transfer-encoding", "connection", "keep-alive"}


def iso_date(timestamp: float) -> str:
    """A WARC-Date (UTC, second precision, as WARC/1.0 has it)."""
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def payload_digest(payload: bytes) -> str:
    """The ``WARC-Payload-Digest`` warcio writes for ``payload``: ``sha1:`` + base32."""
    return "sha1:" + base64.b32encode(hashlib.sha1(payload).digest()).decode("ascii")


@dataclass(frozen=True)
class Location:
    """Where a record starts: the WARC file (relative to the crawl folder) and its byte offset."""

    file: str
    offset: int
    record_id: str = ""


class WarcFiles:
    """The rotating WARC files of one crawl under ``folder`` (``<out>/warc``).

    ``committed`` maps file names to the sizes the frontier committed last (none: a new crawl):
    :meth:`open` truncates the files to them and removes files the frontier never saw."""

    def __init__(self, folder: Path, *, max_bytes: int, prefix: str = "crawl", info: dict[str, Any] | None = None):
        self.folder, self.max_bytes, self.prefix = Path(folder), int(max_bytes), prefix
        self.info = dict(info or {})
        self._file = None
        self._writer = None
        self.current: str | None = None

    # ------------------------------------------------------------------ files

    def open(self, committed: dict[str, int]) -> None:
        from warcio.warcwriter import WARCWriter

        self.folder.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.folder.glob(f"{self.prefix}-*.warc.gz")):
            rel = self.relative(path)
            if rel not in committed:
                path.unlink()  # started after the last commit
            elif path.stat().st_size > committed[rel]:
                with open(path, "r+b") as f:
                    f.truncate(committed[rel])
        names = sorted(n for n in committed if _NAME.match(Path(n).name))
        self._writer_cls = WARCWriter
        if names:
            self._open_file(self.folder / Path(names[-1]).name, new=False)
        else:
            self._open_file(self._path(0), new=True)

    def _path(self, index: int) -> Path:
        return self.folder / f"{self.prefix}-{index:05d}.warc.gz"

    def relative(self, path: Path) -> str:
        return f"{self.folder.name}/{path.name}"

    def _open_file(self, path: Path, *, new: bool) -> None:
        self.close()
        self._file = open(path, "ab")
        self._writer = self._writer_cls(self._file, gzip=True)
        self.current = self.relative(path)
        if new or self._file.tell() == 0:
            self._warcinfo()

    def _warcinfo(self) -> None:
        info = {"software": self.info.get("software", "selfsup-collect"), "format": "WARC File Format 1.0",
                **{k: v for k, v in self.info.items() if k != "software"}}
        fields = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in info.items()}
        record = self._writer.create_warcinfo_record(Path(self.current).name, fields)
        self._writer.write_record(record)

    def _rotate_if_full(self) -> None:
        if self._file is not None and self._file.tell() >= self.max_bytes:
            match = _NAME.match(Path(self.current).name)
            index = int(match.group("index")) + 1 if match else 0
            self._open_file(self._path(index), new=True)

    def sizes(self) -> dict[str, int]:
        """Every WARC file of the crawl with its size now (after :meth:`flush`)."""
        return {self.relative(p): p.stat().st_size for p in sorted(self.folder.glob(f"{self.prefix}-*.warc.gz"))}

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            self._writer = None

    # ------------------------------------------------------------------ records

    def _write(self, record) -> Location:
        offset = self._file.tell()
        self._writer.write_record(record)
        return Location(self.current, offset, record.rec_headers.get_header("WARC-Record-ID"))

    def _request(self, url: str, method: str, headers: list[tuple[str, str]], date: str, concurrent_to: str):
        from urllib.parse import urlsplit

        from warcio.statusandheaders import StatusAndHeaders

        parts = urlsplit(url)
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        http = StatusAndHeaders(f"{method} {target} HTTP/1.1", headers, is_http_request=True)
        return self._writer.create_warc_record(url, "request", http_headers=http, warc_headers_dict={
            "WARC-Date": date, "WARC-Concurrent-To": concurrent_to})

    def write_exchange(self, url: str, *, request_headers: list[tuple[str, str]], status: int, reason: str,
                       headers: list[tuple[str, str]], body: bytes, fetched_at: float, ip: str | None = None,
                       truncated: bool = False, http_version: str = "HTTP/1.1") -> Location:
        """The response (then its request) of one HTTP exchange; returns where the response starts."""
        from warcio.statusandheaders import StatusAndHeaders

        self._rotate_if_full()
        date = iso_date(fetched_at)
        kept = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]
        http = StatusAndHeaders(f"{status} {reason}".strip(), kept, protocol=http_version)
        warc_headers = {"WARC-Date": date}
        if ip:
            warc_headers["WARC-IP-Address"] = ip
        if truncated:
            warc_headers["WARC-Truncated"] = "length"
        response = self._writer.create_warc_record(url, "response", payload=BytesIO(body), length=len(body),
                                                   http_headers=http, warc_headers_dict=warc_headers)
        location = self._write(response)
        self._write(self._request(url, "GET", request_headers, date, location.record_id))
        return location

    def write_revisit(self, url: str, *, request_headers: list[tuple[str, str]], status: int, reason: str,
                      headers: list[tuple[str, str]], body: bytes, fetched_at: float, original: Location,
                      original_url: str, original_date: str, http_version: str = "HTTP/1.1") -> Location:
        """A ``revisit`` record: ``url`` served the same payload as ``original`` (no second copy; the
        original's record id may be unknown yet: ``WARC-Refers-To`` is then left out)."""
        from warcio.statusandheaders import StatusAndHeaders

        self._rotate_if_full()
        date = iso_date(fetched_at)
        kept = [(k, v) for k, v in headers if k.lower() not in _HOP_BY_HOP]
        http = StatusAndHeaders(f"{status} {reason}".strip(), kept, protocol=http_version)
        warc_headers = {"WARC-Date": date, "WARC-Profile": REVISIT_PROFILE}
        if original.record_id:
            warc_headers["WARC-Refers-To"] = original.record_id
        record = self._writer.create_revisit_record(url, payload_digest(body), original_url, original_date,
                                                    http_headers=http, warc_headers_dict=warc_headers)
        location = self._write(record)
        self._write(self._request(url, "GET", request_headers, date, location.record_id))
        return location


# ---------------------------------------------------------------------------------- reading


def iter_records(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """``(offset, record)`` of every record of a WARC/WET file (gzipped or not), in order. A record's
    content must be read before the next one is asked for."""
    from warcio.archiveiterator import ArchiveIterator

    with open(path, "rb") as f:
        records = ArchiveIterator(f)
        for record in records:
            # warcio's offset of the record being read (get_record_offset() would read it to its end first)
            yield records.offset, record


def read_record(path: str | os.PathLike, offset: int) -> dict[str, Any]:
    """The record starting at ``offset`` of ``path``: its type, target URI, WARC headers, HTTP status
    and headers (responses) and its content, transfer and content encodings removed."""
    from warcio.archiveiterator import ArchiveIterator

    with open(path, "rb") as f:
        f.seek(offset)
        record = next(iter(ArchiveIterator(f)))
        http = record.http_headers
        return {
            "type": record.rec_type,
            "uri": record.rec_headers.get_header("WARC-Target-URI"),
            "warc_headers": dict(record.rec_headers.headers),
            "status": int(http.get_statuscode()) if http is not None and record.rec_type in ("response", "revisit")
            and http.get_statuscode() else None,
            "http_headers": dict(http.headers) if http is not None else {},
            "content": record.content_stream().read(),
        }
