"""The crawl's persistent state: ``<out>/frontier.sqlite`` (SQLite in WAL mode).

Tables:

* ``urls``: every URL key the crawl has met, once: the URL fetched, its origin, depth, kind
  (``page`` or ``sitemap``), state (``queued``, ``done``, ``failed``, ``robots``, ``offsite``,
  ``filtered``, ``too_deep``), attempts, the time a retry may start (``next_at``), its outcome and
  last HTTP status. The queue is ``state = 'queued'``, taken breadth-first (depth, then discovery);
* ``aliases``: every absolute link form met and its key (``duplicate_url`` counts the new forms of
  known keys);
* ``contents``: SHA-1 of each stored page body -> where it is (``duplicate_content``);
* ``robots``: robots.txt results worth keeping (2xx, 4xx) per origin; ``hosts``: when each origin
  was last asked (politeness across a restart);
* ``counters``: the summary's counts; ``files``: the committed size of each output file
  (``pages.jsonl``, ``fetches.jsonl``, the WARC files); ``meta``: options and version.

Everything one fetch changes is committed in one transaction after its records are written and
flushed to the output files; :meth:`Frontier.committed_sizes` then tells a resumed crawl where
those files end (anything after was written by fetches that were not committed, which are still
queued and will be redone).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS urls (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    origin TEXT NOT NULL,
    depth INTEGER NOT NULL,
    kind TEXT NOT NULL DEFAULT 'page',
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    parent TEXT,
    outcome TEXT,
    status INTEGER,
    updated REAL
);
CREATE INDEX IF NOT EXISTS urls_queue ON urls (state, depth, id);
CREATE TABLE IF NOT EXISTS aliases (raw TEXT PRIMARY KEY, key TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS contents (
    hash TEXT PRIMARY KEY, url TEXT NOT NULL, file TEXT, offset INTEGER, record_id TEXT, date TEXT
);
CREATE TABLE IF NOT EXISTS robots (origin TEXT PRIMARY KEY, status INTEGER, body BLOB, fetched_at REAL);
CREATE TABLE IF NOT EXISTS hosts (origin TEXT PRIMARY KEY, last_request REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS files (name TEXT PRIMARY KEY, size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

ROW_FIELDS = ("id", "key", "url", "origin", "depth", "kind", "attempts", "parent")


class Frontier:
    """The SQLite state of one crawl (see the module docstring). Single-threaded: the crawl's event loop
    is its only user."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.db = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self._in_transaction = False

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic change (nested uses join the outer one)."""
        if self._in_transaction:
            yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")
        finally:
            self._in_transaction = False

    # ------------------------------------------------------------------ meta, counters, files

    def get_meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def add_counts(self, counts: Counter | dict[str, int]) -> None:
        self.db.executemany(
            "INSERT INTO counters (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            [(k, int(v)) for k, v in counts.items() if v])

    def counters(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT name, value FROM counters ORDER BY name").fetchall())

    def set_sizes(self, sizes: dict[str, int]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO files (name, size) VALUES (?, ?)", list(sizes.items()))

    def committed_sizes(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT name, size FROM files").fetchall())

    # ------------------------------------------------------------------ urls

    def state(self, key: str) -> str | None:
        row = self.db.execute("SELECT state FROM urls WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def add(self, key: str, url: str, origin: str, depth: int, *, kind: str = "page", state: str = "queued",
            parent: str | None = None, outcome: str | None = None) -> bool:
        """Insert ``key`` unless known; True when it was new."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO urls (key, url, origin, depth, kind, state, parent, outcome, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (key, url, origin, depth, kind, state, parent, outcome, time.time()))
        return cur.rowcount == 1

    def add_alias(self, raw: str, key: str) -> bool:
        """Record the link form ``raw`` of ``key``; True when this form was new."""
        return self.db.execute("INSERT OR IGNORE INTO aliases (raw, key) VALUES (?, ?)", (raw, key)).rowcount == 1

    def finish(self, key: str, state: str, outcome: str | None, status: int | None = None,
               attempts: int | None = None) -> None:
        self.db.execute("UPDATE urls SET state = ?, outcome = ?, status = ?, attempts = COALESCE(?, attempts), "
                        "updated = ? WHERE key = ?", (state, outcome, status, attempts, time.time(), key))

    def requeue(self, key: str, next_at: float, attempts: int) -> None:
        self.db.execute("UPDATE urls SET state = 'queued', next_at = ?, attempts = ?, updated = ? WHERE key = ?",
                        (next_at, attempts, time.time(), key))

    def next_ready(self, now: float, busy_origins: set[str], busy_keys: set[str]) -> dict[str, Any] | None:
        """The first queued URL (by depth, then discovery) that may start at ``now``, not of a busy origin
        and not already in flight."""
        sql = "SELECT id, key, url, origin, depth, kind, attempts, parent FROM urls " \
              "WHERE state = 'queued' AND next_at <= ?"
        args: list[Any] = [now]
        if busy_origins:
            sql += f" AND origin NOT IN ({','.join('?' * len(busy_origins))})"
            args += sorted(busy_origins)
        if busy_keys:
            sql += f" AND key NOT IN ({','.join('?' * len(busy_keys))})"
            args += sorted(busy_keys)
        row = self.db.execute(sql + " ORDER BY depth, id LIMIT 1", args).fetchone()
        return None if row is None else dict(zip(ROW_FIELDS, row))

    def has_queued(self) -> bool:
        return self.db.execute("SELECT 1 FROM urls WHERE state = 'queued' LIMIT 1").fetchone() is not None

    def queued(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM urls WHERE state = 'queued'").fetchone()[0]

    def earliest_retry(self) -> float | None:
        row = self.db.execute("SELECT MIN(next_at) FROM urls WHERE state = 'queued'").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def states(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT state, COUNT(*) FROM urls GROUP BY state").fetchall())

    # ------------------------------------------------------------------ contents, robots, hosts

    def content(self, digest: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT url, file, offset, record_id, date FROM contents WHERE hash = ?",
                              (digest,)).fetchone()
        return None if row is None else dict(zip(("url", "file", "offset", "record_id", "date"), row))

    def add_content(self, digest: str, url: str, file: str | None, offset: int | None, record_id: str | None,
                    date: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO contents (hash, url, file, offset, record_id, date) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (digest, url, file, offset, record_id, date))

    def robots(self, origin: str) -> tuple[int | None, bytes] | None:
        row = self.db.execute("SELECT status, body FROM robots WHERE origin = ?", (origin,)).fetchone()
        return None if row is None else (row[0], bytes(row[1] or b""))

    def set_robots(self, origin: str, status: int | None, body: bytes) -> None:
        self.db.execute("INSERT OR REPLACE INTO robots (origin, status, body, fetched_at) VALUES (?, ?, ?, ?)",
                        (origin, status, body, time.time()))

    def last_requests(self) -> dict[str, float]:
        return dict(self.db.execute("SELECT origin, last_request FROM hosts").fetchall())

    def set_last_requests(self, times: dict[str, float]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO hosts (origin, last_request) VALUES (?, ?)", list(times.items()))
