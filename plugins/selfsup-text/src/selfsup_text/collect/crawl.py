"""The crawl: one asyncio event loop schedules fetches from the persistent frontier, politely.

Scheduling: at most ``concurrency`` fetches at once, at most ``per_host_concurrency`` per origin
(``scheme://host:port``), and two requests to one origin start at least ``delay`` seconds apart
(robots.txt's Crawl-delay or Request-rate when larger, up to :data:`MAX_CRAWL_DELAY`; a 429/503's
``Retry-After`` pushes the origin's next request back too). URLs are taken breadth-first.

One URL's task: robots.txt of its origin (fetched once, see :mod:`.robots`), then the request;
redirects are followed hop by hop (each hop checked against the domains, the path rules, robots.txt,
the chain so far -- a loop -- and ``max_redirects``; a hop to a URL the crawl already has stops there,
counted ``duplicate_url``); a timeout, a connection error, 429 or 5xx is retried later with
exponential backoff (``Retry-After`` honoured, up to ``max_retry_wait``); a 2xx HTML or plain-text
body is de-duplicated by content (SHA-1 of the decoded body) and extracted (in a worker thread);
its links enter the frontier (normalised, de-duplicated, scoped) unless the page says ``nofollow``.

Its results are then written in one step that never awaits: WARC records, the ``pages.jsonl``
line, the ``fetches.jsonl`` lines, a flush, then one SQLite transaction with the URL's new state,
its links, counters and the output files' sizes. A crawl killed at any point resumes from the
last transaction (see :mod:`.frontier`); ``SIGINT``/``SIGTERM`` stop it at once, the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import threading
import time
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from selfsup_text.collect import urls as U
from selfsup_text.collect.extract import HTML_TYPES, PLAIN_TYPES, extract_page, media_type, parse_sitemap, sniff_kind
from selfsup_text.collect.fetch import RETRY_ERRORS, RETRY_STATUSES, Fetcher, FetchError, Response, retry_after
from selfsup_text.collect.frontier import Frontier
from selfsup_text.collect.options import CrawlOptions
from selfsup_text.collect.robots import DISALLOW_ALL, MAX_ROBOTS_BYTES, MAX_ROBOTS_REDIRECTS, RULES, Robots
from selfsup_text.collect.warc import Location, WarcFiles, iso_date

#: The longest Crawl-delay / Request-rate honoured (seconds); a larger one is read as this.
MAX_CRAWL_DELAY = 300.0
PAGES, FETCHES, SUMMARY, OPTIONS, FRONTIER = "pages.jsonl", "fetches.jsonl", "summary.json", "crawl.json", \
    "frontier.sqlite"
FORMAT_VERSION = 1
_TICK = 0.05


class CrawlFolderError(ValueError):
    """The output folder cannot hold this crawl (another crawl's folder, not a crawl folder, ...)."""


@dataclass
class Entry:
    """One request of a task: its fetch-log line and the response (None: no response), with the original
    when the response is a duplicate body (written as a revisit record)."""

    log: dict[str, Any]
    response: Response | None = None
    revisit_of: dict[str, Any] | None = None
    final: bool = False


@dataclass
class Outcome:
    """What a task did to its URL, applied in one step by :meth:`Crawler._apply`."""

    state: str = "done"  # done, failed, robots, queued (a retry)
    outcome: str = ""
    status: int | None = None
    attempts: int = 0
    retry_at: float | None = None
    entries: list[Entry] = field(default_factory=list)
    page: dict[str, Any] | None = None
    links: list[tuple[str, int, str]] = field(default_factory=list)  # (absolute URL, depth, kind)
    claims: list[tuple[str, str, bool]] = field(default_factory=list)  # redirect targets (key, url, new)
    content: tuple[str, str, str] | None = None  # (sha1, url, WARC date) of a newly stored body
    counts: Counter = field(default_factory=Counter)


def _now_iso(ts: float) -> str:
    return iso_date(ts)


def _log(url: str, kind: str, attempt: int, **fields: Any) -> dict[str, Any]:
    return {"url": url, "kind": kind, "attempt": attempt, "fetched_at": None, "status": None, "content_type": None,
            "bytes": 0, "elapsed": None, "error": None, "robots": None, **fields}


def _response_log(entry: dict[str, Any], response: Response) -> dict[str, Any]:
    entry.update(fetched_at=_now_iso(response.started), status=response.status, content_type=response.content_type,
                 bytes=len(response.body), elapsed=round(response.elapsed, 4), truncated=response.truncated or None,
                 ip=response.ip)
    if response.is_redirect:
        entry["location"] = response.header("location")
    return entry


# ---------------------------------------------------------------------------------- the folder


def prepare_folder(out: Path, options: CrawlOptions | None, *, fresh: bool = False) -> tuple[CrawlOptions, bool]:
    """The options to run with and whether the crawl resumes. ``out`` empty or missing: a new crawl with
    ``options``. ``out`` a crawl folder: resumed with its stored options, updated by ``options`` (if given)
    where :data:`~selfsup_text.collect.options.CHANGEABLE`; other differences are refused. ``fresh``
    deletes a crawl folder's outputs first. Anything else in ``out`` is refused."""
    out = Path(out)
    stored_file = out / OPTIONS
    if out.exists() and not out.is_dir():
        raise CrawlFolderError(f"{out} is not a folder")
    if fresh and stored_file.is_file():
        _remove_outputs(out)
    if stored_file.is_file():
        try:
            stored = CrawlOptions.model_validate(json.loads(stored_file.read_text(encoding="utf-8"))["options"])
        except (OSError, ValueError, KeyError) as exc:
            raise CrawlFolderError(f"{stored_file} cannot be read ({exc}); use --fresh to start over") from None
        if options is None:
            return stored, True
        differences = options.scope_differences(stored)
        if differences:
            raise CrawlFolderError(
                f"{out} holds a crawl with other {', '.join(differences)}: resume it with the same settings "
                "(or none: they are read from crawl.json), start over with --fresh, or use another --out")
        return options, True
    if out.exists() and any(out.iterdir()):
        raise CrawlFolderError(f"{out} is not empty and holds no crawl ({OPTIONS} missing): use another --out")
    if options is None:
        raise CrawlFolderError(f"{out} holds no crawl: give SEEDS to start one")
    return options, False


def _remove_outputs(out: Path) -> None:
    for name in (PAGES, FETCHES, SUMMARY, OPTIONS, FRONTIER, FRONTIER + "-wal", FRONTIER + "-shm"):
        (out / name).unlink(missing_ok=True)
    warc = out / "warc"
    if warc.is_dir():
        for file in warc.glob("*.warc.gz"):
            file.unlink()
        if not any(warc.iterdir()):
            warc.rmdir()


# ---------------------------------------------------------------------------------- the crawler


class Crawler:
    """One run of a crawl in ``out`` (see the module docstring). ``log`` receives progress lines."""

    def __init__(self, options: CrawlOptions, out: str | Path, *, log: Callable[[str], None] | None = None,
                 progress_every: float = 10.0):
        self.options, self.out, self.log = options, Path(out), log or (lambda message: None)
        self.progress_every = progress_every
        self.agent = options.agent
        self.domains = options.domains
        self.counts: Counter = Counter()
        self.robots: dict[str, Robots] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}
        self.host_next: dict[str, float] = {}
        self.last_request: dict[str, float] = {}
        self._delays: dict[str, float] = {}
        self._host_sems: dict[str, asyncio.Semaphore] = {}
        self._launched: Counter = Counter()
        self._busy_keys: set[str] = set()
        self._pending_contents: dict[str, dict[str, Any]] = {}
        self._stop: str | None = None
        self.stopped_by: str | None = None

    # ------------------------------------------------------------------ files

    def _open(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        stored = {"format": FORMAT_VERSION, "options": self.options.to_json()}
        tmp = self.out / (OPTIONS + ".tmp")  # first: a folder with a frontier but no crawl.json is refused
        tmp.write_text(json.dumps(stored, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.out / OPTIONS)
        self.frontier = Frontier(self.out / FRONTIER)
        committed = self.frontier.committed_sizes()
        for name in (PAGES, FETCHES):
            path = self.out / name
            size = committed.get(name, 0)
            if path.exists() and path.stat().st_size > size:
                with open(path, "r+b") as f:
                    f.truncate(size)
        self.warc = WarcFiles(self.out / "warc", max_bytes=self.options.warc_max_bytes, info={
            "software": f"{self.agent.split()[0]} (selfsup collect)", "http-header-user-agent": self.agent,
            "robots": "obey", "seeds": self.options.seeds})
        self.warc.open({k: v for k, v in committed.items() if k.startswith("warc/")})
        self.pages = open(self.out / PAGES, "ab")
        self.fetches = open(self.out / FETCHES, "ab")
        self.counts.update(self.frontier.counters())
        for origin, last in self.frontier.last_requests().items():
            self.last_request[origin] = last
            self.host_next[origin] = last + self.options.delay
        new = self.frontier.get_meta("options") is None
        with self.frontier.transaction():
            self.frontier.set_meta("options", self.options.to_json())
            self.frontier.set_meta("format", FORMAT_VERSION)
            counts = Counter({"runs": 1})
            if new:
                for seed in self.options.seeds:
                    self._enqueue(seed, 0, "page", None, counts, seed=True)
            self.frontier.add_counts(counts)
            self.counts.update(counts)
            self.frontier.set_sizes(self._sizes())

    def _close(self) -> None:
        for f in (getattr(self, "pages", None), getattr(self, "fetches", None)):
            if f is not None:
                f.close()
        if getattr(self, "warc", None) is not None:
            self.warc.close()
        if getattr(self, "frontier", None) is not None:
            self.frontier.close()

    def _sizes(self) -> dict[str, int]:
        sizes = self.warc.sizes()
        for name, f in ((PAGES, getattr(self, "pages", None)), (FETCHES, getattr(self, "fetches", None))):
            sizes[name] = f.tell() if f is not None else 0
        return sizes

    # ------------------------------------------------------------------ frontier entries

    def _enqueue(self, raw: str, depth: int, kind: str, parent: str | None, counts: Counter, *,
                 seed: bool = False) -> None:
        """Add the link ``raw`` (absolute) at ``depth``: de-duplicated, scoped, counted (in a transaction)."""
        url = U.normalize(raw)
        if url is None:
            counts["invalid_links"] += 1
            return
        key = U.url_key(url)
        new_form = self.frontier.add_alias(raw, key)
        if self.frontier.state(key) is not None or key in self._busy_keys:
            if new_form:
                counts["duplicate_url"] += 1
            return
        origin = U.origin(url)
        if not U.in_domains(U.host_of(url), self.domains):
            self.frontier.add(key, url, origin, depth, kind=kind, state="offsite", parent=parent, outcome="offsite")
            counts["offsite"] += 1
        elif kind == "page" and depth > self.options.max_depth:
            self.frontier.add(key, url, origin, depth, kind=kind, state="too_deep", parent=parent, outcome="too_deep")
            counts["too_deep"] += 1
        elif not seed and kind == "page" and (
                not U.path_allowed(url, self.options.allow_paths, self.options.deny_paths)
                or U.has_extension(url, self.options.skip_extensions)):
            self.frontier.add(key, url, origin, depth, kind=kind, state="filtered", parent=parent, outcome="filtered")
            counts["filtered"] += 1
        elif kind == "sitemap" and self.counts["sitemaps_queued"] + counts["sitemaps_queued"] >= \
                self.options.max_sitemaps:
            counts["sitemaps_skipped"] += 1
        else:
            self.frontier.add(key, url, origin, depth, kind=kind, parent=parent)
            counts["sitemaps_queued" if kind == "sitemap" else "queued_urls"] += 1

    # ------------------------------------------------------------------ politeness

    def _delay(self, origin: str) -> float:
        return self._delays.get(origin, self.options.delay)

    @asynccontextmanager
    async def _slot(self, origin: str):
        """Hold one of the origin's request slots, started no sooner than its delay allows."""
        sem = self._host_sems.setdefault(origin, asyncio.Semaphore(self.options.per_host_concurrency))
        async with sem:
            while True:
                wait = self.host_next.get(origin, 0.0) - time.time()
                if wait <= 0:
                    break
                await asyncio.sleep(min(wait, 1.0))
            now = time.time()
            self.host_next[origin] = now + self._delay(origin)
            self.last_request[origin] = now
            yield

    def _postpone(self, origin: str, seconds: float) -> None:
        self.host_next[origin] = max(self.host_next.get(origin, 0.0), time.time() + seconds)

    # ------------------------------------------------------------------ robots.txt

    async def _robots(self, origin: str) -> Robots:
        robots = self.robots.get(origin)
        if robots is not None:
            return robots
        lock = self._robots_locks.setdefault(origin, asyncio.Lock())
        async with lock:
            if origin in self.robots:
                return self.robots[origin]
            stored = self.frontier.robots(origin)
            if stored is not None:
                robots = Robots.from_fetch(self.agent, stored[0], stored[1])
            else:
                robots = await self._fetch_robots(origin)
            self.robots[origin] = robots
            delay = robots.delay()
            if delay is not None and delay > self.options.delay:
                self._delays[origin] = min(delay, MAX_CRAWL_DELAY)
                if origin in self.last_request:  # the robots.txt request itself counts
                    self.host_next[origin] = max(self.host_next.get(origin, 0.0),
                                                 self.last_request[origin] + self._delays[origin])
            return robots

    async def _fetch_robots(self, origin: str) -> Robots:
        out = Outcome()
        status, body, reason = None, b"", ""
        for attempt in range(1, self.options.retries + 2):
            url, chain = origin + "/robots.txt", []
            retry_wait = None
            try:
                while True:
                    chain.append(url)
                    async with self._slot(U.origin(url)):
                        response = await self.fetcher.get(url, max_bytes=MAX_ROBOTS_BYTES)
                    out.entries.append(Entry(_response_log(_log(url, "robots", attempt), response), response))
                    self._count_response(out, response)
                    status, body, reason = response.status, response.content, ""
                    if response.is_redirect:
                        target = U.normalize(response.header("location") or "", url)
                        if (target is None or target in chain or len(chain) > MAX_ROBOTS_REDIRECTS
                                or not U.in_domains(U.host_of(target), self.domains)):
                            reason = "robots.txt redirects elsewhere or too often: taken as unavailable"
                            break
                        url = target
                        continue
                    break
                if status in RETRY_STATUSES:
                    retry_wait = retry_after(response.header("retry-after")) or 0.0
            except FetchError as exc:
                out.entries.append(Entry(_log(url, "robots", attempt, error=exc.kind, message=exc.message,
                                              elapsed=round(exc.elapsed, 4))))
                out.counts["requests"] += 1
                status, body, reason = None, b"", exc.kind
                retry_wait = 0.0 if exc.kind in RETRY_ERRORS else None
            if retry_wait is None or attempt > self.options.retries:
                break
            wait = max(retry_wait, self.options.backoff * 2 ** (attempt - 1))
            if wait > self.options.max_retry_wait:
                break
            out.counts["retries"] += 1
            self._postpone(origin, wait)
        robots = Robots.from_fetch(self.agent, status, body, reason)
        out.counts["robots_files"] += 1
        if robots.mode == DISALLOW_ALL:
            out.counts["robots_unreachable"] += 1
        self._apply_robots(origin, robots, out)
        return robots

    def _apply_robots(self, origin: str, robots: Robots, out: Outcome) -> None:
        self._write_entries(out)
        self._flush()
        with self.frontier.transaction():
            if robots.cacheable:
                self.frontier.set_robots(origin, robots.status, robots.body)
            if self.options.sitemaps and self._is_seed_origin(origin):
                maps = robots.sitemaps() if robots.mode == RULES else []
                for url in maps or [origin + "/sitemap.xml"]:
                    self._enqueue(url, 0, "sitemap", origin + "/robots.txt", out.counts)
            self._commit_common(out)

    def _is_seed_origin(self, origin: str) -> bool:
        return any(U.origin(U.normalize(s) or s) == origin for s in self.options.seeds)

    # ------------------------------------------------------------------ one URL

    def _want_page_body(self, status: int, headers: list[tuple[str, str]]) -> bool:
        if not 200 <= status < 300:
            return True
        content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
        return not content_type or media_type(content_type) in HTML_TYPES + PLAIN_TYPES

    def _count_response(self, out: Outcome, response: Response) -> None:
        out.counts["requests"] += 1
        out.counts["bytes"] += len(response.body)

    async def _process(self, row: dict[str, Any]) -> None:
        out = Outcome()
        try:
            if row["kind"] == "sitemap":
                await self._sitemap(row, out)
            else:
                await self._page(row, out)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must not loop on the same URL: it is failed and logged
            if out.content is not None:
                self._pending_contents.pop(out.content[0], None)
            for key, _, _ in out.claims:
                self._busy_keys.discard(key)
            out = Outcome(state="failed", outcome="internal_error", attempts=row["attempts"] + 1)
            out.entries.append(Entry(_log(row["url"], row["kind"], row["attempts"] + 1, error="internal_error",
                                          message=f"{type(exc).__name__}: {exc}")))
            out.counts["error:internal_error"] += 1
            self.log(f"internal error on {row['url']}: {type(exc).__name__}: {exc}")
        self._apply(row, out)

    def _failure(self, out: Outcome, row: dict[str, Any], attempt: int, kind: str,
                 response: Response | None) -> Outcome:
        """A timeout, network error or error status: retried later, or the URL's final outcome."""
        out.attempts = attempt
        out.status = response.status if response is not None else None
        retryable = kind in RETRY_ERRORS or (response is not None and response.status in RETRY_STATUSES)
        if retryable and attempt <= self.options.retries:
            wait = self.options.backoff * 2 ** (attempt - 1)
            asked = retry_after(response.header("retry-after")) if response is not None else None
            if asked is not None and asked > self.options.max_retry_wait:
                out.entries[-1].log["note"] = f"Retry-After {asked:g} s is over max_retry_wait: given up"
            else:
                if asked is not None:
                    wait = max(wait, asked)
                    self._postpone(U.origin(out.entries[-1].log["url"]), asked)
                out.state, out.outcome, out.retry_at = "queued", "retry", time.time() + wait
                out.counts["retries"] += 1
                return out
        out.state, out.outcome = "failed", kind
        if row["kind"] == "sitemap":  # e.g. no /sitemap.xml: not an error of the crawl's pages
            out.counts["sitemap_errors"] += 1
            return out
        out.counts[f"error:{kind}"] += 1
        if response is not None:
            out.counts["page_fetches"] += 1
        return out

    async def _request_chain(self, row: dict[str, Any], out: Outcome, attempt: int
                             ) -> tuple[Response | None, str | None, str]:
        """Request the row's URL, following redirects; returns ``(final response, error kind, final url)``.
        A chain stopped before its end gives ``(None, outcome, url)`` with ``out.state`` set."""
        kind = row["kind"]
        url = row["url"]
        chain, chain_keys = [url], {row["key"]}
        while True:
            origin = U.origin(url)
            robots = await self._robots(origin)
            if not robots.allowed(url):
                out.entries.append(Entry(_log(url, kind, attempt, robots="disallowed")))
                out.state, out.outcome = "robots", "robots_disallowed"
                out.counts["robots_disallowed"] += 1
                return None, None, url
            try:
                async with self._slot(origin):
                    want = self._want_page_body if kind == "page" else None
                    max_bytes = self.options.max_page_bytes if kind == "page" else 50 * 1024 * 1024
                    response = await self.fetcher.get(url, max_bytes=max_bytes, want_body=want)
            except FetchError as exc:
                out.entries.append(Entry(_log(url, kind, attempt, robots="allowed", error=exc.kind,
                                              message=exc.message, elapsed=round(exc.elapsed, 4))))
                out.counts["requests"] += 1
                return None, exc.kind, url
            entry = Entry(_response_log(_log(url, kind, attempt, robots="allowed"), response), response)
            out.entries.append(entry)
            self._count_response(out, response)
            if not response.is_redirect:
                entry.final = True
                return response, None, url
            out.counts["redirects"] += 1
            target = U.normalize(response.header("location") or "", url)
            stop = None
            if target is None:
                stop = "bad_redirect"
            elif target in chain:
                stop = "redirect_loop"
            elif len(chain) > self.options.max_redirects:
                stop = "too_many_redirects"
            if stop is not None:
                out.state, out.outcome, out.status = "failed", stop, response.status
                out.counts[f"error:{stop}"] += 1
                return None, None, url
            key = U.url_key(target)
            if not U.in_domains(U.host_of(target), self.domains):
                out.state, out.outcome, out.status = "done", "offsite", response.status
                out.links.append((target, row["depth"], kind))  # recorded as an offsite URL, never fetched
                return None, None, url
            if kind == "page" and (not U.path_allowed(target, self.options.allow_paths, self.options.deny_paths)
                                   or U.has_extension(target, self.options.skip_extensions)):
                out.state, out.outcome, out.status = "done", "filtered", response.status
                out.counts["filtered"] += 1
                return None, None, url
            if key not in chain_keys:
                state = self.frontier.state(key)
                if key in self._busy_keys or (state is not None and state != "queued"):
                    out.state, out.outcome, out.status = "done", "duplicate_url", response.status
                    out.counts["duplicate_url"] += 1
                    return None, None, url
                out.claims.append((key, target, state is None))
                self._busy_keys.add(key)
                chain_keys.add(key)
            chain.append(target)
            url = target

    async def _page(self, row: dict[str, Any], out: Outcome) -> Outcome:
        attempt = out.attempts = row["attempts"] + 1
        response, error, url = await self._request_chain(row, out, attempt)
        if response is None:
            return self._failure(out, row, attempt, error, None) if error else out
        status = out.status = response.status
        if status in RETRY_STATUSES or not 200 <= status < 300:
            return self._failure(out, row, attempt, f"http_{status}", response)
        out.counts["page_fetches"] += 1
        out.counts["fetched"] += 1
        final = out.entries[-1]
        kind = None if response.body_skipped else sniff_kind(response.content_type, response.content)
        if kind is None:
            out.outcome = "non_html"
            out.counts["non_html"] += 1
            return out
        if response.truncated:
            out.outcome = "too_large"
            out.counts["too_large"] += 1
            return out
        digest = hashlib.sha1(response.content).hexdigest()
        original = self.frontier.content(digest) or self._pending_contents.get(digest)
        if original is not None:
            final.revisit_of = original
            out.outcome = "duplicate_content"
            out.counts["duplicate_content"] += 1
            return out
        date = iso_date(response.started)
        self._pending_contents[digest] = {"url": url, "file": None, "offset": None, "record_id": None, "date": date}
        out.content = (digest, url, date)
        try:
            page = await asyncio.to_thread(extract_page, response.content, response.content_type, url,
                                           response.header("x-robots-tag"))
        except Exception as exc:  # noqa: BLE001 - a page trafilatura or lxml cannot read is counted, not fatal
            out.outcome = "extract_error"
            out.counts["error:extract_error"] += 1
            final.log["error"], final.log["message"] = "extract_error", f"{type(exc).__name__}: {exc}"
            return out
        if not page["nofollow"]:
            out.links += [(link, row["depth"] + 1, "page") for link in page["links"]]
        if page["noindex"]:
            out.outcome = "noindex"
        elif len(page["text"]) < self.options.min_text_chars:
            out.outcome = "short_text"
        elif self.options.languages is not None and page["language"] not in self.options.languages:
            out.outcome = "language_filtered"
        else:
            out.outcome = "saved"
            out.page = {
                "url": row["url"], "final_url": url, "fetched_at": date, "status": status,
                "content_type": response.content_type, "encoding": page["encoding"],
                "encoding_source": page["encoding_source"], "language": page["language"],
                "language_score": page["language_score"], "licence": page["licence"], "licences": page["licences"],
                "title": page["title"], "canonical": page["canonical"], "depth": row["depth"],
                "parent": row["parent"], "sha1": digest, "chars": len(page["text"]), "text": page["text"],
            }
        out.counts[out.outcome] += 1
        return out

    async def _sitemap(self, row: dict[str, Any], out: Outcome) -> Outcome:
        attempt = out.attempts = row["attempts"] + 1
        response, error, url = await self._request_chain(row, out, attempt)
        if response is None:
            return self._failure(out, row, attempt, error, None) if error else out
        out.status = response.status
        if not 200 <= response.status < 300:
            return self._failure(out, row, attempt, f"http_{response.status}", response)
        pages, maps = parse_sitemap(response.content)
        out.outcome = "sitemap"
        out.counts["sitemaps"] += 1
        out.counts["sitemap_urls"] += len(pages)
        if self.options.max_depth >= 1:
            out.links += [(u, 1, "page") for u in pages]
        out.links += [(u, 0, "sitemap") for u in maps]
        return out

    # ------------------------------------------------------------------ committing

    def _write_entries(self, out: Outcome) -> Location | None:
        """Write the WARC records of the outcome's responses and its fetch-log lines; returns the final
        response's location."""
        final_location = None
        for entry in out.entries:
            r = entry.response
            if r is not None and not r.body_skipped:
                if entry.revisit_of is not None:
                    original = entry.revisit_of
                    location = self.warc.write_revisit(
                        r.url, request_headers=r.request_headers, status=r.status, reason=r.reason,
                        headers=r.headers, body=r.body, fetched_at=r.started, http_version=r.http_version,
                        original=Location(original.get("file") or "", original.get("offset") or 0,
                                          original.get("record_id") or ""),
                        original_url=original["url"], original_date=original["date"])
                    entry.log["duplicate_of"] = original["url"]
                else:
                    location = self.warc.write_exchange(
                        r.url, request_headers=r.request_headers, status=r.status, reason=r.reason, headers=r.headers,
                        body=r.body, fetched_at=r.started, ip=r.ip, truncated=r.truncated,
                        http_version=r.http_version)
                entry.log["warc_file"], entry.log["warc_offset"] = location.file, location.offset
                if entry.final:
                    final_location = location
            self.fetches.write((json.dumps(entry.log, ensure_ascii=False) + "\n").encode("utf-8"))
        return final_location

    def _flush(self) -> None:
        self.warc.flush()
        self.pages.flush()
        self.fetches.flush()

    def _commit_common(self, out: Outcome) -> None:
        self.frontier.add_counts(out.counts)
        self.counts.update(out.counts)
        self.frontier.set_sizes(self._sizes())
        self.frontier.set_last_requests(dict(self.last_request))

    def _apply(self, row: dict[str, Any], out: Outcome) -> None:
        """Write the outcome's records, then commit its state (never awaits: no other task runs meanwhile)."""
        if out.outcome:
            for entry in out.entries[-1:]:
                entry.log["outcome"] = out.outcome
        location = self._write_entries(out)
        if out.page is not None:
            out.page["warc_file"] = location.file if location else None
            out.page["warc_offset"] = location.offset if location else None
            self.pages.write((json.dumps(out.page, ensure_ascii=False) + "\n").encode("utf-8"))
        self._flush()
        with self.frontier.transaction():
            for link, depth, kind in out.links:
                self._enqueue(link, depth, kind, row["url"], out.counts)
            for key, url, new in out.claims if out.state != "queued" else []:  # a retry redoes the chain
                self.frontier.add_alias(url, key)
                if new:
                    self.frontier.add(key, url, U.origin(url), row["depth"], kind=row["kind"], state="done",
                                      parent=row["url"], outcome="redirect_target")
                else:
                    self.frontier.finish(key, "done", "redirect_target")
            if out.state == "queued":
                self.frontier.requeue(row["key"], out.retry_at or time.time(), out.attempts)
            else:
                self.frontier.finish(row["key"], out.state, out.outcome, out.status, out.attempts)
            if out.content is not None and out.outcome != "extract_error":
                digest, url, date = out.content
                self.frontier.add_content(digest, url, location.file if location else None,
                                          location.offset if location else None,
                                          location.record_id if location else None, date)
            self._commit_common(out)
        if out.content is not None:
            self._pending_contents.pop(out.content[0], None)
        for key, _, _ in out.claims:
            self._busy_keys.discard(key)

    # ------------------------------------------------------------------ the loop

    def _limit(self, in_flight_pages: int) -> str | None:
        if self.counts["page_fetches"] + in_flight_pages >= self.options.max_pages:
            return "max_pages"
        if self.counts["bytes"] >= self.options.max_bytes:
            return "max_bytes"
        return None

    def _pick(self, in_flight: dict[asyncio.Task, dict[str, Any]]) -> dict[str, Any] | None:
        now = time.time()
        busy = {o for o, n in self._launched.items() if n >= self.options.per_host_concurrency}
        busy |= {o for o, t in self.host_next.items() if t > now + _TICK}
        keys = {row["key"] for row in in_flight.values()} | self._busy_keys
        return self.frontier.next_ready(now, busy, keys)

    async def _loop(self) -> None:
        in_flight: dict[asyncio.Task, dict[str, Any]] = {}
        last_progress = time.monotonic()
        try:
            while True:
                pages_in_flight = sum(1 for r in in_flight.values() if r["kind"] == "page")
                limit = self._limit(pages_in_flight)
                while self._stop is None and limit is None and len(in_flight) < self.options.concurrency:
                    row = self._pick(in_flight)
                    if row is None:
                        break
                    task = asyncio.create_task(self._process(row))
                    in_flight[task] = row
                    self._launched[row["origin"]] += 1
                    if row["kind"] == "page":
                        pages_in_flight += 1
                        limit = self._limit(pages_in_flight)
                if not in_flight:
                    if self._stop is not None:
                        self.stopped_by = self._stop
                        break
                    if limit is not None:
                        self.stopped_by = limit
                        break
                    if not self.frontier.has_queued():
                        self.stopped_by = "done"
                        break
                    await asyncio.sleep(2 * _TICK)
                    continue
                done, _ = await asyncio.wait(list(in_flight), timeout=0.25, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    row = in_flight.pop(task)
                    self._launched[row["origin"]] -= 1
                    task.result()
                if time.monotonic() - last_progress >= self.progress_every:
                    last_progress = time.monotonic()
                    self.log(self.progress())
                    self._write_summary()
        finally:
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        handled = []
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.add_signal_handler(sig, self.request_stop, "interrupted")
                    handled.append(sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    # an event loop without signal support (Windows' proactor): Ctrl-C still raises
                    # KeyboardInterrupt, and the frontier's committed state makes the crawl resumable
                    pass
        try:
            async with Fetcher(self.agent, timeout=self.options.timeout, concurrency=self.options.concurrency,
                               trust_env=self.options.trust_env) as fetcher:
                self.fetcher = fetcher
                self._main_task = asyncio.current_task()
                await self._loop()
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    def request_stop(self, reason: str = "interrupted") -> None:
        """Stop at once: fetches in flight are dropped (they stay queued) and the summary is written."""
        if self._stop is None:
            self._stop = reason
            task = getattr(self, "_main_task", None)
            if task is not None and not task.done():
                task.cancel()

    def run(self) -> dict[str, Any]:
        """Run (or resume) the crawl to its end, a limit or a stop; returns the summary (also in summary.json)."""
        self._open()
        self.log(f"crawling into {self.out} as {self.agent!r}: {self.frontier.queued()} URL(s) queued")
        try:
            try:
                asyncio.run(self._main())
            except asyncio.CancelledError:
                self.stopped_by = self._stop or "interrupted"
            except KeyboardInterrupt:
                self.stopped_by = "interrupted"
            return self._write_summary()
        finally:
            self._close()

    # ------------------------------------------------------------------ reporting

    def progress(self) -> str:
        c = self.counts
        errors = sum(v for k, v in c.items() if k.startswith("error:"))
        return (f"{c['fetched']} fetched, {c['saved']} saved, {self.frontier.queued()} queued, {errors} errors, "
                f"{c['retries']} retries, {c['bytes'] / 1e6:.1f} MB")

    def summary(self) -> dict[str, Any]:
        c = Counter(self.frontier.counters())
        queued = self.frontier.queued()
        errors = {k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("error:")}
        keys = ("fetched", "saved", "robots_disallowed", "offsite", "duplicate_url", "duplicate_content", "too_large",
                "non_html", "short_text", "language_filtered", "noindex", "filtered", "too_deep", "retries",
                "redirects", "requests", "bytes", "page_fetches", "robots_files", "robots_unreachable", "sitemaps",
                "sitemap_urls", "sitemap_errors", "invalid_links", "runs")
        summary: dict[str, Any] = {k: int(c.get(k, 0)) for k in keys}
        summary["pages_written"] = summary.pop("saved")
        summary["errors"] = errors
        summary["error_total"] = sum(errors.values())
        summary["queued"] = queued
        summary["states"] = self.frontier.states()
        summary["stopped_by"] = self.stopped_by
        summary["complete"] = queued == 0
        summary["user_agent"] = self.agent
        summary["updated"] = iso_date(time.time())
        return summary

    def _write_summary(self) -> dict[str, Any]:
        summary = self.summary()
        tmp = self.out / (SUMMARY + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.out / SUMMARY)
        return summary


def run_crawl(options: CrawlOptions | None, out: str | Path, *, fresh: bool = False,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Start or resume the crawl in ``out`` (see :func:`prepare_folder`) and run it; returns the summary."""
    options, _ = prepare_folder(Path(out), options, fresh=fresh)
    return Crawler(options, out, log=log).run()
