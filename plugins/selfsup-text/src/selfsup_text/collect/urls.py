"""URL normalisation (what is fetched), URL keys (what is de-duplicated) and the crawl's scope.

:func:`normalize` makes the URL that is fetched: resolved against its page, scheme and host
lowercased (IDNA for non-ASCII hosts, no trailing dot), the default port (80/443), user info and
fragment dropped, dot segments removed, percent-encoding made canonical (RFC 3986 6.2.2: escapes
of unreserved characters decoded, others uppercased, spaces and non-ASCII characters encoded as
UTF-8), tracking parameters (``utm_*``, ``fbclid``, ``gclid``, ...) removed and the query
parameters sorted. :func:`url_key` is the de-duplication key: the normalised URL without a
trailing slash (``/docs/`` and ``/docs`` are one page; the URL fetched keeps the form first seen).
"""

from __future__ import annotations

import posixpath
import re
from urllib.parse import urljoin, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
#: Query parameters that only track a click (removed); ``utm_*`` ones by prefix.
TRACKING_PARAMS = frozenset({
    "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "mc_cid", "mc_eid", "yclid", "_hsenc", "_hsmi",
    "igshid", "_ga", "_gl",
})
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# characters that may stay as they are in a path / a query component (RFC 3986 pchar, plus '/' and '?')
_PATH_OK = _UNRESERVED | frozenset("!$&'()*+,;=:@/%")
_QUERY_OK = _UNRESERVED | frozenset("!$'()*+,;:@/?%")  # '&' and '=' separate parameters: kept escaped
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_WHITESPACE = re.compile(r"[\t\n\r]")


def _canonical_escapes(text: str, ok: frozenset[str]) -> str:
    """``text`` with percent-escapes of unreserved characters decoded, the others uppercased, and every
    character outside ``ok`` (spaces, non-ASCII, a stray '%') encoded as UTF-8 escapes."""
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "%":
            m = _ESCAPE.match(text, i)
            if m:
                decoded = chr(int(m.group(1), 16))
                out.append(decoded if decoded in _UNRESERVED else "%" + m.group(1).upper())
                i += 3
                continue
            out.append("%25")
        elif ch in ok:
            out.append(ch)
        else:
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass")))
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    if "." not in path:
        return path
    trailing = path.endswith(("/", "/.", "/.."))
    clean = posixpath.normpath(path)
    if clean.startswith("//"):  # normpath keeps a leading '//'
        clean = "/" + clean.lstrip("/")
    if trailing and clean != "/":
        clean += "/"
    return clean


def _normalize_query(query: str) -> str:
    if not query:
        return ""
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = _canonical_escapes(name, _QUERY_OK)
        plain = name.lower()
        if plain.startswith("utm_") or plain in TRACKING_PARAMS:
            continue
        pairs.append((name, sep, _canonical_escapes(value, _QUERY_OK | {"="})))
    pairs.sort()
    return "&".join(n + s + v for n, s, v in pairs)


def normalize(url: str, base: str | None = None) -> str | None:
    """The canonical absolute form of ``url`` (resolved against ``base``), or None when it is not an
    http(s) URL with a host (mailto:, javascript:, data:, a malformed port or address, ...)."""
    url = _WHITESPACE.sub("", url.strip())
    if not url:
        return None
    try:
        if base is not None:
            url = urljoin(base, url)
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS:
            return None
        host = (parts.hostname or "").rstrip(".")
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    host = host.lower()
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    netloc = host if port is None or port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _remove_dot_segments(_canonical_escapes(parts.path or "/", _PATH_OK))
    if not path.startswith("/"):
        path = "/" + path
    return urlunsplit((scheme, netloc, path, _normalize_query(parts.query), ""))


def url_key(url: str) -> str:
    """The de-duplication key of a normalised URL: without a trailing slash (the root keeps its '/')."""
    parts = urlsplit(url)
    path = parts.path
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a normalised URL: what robots.txt and politeness apply to."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def in_domains(host: str, domains: list[str]) -> bool:
    """Whether ``host`` is one of ``domains`` or a subdomain of one."""
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in domains)


def path_allowed(url: str, allow: list[str], deny: list[str]) -> bool:
    """Whether the URL's path passes the allow/deny rules (prefixes, or ``re:`` regexes searched in
    ``path?query``): denied by any deny rule; with allow rules, allowed only by one of them."""
    parts = urlsplit(url)
    target = parts.path + ("?" + parts.query if parts.query else "")

    def hit(rule: str) -> bool:
        return bool(re.search(rule[3:], target)) if rule.startswith("re:") else parts.path.startswith(rule)

    if any(hit(r) for r in deny):
        return False
    return not allow or any(hit(r) for r in allow)


def has_extension(url: str, extensions: list[str]) -> bool:
    path = urlsplit(url).path.lower()
    return any(path.endswith(e) for e in extensions)


def resolve(location: str, base: str) -> str | None:
    """A redirect's ``Location`` (relative or absolute) as a normalised URL, or None."""
    return normalize(location, base)
