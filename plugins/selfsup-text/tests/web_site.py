"""A small web site served from 127.0.0.1 on a free port, in a thread, for the crawler's tests.

:class:`Site` serves ``routes`` (path -> handler) and records every request (path with query,
time, headers) so tests can check what the crawler asked for and when. :func:`make_site` builds
the site of the main crawl test: robots rules, a sitemap, redirects and a loop, 404/500/503/timeouts,
non-HTML types, huge pages, mixed encodings, duplicate pages under several URLs and links to
other hosts (which the crawler must never contact).
"""

from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import urlsplit

Handler = Callable[["Request"], "Reply"]


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    sleep: float = 0.0  # seconds before answering
    length: bool = True  # send Content-Length (else the body ends when the connection closes)


@dataclass
class Request:
    path: str  # path?query, as requested
    time: float
    headers: dict[str, str]
    count: int  # how many times this path?query was asked, this one included


class Site:
    """Serve ``routes`` on 127.0.0.1 (see the module docstring); use as a context manager."""

    def __init__(self, routes: dict[str, Handler] | None = None):
        self.routes: dict[str, Handler] = dict(routes or {})
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        site = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                with site._lock:
                    count = sum(r.path == self.path for r in site.requests) + 1
                    request = Request(self.path, time.time(), dict(self.headers), count)
                    site.requests.append(request)
                handler = site.routes.get(self.path) or site.routes.get(urlsplit(self.path).path)
                reply = handler(request) if handler else Reply(404, html("Not found", "Nothing here."))
                try:
                    if reply.sleep:
                        time.sleep(reply.sleep)
                    self.send_response(reply.status)
                    headers = {"Content-Type": "text/html; charset=utf-8", **reply.headers}
                    for k, v in headers.items():
                        if v is not None:
                            self.send_header(k, v)
                    if reply.length:
                        self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Site":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def hits(self, path: str) -> int:
        with self._lock:
            return sum(r.path == path for r in self.requests)

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.requests]


# ---------------------------------------------------------------------------------- content

ENGLISH = ("The {name} page tells a short story about rivers, mountains and the people who live near them. "
           "Every spring the snow melts and the water runs down to the valley, where farmers wait for it. "
           "Children walk along the banks after school and count the boats that pass by the old bridge. ")
GERMAN = ("Die Seite {name} erzählt eine kurze Geschichte über Flüsse, Berge und die Menschen, die dort leben. "
          "Jedes Frühjahr schmilzt der Schnee und das Wasser fließt hinunter ins Tal, wo die Bauern warten. "
          "Die Kinder gehen nach der Schule am Ufer entlang und zählen die Boote unter der alten Brücke. ")
FRENCH = ("La page {name} raconte une courte histoire de rivières, de montagnes et des gens qui vivent là. "
          "Chaque printemps la neige fond et l'eau descend vers la vallée, où les paysans l'attendent déjà. "
          "Les enfants marchent le long des berges après l'école et comptent les bateaux sous le vieux pont. ")


def html(title: str, text: str, *, head: str = "", links: list[str] = (), extra: str = "") -> bytes:
    """A page with navigation boilerplate, an article of ``text`` and ``links`` in a list."""
    items = "".join(f'<li><a href="{href}">link {i}</a></li>' for i, href in enumerate(links))
    paragraphs = "".join(f"<p>{p}</p>" for p in text.split("\n\n"))
    page = (f"<!DOCTYPE html><html><head><title>{title}</title>{head}</head><body>"
            f'<nav><a href="/">Home</a> | <a href="/about">About us</a> | <a href="/contact">Contact</a></nav>'
            f"<article><h1>{title}</h1>{paragraphs}</article><ul>{items}</ul>{extra}"
            f"<footer>Copyright the test site. All rights reserved.</footer></body></html>")
    return page.encode("utf-8")


def text_for(name: str, language: str = "en", paragraphs: int = 2) -> str:
    template = {"en": ENGLISH, "de": GERMAN, "fr": FRENCH}[language]
    return "\n\n".join(template.format(name=f"{name} {i}") for i in range(paragraphs))


def page(name: str, language: str = "en", links: list[str] = (), **kw) -> Handler:
    body = html(name, text_for(name, language), links=links, **kw)
    return lambda request: Reply(200, body)


def redirect(location: str, status: int = 301) -> Handler:
    return lambda request: Reply(status, b"", {"Location": location})


# ---------------------------------------------------------------------------------- the main test site

EXTERNAL = ["http://example.com/", "https://www.wikipedia.org/wiki/River", "http://localhost:{port}/page1",
            "//cdn.example.net/lib.html", "mailto:someone@example.com", "javascript:void(0)"]
DUPLICATE_FORMS = ["/dup?b=2&a=1", "/dup?a=1&b=2#section", "/dup?a=1&b=2&utm_source=news&utm_medium=mail",
                   "HTTP://127.0.0.1:{port}/dup?a=1&b=2", "/dup/?a=1&b=2", "/./dup?a=1&b=%32"]


