"""The settings of one crawl (:class:`CrawlOptions`), validated with pydantic.

A crawl folder keeps the options it was started with (``crawl.json``); running ``selfsup collect``
again on the folder resumes it. Limits and pacing (:data:`CHANGEABLE`) may be changed on resume,
e.g. a larger ``max_pages`` to go on; everything that decides which URLs belong to the crawl or
which pages are kept (seeds, domains, paths, depth, languages, ...) may not (start a new folder, or
``--fresh``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from selfsup.options import Options

#: Options that may differ between the run that started a crawl folder and a run that resumes it.
CHANGEABLE = frozenset({
    "max_pages", "max_bytes", "delay", "concurrency", "per_host_concurrency", "timeout", "retries", "backoff",
    "max_retry_wait", "trust_env", "warc_max_bytes", "contact", "user_agent",
})

#: Links whose path ends with one of these are not fetched (binary or media files, not pages).
DEFAULT_SKIP_EXTENSIONS = (
    ".7z", ".apk", ".avi", ".bin", ".bmp", ".bz2", ".css", ".deb", ".dmg", ".doc", ".docx", ".eot", ".epub",
    ".exe", ".flac", ".flv", ".gif", ".gz", ".ico", ".iso", ".jar", ".jpeg", ".jpg", ".js", ".m4a", ".m4v",
    ".mkv", ".mov", ".mp3", ".mp4", ".mpeg", ".mpg", ".msi", ".odp", ".ods", ".odt", ".ogg", ".otf", ".pdf",
    ".png", ".ppt", ".pptx", ".ps", ".rar", ".rpm", ".svg", ".tar", ".tgz", ".tif", ".tiff", ".ttf", ".wav",
    ".webm", ".webp", ".wmv", ".woff", ".woff2", ".xls", ".xlsx", ".xz", ".zip", ".zst",
)
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("selfsup-text")
    except Exception:  # noqa: BLE001 - not installed as a distribution (a source checkout)
        return "0"


class CrawlOptions(Options):
    """One crawl: where it starts, what belongs to it, how fast it may go and what it keeps."""

    seeds: list[str] = Field(min_length=1, description="Start URLs (http or https).")
    allowed_domains: list[str] | None = Field(
        None, description="Hosts the crawl may fetch from; a host also allows its subdomains. Default: the seeds' "
        "hosts. Links elsewhere are counted as 'offsite' and never fetched.")
    allow_paths: list[str] = Field(
        default_factory=list, description="If given, only URLs whose path starts with one of these prefixes (or "
        "matches one 're:REGEX', searched in path?query) are fetched. Seeds are exempt.")
    deny_paths: list[str] = Field(
        default_factory=list, description="URLs whose path starts with one of these prefixes (or matches one "
        "'re:REGEX') are not fetched.")
    max_pages: int = Field(1000, ge=1, description="Stop after this many page fetches (robots.txt and sitemaps "
                           "not counted).")
    max_bytes: int = Field(1_000_000_000, ge=1, description="Stop after this many bytes downloaded in all.")
    max_page_bytes: int = Field(5_000_000, ge=1024, description="A response longer than this is cut there "
                                "(WARC-Truncated), counted 'too_large' and not extracted.")
    max_depth: int = Field(5, ge=0, description="Links further than this many hops from a seed are not followed.")
    delay: float = Field(1.0, ge=0, description="Seconds between two requests to one host; a larger robots.txt "
                         "Crawl-delay (or Request-rate) wins.")
    concurrency: int = Field(8, ge=1, le=256, description="Requests in flight at once, all hosts together.")
    per_host_concurrency: int = Field(1, ge=1, le=16, description="Requests in flight at once to one host.")
    timeout: float = Field(30.0, gt=0, description="Seconds a request may take in all (connect to last byte).")
    retries: int = Field(3, ge=0, le=10, description="Retries of a request after a timeout, a connection error, "
                         "429 or 5xx.")
    backoff: float = Field(1.0, ge=0, description="Retry k waits backoff * 2**(k-1) seconds (or Retry-After).")
    max_retry_wait: float = Field(300.0, ge=0, description="A Retry-After longer than this many seconds gives "
                                  "the URL up (counted as its HTTP error).")
    max_redirects: int = Field(10, ge=0, le=30, description="Redirect hops followed from one URL.")
    user_agent: str | None = Field(None, description="The User-Agent; default 'selfsup-collect/<version> "
                                   "(+CONTACT)'. Its first word is the name matched in robots.txt.")
    contact: str | None = Field(None, description="A URL or e-mail address where site owners can reach you, put "
                                "in the default User-Agent.")
    languages: list[str] | None = Field(None, description="Keep in pages.jsonl only pages in these languages "
                                        "(ISO 639-1 codes, py3langid); all pages are in the WARC all the same.")
    min_text_chars: int = Field(200, ge=0, description="Pages whose main text is shorter are not written to "
                                "pages.jsonl (counted 'short_text').")
    sitemaps: bool = Field(True, description="Read the sitemaps robots.txt names (else /sitemap.xml) of the seeds' "
                           "hosts and queue their URLs.")
    max_sitemaps: int = Field(50, ge=0, description="Sitemap files (indexes included) fetched in all.")
    skip_extensions: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SKIP_EXTENSIONS),
        description="Links whose path ends with one of these suffixes are not fetched (media, archives).")
    warc_max_bytes: int = Field(1_000_000_000, ge=1024, description="A new WARC file is started once the current "
                                "one is this large.")
    trust_env: bool = Field(False, description="Use the proxy settings of the environment (HTTP_PROXY, ...).")

    @field_validator("seeds")
    @classmethod
    def _http_urls(cls, seeds: list[str]) -> list[str]:
        for seed in seeds:
            parts = urlsplit(seed.strip())
            if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                raise ValueError(f"seed {seed!r} is not an http(s) URL with a host")
        return [s.strip() for s in seeds]

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, domains: list[str] | None) -> list[str] | None:
        if domains is None:
            return None
        out = [d.strip().lower().lstrip(".") for d in domains]
        if not all(out) or any("/" in d or ":" in d for d in out):
            raise ValueError("allowed_domains holds host names only (no scheme, port or path), e.g. 'example.org'")
        return out

    @field_validator("allow_paths", "deny_paths")
    @classmethod
    def _paths(cls, rules: list[str]) -> list[str]:
        for rule in rules:
            if rule.startswith("re:"):
                try:
                    re.compile(rule[3:])
                except re.error as exc:
                    raise ValueError(f"bad regex {rule!r}: {exc}") from None
            elif not rule.startswith("/"):
                raise ValueError(f"path rule {rule!r} must start with '/' (a prefix) or 're:' (a regex)")
        return rules

    @field_validator("languages")
    @classmethod
    def _languages(cls, languages: list[str] | None) -> list[str] | None:
        if languages is None:
            return None
        out = [x.strip().lower() for x in languages]
        bad = [x for x in out if not _LANGUAGE.match(x)]
        if bad or not out:
            raise ValueError(f"languages are ISO 639-1 codes such as 'en' or 'de', got {bad or languages}")
        return out

    @field_validator("skip_extensions")
    @classmethod
    def _extensions(cls, extensions: list[str]) -> list[str]:
        return [e.lower() if e.startswith(".") else "." + e.lower() for e in extensions]

    @model_validator(mode="after")
    def _ua(self):
        if self.user_agent is not None and not self.user_agent.strip():
            raise ValueError("user_agent must not be empty")
        return self

    # ------------------------------------------------------------------ derived

    @property
    def domains(self) -> list[str]:
        """The allowed domains: ``allowed_domains``, else the seeds' hosts."""
        if self.allowed_domains is not None:
            return list(self.allowed_domains)
        return sorted({(urlsplit(s).hostname or "").lower() for s in self.seeds})

    @property
    def agent(self) -> str:
        """The User-Agent header sent with every request."""
        if self.user_agent:
            return self.user_agent.strip()
        base = f"selfsup-collect/{_version()}"
        return f"{base} (+{self.contact})" if self.contact else base

    def scope_differences(self, other: "CrawlOptions") -> list[str]:
        """Names of the options outside :data:`CHANGEABLE` whose values differ from ``other``'s."""
        mine, theirs = self.model_dump(), other.model_dump()
        return sorted(k for k in mine if k not in CHANGEABLE and mine[k] != theirs.get(k))

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
