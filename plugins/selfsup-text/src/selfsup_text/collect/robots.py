"""robots.txt rules of one origin, by RFC 9309 (the Robots Exclusion Protocol).

The file is fetched once per origin (``scheme://host:port``) through the crawl's own client and
politeness, redirects followed up to five hops within the crawl's domains, and cached in the
crawl's frontier (a resumed crawl does not fetch it again). What its fetch gives decides the rules:

* 2xx: the file's rules for our user agent (the group naming the User-Agent's product token,
  ``selfsup-collect``, else ``*``), with the longest matching rule winning, ``Allow`` on ties, and
  ``*``/``$`` wildcards; ``Crawl-delay`` and ``Request-rate`` slow the host down (never speed it up);
  the first 500 KiB are parsed (RFC 9309 2.5);
* 4xx but 429 ("unavailable"): everything may be fetched;
* 429, 5xx, a network error or a timeout after the retries ("unreachable"): nothing may be fetched
  from the origin (RFC 9309 2.3.1.3-4). Such a result is not stored: a later run asks again;
* more redirects than five, or a redirect outside the crawl's domains: taken as unavailable.

Parsing uses Protego (Scrapy's parser: RFC 9309's longest-match precedence and wildcards, which
the standard library's :mod:`urllib.robotparser` lacks: it applies the first matching line in file
order and no wildcards); when Protego is not installed, :mod:`urllib.robotparser` is the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Bytes of a robots.txt that are parsed (RFC 9309 2.5 asks for at least 500 KiB).
MAX_ROBOTS_BYTES = 500 * 1024
#: Redirect hops followed to reach a robots.txt (RFC 9309 2.3.1.2: at least five).
MAX_ROBOTS_REDIRECTS = 5

ALLOW_ALL, DISALLOW_ALL, RULES = "allow_all", "disallow_all", "rules"


def product_token(agent: str) -> str:
    """The name robots.txt groups are matched against: the User-Agent's first word before '/'."""
    return agent.strip().split()[0].split("/")[0] if agent.strip() else "*"


@dataclass
class Robots:
    """The robots.txt decision of one origin for one user agent."""

    mode: str  # ALLOW_ALL, DISALLOW_ALL or RULES
    agent: str
    status: int | None = None
    reason: str = ""
    body: bytes = b""
    _parser: object = field(default=None, repr=False)
    _protego: bool = field(default=False, repr=False)

    @classmethod
    def from_fetch(cls, agent: str, status: int | None, body: bytes = b"", reason: str = "") -> "Robots":
        """The rules a robots.txt fetch gives (see the module docstring): ``status`` None for a network
        error or timeout (``reason`` says which)."""
        if status is None or status == 429 or status >= 500:
            why = reason or f"HTTP {status}"
            return cls(DISALLOW_ALL, agent, status, f"robots.txt unreachable ({why}): nothing is fetched")
        if 300 <= status < 400:
            return cls(ALLOW_ALL, agent, status, reason or "robots.txt redirects too often: taken as unavailable")
        if status >= 400:
            return cls(ALLOW_ALL, agent, status, f"no robots.txt (HTTP {status}): everything is allowed")
        robots = cls(RULES, agent, status, "robots.txt rules", body[:MAX_ROBOTS_BYTES])
        robots._parse()
        return robots

    @property
    def cacheable(self) -> bool:
        """Whether to keep this decision for the rest of the crawl (unreachable ones are asked again)."""
        return self.mode != DISALLOW_ALL

    def _parse(self) -> None:
        text = self.body.decode("utf-8", errors="replace").lstrip("\ufeff")
        try:
            from protego import Protego
        except ImportError:  # pragma: no cover - protego is in the `web` extra
            from urllib.robotparser import RobotFileParser

            parser = RobotFileParser()
            parser.parse(text.splitlines())
            self._parser, self._protego = parser, False
        else:
            self._parser, self._protego = Protego.parse(text), True

    def allowed(self, url: str) -> bool:
        if self.mode == ALLOW_ALL:
            return True
        if self.mode == DISALLOW_ALL:
            return False
        from urllib.parse import urlsplit

        if urlsplit(url).path == "/robots.txt":
            return True
        if self._protego:
            return bool(self._parser.can_fetch(url, self.agent))
        return bool(self._parser.can_fetch(product_token(self.agent), url))

    def delay(self) -> float | None:
        """Seconds between requests the file asks for (Crawl-delay, or Request-rate's seconds/requests)."""
        if self.mode != RULES:
            return None
        agent = self.agent if self._protego else product_token(self.agent)
        delays = []
        try:
            value = self._parser.crawl_delay(agent)
            if value is not None:
                delays.append(float(value))
            rate = self._parser.request_rate(agent)
            if rate is not None and rate.requests:
                delays.append(float(rate.seconds) / float(rate.requests))
        except (TypeError, ValueError, ZeroDivisionError):
            pass
        return max(delays) if delays else None

    def sitemaps(self) -> list[str]:
        if self.mode != RULES:
            return []
        found = self._parser.sitemaps if self._protego else (self._parser.site_maps() or [])
        return [str(s) for s in found]