def make_site() -> Site:
    """The site of the main crawl test (see the module docstring), meant for a crawl with
    ``max_page_bytes=100_000``, ``timeout=1.0`` and ``retries=1``."""
    site = Site()
    port = site.port
    flaky_state = {"n": 0}

    def flaky(request: Request) -> Reply:
        flaky_state["n"] += 1
        if flaky_state["n"] == 1:
            return Reply(503, b"busy", {"Retry-After": "1"})
        return Reply(200, html("Flaky", text_for("flaky")))

    latin_text = ("Le café de la Cité est très réputé: on y mange une crème brûlée délicieuse, dit-on à Noël. " * 4)
    cp1252_text = ("He said \u201cthe price is 5 \u20ac\u201d \u2013 and that\u2019s what it cost, more or less. " * 5)
    licensed_head = ('<link rel="license" href="https://creativecommons.org/licenses/by-sa/4.0/">'
                     '<meta name="dc.rights" content="CC BY-SA 4.0">')
    huge = html("Huge", text_for("huge") + "\n\n" + "x " * 1_000_000)
    gz = gzip.compress(html("Gzipped", text_for("gzipped")))
    index_links = [
        "/page1", "/page2", "/page3", "/german", "/french", "/private/secret", "/private/open",
        "/dup?a=1&b=2", *DUPLICATE_FORMS, "/copy1", "/copy2", "/redirect", "/loop-a", "/slash", "/redirect-out",
        "/missing", "/broken", "/flaky", "/slow", "/image.png", "/data.json", "/plain.txt", "/huge",
        "/huge-stream", "/latin1-header", "/latin1-meta", "/cp1252", "/gzip", "/licensed", "/noindex", "/deep/1",
        *EXTERNAL,
    ]
    routes: dict[str, Handler] = {
        "/robots.txt": lambda r: Reply(200, (
            "User-agent: *\nDisallow: /private/\nAllow: /private/open\n\n"
            "User-agent: badbot\nDisallow: /\n\n"
            f"Sitemap: http://127.0.0.1:{port}/sitemap.xml\n").encode(), {"Content-Type": "text/plain"}),
        "/sitemap.xml": lambda r: Reply(200, (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<url><loc>http://127.0.0.1:{port}/from-sitemap</loc></url>"
            f"<url><loc>http://127.0.0.1:{port}/page1</loc></url>"
            "<url><loc>http://sitemap-offsite.example.org/x</loc></url></urlset>").encode(),
            {"Content-Type": "application/xml"}),
        "/": page("Index", links=[link.format(port=port) for link in index_links]),
        "/page1": page("Page one", links=["/page2", "/page1#top", "/page1?utm_campaign=x"]),
        "/page2": page("Page two", links=["/page3"]),
        "/page3": page("Page three"),
        "/german": page("Deutsch", "de"),
        "/french": page("Français", "fr"),
        "/private/secret": page("Secret"),
        "/private/open": page("Open part of private"),
        "/dup": page("Duplicate URL page"),
        "/dup/": page("Duplicate URL page"),
        "/copy1": page("Same content"),
        "/copy2": page("Same content"),
        "/redirect": redirect("/redirect-target"),
        "/redirect-target": page("Redirect target"),
        "/loop-a": redirect("/loop-b", 302),
        "/loop-b": redirect("/loop-a", 302),
        "/slash": redirect("/slash/"),
        "/slash/": page("Slash page"),
        "/redirect-out": redirect("http://example.com/landing", 302),
        "/broken": lambda r: Reply(500, b"oops"),
        "/flaky": flaky,
        "/slow": lambda r: Reply(200, html("Slow", text_for("slow")), sleep=4.0),
        "/image.png": lambda r: Reply(200, b"\x89PNG....", {"Content-Type": "image/png"}),
        "/data.json": lambda r: Reply(200, b'{"a": 1}' * 1000, {"Content-Type": "application/json"}),
        "/plain.txt": lambda r: Reply(200, text_for("plain").encode(), {"Content-Type": "text/plain; charset=utf-8"}),
        "/huge": lambda r: Reply(200, huge),
        "/huge-stream": lambda r: Reply(200, huge, length=False),
        "/latin1-header": lambda r: Reply(200, (
            f"<html><head><title>Caf\u00e9</title></head><body><article><p>{latin_text}</p><p>{latin_text}</p>"
            "</article></body></html>").encode("latin-1"), {"Content-Type": "text/html; charset=ISO-8859-1"}),
        "/latin1-meta": lambda r: Reply(200, (
            '<html><head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">'
            f"<title>Cit\u00e9</title></head><body><article><p>{latin_text}</p><p>{latin_text} Fin.</p></article>"
            "</body></html>").encode("latin-1"), {"Content-Type": "text/html"}),
        "/cp1252": lambda r: Reply(200, (
            f"<html><head><title>Quotes</title></head><body><article><p>{cp1252_text}</p><p>{cp1252_text}</p>"
            "</article></body></html>").encode("cp1252"), {"Content-Type": "text/html"}),
        "/gzip": lambda r: Reply(200, gz, {"Content-Encoding": "gzip"}),
        "/licensed": page("Licensed", head=licensed_head,
                          extra='<img src="https://i.creativecommons.org/l/by-sa/4.0/88x31.png">'),
        "/noindex": page("No index", head='<meta name="robots" content="noindex">'),
        "/from-sitemap": page("From the sitemap"),
        "/about": page("About"),
        "/contact": page("Contact"),
    }
    for i in range(1, 10):
        routes[f"/deep/{i}"] = page(f"Deep {i}", links=[f"/deep/{i + 1}"])
    site.routes.update(routes)
    return site
