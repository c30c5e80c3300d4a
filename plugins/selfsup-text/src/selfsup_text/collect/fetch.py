"""One HTTP GET at a time, on httpx: streamed under a byte cap, no automatic redirects, errors by kind.

:class:`Fetcher` wraps one ``httpx.AsyncClient`` (connection pooling, HTTP/1.1, the crawl's
User-Agent, ``Accept-Encoding: gzip, deflate``; proxies from the environment only with
``trust_env``). :meth:`Fetcher.get` makes one request and never follows a redirect: the crawl
follows them itself, so that each hop is checked against the domains, robots.txt and the chain so
far (loops). The body is streamed and cut at ``max_bytes`` (a ``Content-Length`` already over it
stops before the body); a response whose headers say it is not wanted (``want_body`` false: a type
the crawl does not extract) is closed before its body. Every request has an overall deadline of
``timeout`` seconds (a server that trickles bytes cannot hold a worker). The body is kept as
received (for the WARC) and decoded (``gzip``/``deflate``, capped at ``max_bytes``) for extraction.

Failures raise :class:`FetchError` with a ``kind``: ``timeout``, ``connect`` (refused, DNS),
``network`` (reset, protocol error), ``invalid_url``, ``decode`` (a broken ``Content-Encoding``).
:func:`retry_after` reads a ``Retry-After`` header; :data:`RETRY_STATUSES` are the statuses worth
another try.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Callable

#: Statuses retried with backoff (429 Too Many Requests and transient server errors).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504, 507, 509, 520, 521, 522, 523, 524})
#: Error kinds retried with backoff.
RETRY_ERRORS = frozenset({"timeout", "connect", "network"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
ACCEPT = "text/html,application/xhtml+xml,text/plain;q=0.9,application/xml;q=0.8,*/*;q=0.1"


class FetchError(Exception):
    """A request that gave no HTTP response (``kind`` says why), after ``elapsed`` seconds."""

    def __init__(self, kind: str, message: str, elapsed: float = 0.0):
        super().__init__(f"{kind}: {message}")
        self.kind, self.message, self.elapsed = kind, message, elapsed


@dataclass
class Response:
    """One HTTP response: ``body`` as received (content-encoded), ``content`` decoded."""

    url: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    content: bytes
    truncated: bool
    started: float
    elapsed: float
    request_headers: list[tuple[str, str]] = field(default_factory=list)
    http_version: str = "HTTP/1.1"
    ip: str | None = None
    body_skipped: bool = False

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    @property
    def content_type(self) -> str | None:
        return self.header("content-type")

    @property
    def is_redirect(self) -> bool:
        return self.status in REDIRECT_STATUSES and bool(self.header("location"))


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def decode_content(body: bytes, encoding: str | None, limit: int) -> tuple[bytes, bool]:
    """``body`` with its ``Content-Encoding`` (gzip, deflate, identity; several, comma-separated) removed,
    at most ``limit`` bytes; returns ``(content, cut)``. Raises ValueError for another coding or a broken
    stream."""
    codings = [c.strip().lower() for c in (encoding or "").split(",") if c.strip()]
    data, cut = body, False
    for coding in reversed(codings):
        if coding in ("identity", ""):
            continue
        if coding in ("gzip", "x-gzip"):
            decoders = [zlib.decompressobj(16 + zlib.MAX_WBITS)]
        elif coding == "deflate":
            decoders = [zlib.decompressobj(zlib.MAX_WBITS), zlib.decompressobj(-zlib.MAX_WBITS)]
        else:
            raise ValueError(f"unsupported Content-Encoding {coding!r}")
        for i, decoder in enumerate(decoders):
            try:
                out = decoder.decompress(data, limit)
                cut = cut or bool(decoder.unconsumed_tail)
                data = out
                break
            except zlib.error as exc:
                if i == len(decoders) - 1:
                    raise ValueError(f"broken {coding} stream: {exc}") from None
    if len(data) > limit:
        data, cut = data[:limit], True
    return data, cut


class Fetcher:
    """The crawl's HTTP client (see the module docstring). Use as ``async with Fetcher(...) as f``."""

    def __init__(self, agent: str, *, timeout: float, concurrency: int, trust_env: bool = False):
        import httpx

        self.timeout = float(timeout)
        self.client = httpx.AsyncClient(
            follow_redirects=False, timeout=httpx.Timeout(timeout), trust_env=trust_env, http2=False,
            headers={"User-Agent": agent, "Accept": ACCEPT, "Accept-Encoding": "gzip, deflate"},
            limits=httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency),
        )

    async def __aenter__(self) -> "Fetcher":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.client.aclose()

    async def get(self, url: str, *, max_bytes: int,
                  want_body: Callable[[int, list[tuple[str, str]]], bool] | None = None) -> Response:
        started, clock = time.time(), time.monotonic()
        try:
            return await asyncio.wait_for(self._get(url, max_bytes, want_body, started, clock), self.timeout)
        except asyncio.TimeoutError:
            raise FetchError("timeout", f"no complete response within {self.timeout:g} s",
                             time.monotonic() - clock) from None

    async def _get(self, url: str, max_bytes: int, want_body, started: float, clock: float) -> Response:
        import httpx

        try:
            async with self.client.stream("GET", url) as r:
                headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in r.headers.raw]
                request_headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in r.request.headers.raw]
                ip = _peer_ip(r)
                body, truncated, skipped = b"", False, False
                length = _int(r.headers.get("content-length"))
                if want_body is not None and not want_body(r.status_code, headers):
                    skipped = True
                elif length is not None and length > max_bytes:
                    truncated = True
                else:
                    chunks, size = [], 0
                    async for chunk in r.aiter_raw():
                        if size + len(chunk) > max_bytes:
                            chunks.append(chunk[: max_bytes - size])
                            truncated = True
                            break
                        chunks.append(chunk)
                        size += len(chunk)
                    body = b"".join(chunks)
                try:
                    content, cut = decode_content(body, r.headers.get("content-encoding"), max_bytes)
                except ValueError as exc:
                    if not truncated:
                        raise FetchError("decode", str(exc), time.monotonic() - clock) from None
                    content, cut = b"", True  # a cut compressed stream: nothing usable, already too large
                return Response(url=url, status=r.status_code, reason=r.reason_phrase or "", headers=headers,
                                body=body, content=content, truncated=truncated or cut, started=started,
                                elapsed=time.monotonic() - clock, request_headers=request_headers,
                                http_version=r.http_version or "HTTP/1.1", ip=ip, body_skipped=skipped)
        except FetchError:
            raise
        except httpx.TimeoutException as exc:
            raise FetchError("timeout", f"{type(exc).__name__}: {exc}", time.monotonic() - clock) from None
        except httpx.ConnectError as exc:
            raise FetchError("connect", str(exc) or type(exc).__name__, time.monotonic() - clock) from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise FetchError("invalid_url", str(exc), time.monotonic() - clock) from None
        except (httpx.HTTPError, OSError) as exc:
            raise FetchError("network", f"{type(exc).__name__}: {exc}", time.monotonic() - clock) from None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _peer_ip(response) -> str | None:
    try:
        stream = response.extensions.get("network_stream")
        address = stream.get_extra_info("server_addr") if stream is not None else None
        return str(address[0]) if address else None
    except Exception:  # noqa: BLE001 - the transport does not say: the WARC just has no WARC-IP-Address
        return None
