"""selfsup collect: URL normalisation, robots.txt (RFC 9309), encodings and licence hints, and whole
crawls of a site served from 127.0.0.1 (tests/web_site.py): robots rules and Crawl-delay, sitemaps,
redirects and loops, 404/500/503/timeouts with retries and Retry-After, non-HTML and huge pages, mixed
encodings, duplicate URLs and contents, WARC records behind every page, a crawler that never contacts
another address, and a crawl killed with SIGKILL that resumes without fetching a stored page again."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from web_site import DUPLICATE_FORMS, Reply, Site, make_site, page

from selfsup_text.collect import urls as U
from selfsup_text.collect.command import collect
from selfsup_text.collect.crawl import CrawlFolderError, prepare_folder, run_crawl
from selfsup_text.collect.extract import decode_body, extract_page, licence_id, parse_sitemap
from selfsup_text.collect.fetch import decode_content, retry_after
from selfsup_text.collect.options import CrawlOptions
from selfsup_text.collect.robots import ALLOW_ALL, DISALLOW_ALL, Robots
from selfsup_text.collect.warc import WarcFiles, iter_records, read_record

try:
    import protego  # noqa: F401

    HAVE_PROTEGO = True
except ImportError:  # the stdlib fallback applies the first matching rule, not the longest
    HAVE_PROTEGO = False

AGENT = "selfsup-collect/0.1 (+https://example.org/bot)"


# ----------------------------------------------------------------------------- the loopback guard


class LoopbackOnly:
    """Patches ``socket`` in this process: any connection or name lookup for an address other than
    127.0.0.1 is refused and recorded (the crawler must never make one)."""

    def __init__(self, monkeypatch):
        self.refused: list[object] = []
        self.connected: list[object] = []
        real_connect, real_connect_ex, real_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, \
            socket.getaddrinfo
        guard = self

        def check(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                host = address[0] if isinstance(address, tuple) else address
                if host != "127.0.0.1":
                    guard.refused.append(address)
                    raise OSError(f"test guard: connection to {address!r} refused")
                guard.connected.append(address)

        def connect(sock, address):
            check(sock, address)
            return real_connect(sock, address)

        def connect_ex(sock, address):
            check(sock, address)
            return real_connect_ex(sock, address)

        def getaddrinfo(host, *args, **kwargs):
            name = host.decode() if isinstance(host, bytes) else host
            if name not in ("127.0.0.1", None):
                guard.refused.append(name)
                raise socket.gaierror(f"test guard: lookup of {name!r} refused")
            return real_getaddrinfo(host, *args, **kwargs)

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _options(site: Site, **kw) -> CrawlOptions:
    settings = dict(seeds=[site.base + "/"], delay=0, timeout=2.0, retries=1, backoff=0.05, min_text_chars=100,
                    contact="https://example.org/bot")
    return CrawlOptions(**{**settings, **kw})


# ----------------------------------------------------------------------------- units


@pytest.mark.parametrize("raw, expected", [
    ("HTTP://Example.COM:80/a/./b/../c?b=2&a=1#frag", "http://example.com/a/c?a=1&b=2"),
    ("https://example.com:443", "https://example.com/"),
    ("https://example.com:8443/x", "https://example.com:8443/x"),
    ("http://h/p?utm_source=x&utm_medium=y&id=3&fbclid=z", "http://h/p?id=3"),
    ("http://h/%7euser/%e2%82%ac page", "http://h/~user/%E2%82%AC%20page"),
    ("http://user:secret@h/a", "http://h/a"),
    ("http://bücher.example/", "http://xn--bcher-kva.example/"),
    ("http://h./x", "http://h/x"),
    ("http://[::1]:80/x", "http://[::1]/x"),
    ("mailto:a@b.c", None), ("javascript:void(0)", None), ("ftp://h/x", None), ("http://h:99999/", None),
    ("http:///nohost", None),
])
def test_normalize(raw, expected):
    assert U.normalize(raw) == expected


def test_relative_links_keys_and_scope():
    assert U.normalize("../b?x=1#f", "http://h/a/c/d.html") == "http://h/a/b?x=1"
    assert U.normalize("//cdn.org/x", "https://h/") == "https://cdn.org/x"
    assert U.url_key("http://h/docs/") == U.url_key("http://h/docs") == "http://h/docs"
    assert U.url_key("http://h/") == "http://h/"
    assert U.url_key(U.normalize("http://h/d/?b=1&a=2")) == U.url_key(U.normalize("http://H:80/d?a=2&b=1#x"))
    assert U.origin("https://h:8443/x?y") == "https://h:8443"
    assert U.in_domains("www.example.org", ["example.org"]) and U.in_domains("example.org", ["example.org"])
    assert not U.in_domains("badexample.org", ["example.org"]) and not U.in_domains("example.com", ["example.org"])
    assert U.path_allowed("http://h/blog/1", ["/blog/"], [])
    assert not U.path_allowed("http://h/shop/1", ["/blog/"], [])
    assert not U.path_allowed("http://h/blog/tag/x", ["/blog/"], ["/blog/tag/"])
    assert not U.path_allowed("http://h/a?page=9", [], [r"re:page=\d+"])
    assert U.has_extension("http://h/a/B.PDF", [".pdf"]) and not U.has_extension("http://h/pdf", [".pdf"])


def test_options_validate_and_say_what_may_change_on_resume():
    options = CrawlOptions(seeds=["https://Example.org/start"], contact="https://me.example/")
    assert options.domains == ["example.org"]
    assert options.agent.startswith("selfsup-collect/") and options.agent.endswith("(+https://me.example/)")
    assert CrawlOptions(seeds=["https://a.org/"], user_agent="mybot/2").agent == "mybot/2"
    for bad in ({"seeds": []}, {"seeds": ["ftp://x/"]}, {"seeds": ["not a url"]},
                {"seeds": ["http://a/"], "allow_paths": ["blog"]}, {"seeds": ["http://a/"], "deny_paths": ["re:("]},
                {"seeds": ["http://a/"], "languages": ["English"]},
                {"seeds": ["http://a/"], "allowed_domains": ["http://a.org"]}, {"seeds": ["http://a/"], "delay": -1}):
        with pytest.raises(ValueError):
            CrawlOptions(**bad)
    more = options.model_copy(update={"max_pages": 5000, "delay": 2.0})
    assert more.scope_differences(options) == []
    assert options.model_copy(update={"max_depth": 1}).scope_differences(options) == ["max_depth"]


def test_robots_rules_by_rfc_9309():
    text = (b"User-agent: *\nDisallow: /private/\nAllow: /private/open\nDisallow: /*.pdf$\nCrawl-delay: 2.5\n"
            b"Sitemap: https://h/sitemap.xml\n\nUser-agent: selfsup-collect\nDisallow: /not-for-us\n"
            b"Request-rate: 1/4\n")
    robots = Robots.from_fetch("selfsup-collect/0.1 (+x)", 200, text)
    # our product token has its own group: only its rules apply
    assert not robots.allowed("https://h/not-for-us/page") and robots.allowed("https://h/private/x")
    assert robots.delay() == 4.0 and robots.sitemaps() == ["https://h/sitemap.xml"]
    other = Robots.from_fetch("otherbot/1.0", 200, text)
    assert not other.allowed("https://h/private/x") and other.allowed("https://h/public")
    assert other.allowed("https://h/robots.txt")
    if HAVE_PROTEGO:  # longest match wins, and wildcards (the stdlib parser knows neither)
        assert other.allowed("https://h/private/open/page")
        assert not other.allowed("https://h/a/b.pdf") and other.allowed("https://h/a/b.pdf.html")
        assert other.delay() == 2.5
    assert Robots.from_fetch(AGENT, 404).mode == ALLOW_ALL and Robots.from_fetch(AGENT, 404).allowed("http://h/x")
    assert Robots.from_fetch(AGENT, 403).mode == ALLOW_ALL
    for unreachable in (500, 503, 429, None):
        robots = Robots.from_fetch(AGENT, unreachable, reason="timeout")
        assert robots.mode == DISALLOW_ALL and not robots.allowed("http://h/") and not robots.cacheable


def test_encodings_are_sniffed_like_browsers_do():
    text = "Caf\u00e9 \u201cquoted\u201d \u20ac"
    assert decode_body(b"\xef\xbb\xbf" + text.encode(), "text/html; charset=latin-1") == (text, "utf-8", "bom")
    assert decode_body("Caf\u00e9".encode("latin-1"), 'text/html; charset="ISO-8859-1"') == \
        ("Caf\u00e9", "cp1252", "header")
    meta = '<meta charset="windows-1252"><p>Caf\u00e9</p>'.encode("cp1252")
    assert decode_body(meta, "text/html")[1:] == ("cp1252", "meta")
    http_equiv = '<meta http-equiv="content-type" content="text/html; charset=koi8-r"><p>\u043c\u0438\u0440'
    assert decode_body(http_equiv.encode("koi8-r"), None)[0].endswith("\u043c\u0438\u0440")
    assert decode_body(text.encode(), "text/html") == (text, "utf-8", "utf-8")
    assert decode_body(text.encode("cp1252"), "text/html") == (text, "cp1252", "fallback")
    assert decode_body(text.encode(), "text/html; charset=no-such-charset")[1] == "utf-8"


def test_licence_hints_and_meta_robots():
    head = ('<link rel="license" href="/licence"><meta name="DC.rights" content="CC BY-NC-SA 3.0">'
            '<meta name="copyright" content="Example Ltd"><meta name="robots" content="noindex, nofollow">'
            '<script type="application/ld+json">{"@type": "Article", "license": '
            '"https://creativecommons.org/publicdomain/zero/1.0/"}</script>')
    body = ('<p>' + "Words of the article text. " * 20 + '</p><a href="https://creativecommons.org/licenses/by/4.0/">'
            'CC BY</a><img src="https://licensebuttons.net/l/by-nd/4.0/88x31.png"><a href="/next">next</a>')
    page = extract_page(f"<html><head>{head}</head><body>{body}</body></html>".encode(), "text/html",
                        "https://h/a/page")
    hints = {(h["source"], h["licence"]) for h in page["licences"]}
    assert ("rel=license", None) in hints and ("meta:dc.rights", "CC-BY-NC-SA-3.0") in hints
    assert ("meta:copyright", None) in hints and ("json-ld", "CC0-1.0") in hints
    assert ("cc-link", "CC-BY-4.0") in hints and ("cc-badge", "CC-BY-ND-4.0") in hints
    assert page["licence"] == "CC-BY-NC-SA-3.0"  # the first one that names a CC licence
    assert page["licences"][0]["value"] == "https://h/licence"
    assert page["noindex"] and page["nofollow"] and "https://h/next" in page["links"]
    assert licence_id("https://creativecommons.org/publicdomain/mark/1.0/") == "PDM-1.0"
    assert licence_id("All rights reserved") is None


def test_sitemaps_retry_after_and_content_decoding():
    urlset = (b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
              b"<url><loc> https://h/a </loc></url><url><loc>https://h/b</loc></url></urlset>")
    assert parse_sitemap(urlset) == (["https://h/a", "https://h/b"], [])
    index = b"<sitemapindex><sitemap><loc>https://h/s1.xml.gz</loc></sitemap></sitemapindex>"
    assert parse_sitemap(gzip.compress(index)) == ([], ["https://h/s1.xml.gz"])
    assert parse_sitemap(b"https://h/x\nnot a url\nhttp://h/y\n") == (["https://h/x", "http://h/y"], [])
    bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><urlset><url><loc>&e;</loc>' \
           b"</url></urlset>"
    assert "root" not in "".join(parse_sitemap(bomb)[0])
    assert retry_after("7") == 7.0 and retry_after("soon") is None and retry_after(None) is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412430.0) == 50.0
    data = b"hello " * 1000
    assert decode_content(gzip.compress(data), "gzip", 10**6) == (data, False)
    assert decode_content(zlib.compress(data), "deflate", 10**6) == (data, False)
    raw_deflate = zlib.compressobj(wbits=-15)
    assert decode_content(raw_deflate.compress(data) + raw_deflate.flush(), "deflate", 10**6) == (data, False)
    assert decode_content(gzip.compress(data), "gzip", 100) == (data[:100], True)  # a gzip bomb stops at the cap
    with pytest.raises(ValueError, match="unsupported"):
        decode_content(data, "br", 10**6)


def test_warc_files_rotate_and_are_cut_back_to_the_committed_size(tmp_path):
    files = WarcFiles(tmp_path / "warc", max_bytes=2000, info={"software": "test"})
    files.open({})
    first = files.write_exchange("http://h/1", request_headers=[("User-Agent", AGENT)], status=200, reason="OK",
                                 headers=[("Content-Type", "text/html")], body=b"<p>one</p>" * 100,
                                 fetched_at=time.time(), ip="127.0.0.1")
    files.flush()
    committed = files.sizes()
    files.write_exchange("http://h/2", request_headers=[], status=200, reason="OK", headers=[], body=os.urandom(2500),
                         fetched_at=time.time())
    files.write_exchange("http://h/3", request_headers=[], status=200, reason="OK", headers=[], body=b"3",
                         fetched_at=time.time())
    files.flush()
    assert len(files.sizes()) == 2  # rotated past max_bytes
    files.close()
    again = WarcFiles(tmp_path / "warc", max_bytes=2000)
    again.open(committed)  # as a resumed crawl does: records after the last commit are gone
    assert again.sizes() == committed
    record = read_record(tmp_path / first.file, first.offset)
    assert record["type"] == "response" and record["uri"] == "http://h/1" and record["content"] == b"<p>one</p>" * 100
    assert record["warc_headers"]["WARC-IP-Address"] == "127.0.0.1"
    types = [(r.rec_type, r.rec_headers.get_header("WARC-Target-URI")) for _, r in
             iter_records(tmp_path / first.file)]
    assert types == [("warcinfo", None), ("response", "http://h/1"), ("request", "http://h/1")]
    again.close()


# ----------------------------------------------------------------------------- the main crawl


@pytest.fixture(scope="module")
def crawl(tmp_path_factory):
    """One crawl of the main test site (kept running for the tests that look at it)."""
    out = tmp_path_factory.mktemp("crawl")
    with pytest.MonkeyPatch.context() as mp, make_site() as site:
        guard = LoopbackOnly(mp)
        options = _options(site, max_page_bytes=100_000, max_depth=3, timeout=1.0)  # /slow takes 4 s
        summary = run_crawl(options, out)
        yield {"site": site, "out": out, "summary": summary, "guard": guard, "options": options,
               "pages": {p["url"].replace(site.base, ""): p for p in _lines(out / "pages.jsonl")},
               "fetches": _lines(out / "fetches.jsonl")}


def test_crawl_counts_every_outcome(crawl):
    s = crawl["summary"]
    assert s["complete"] and s["stopped_by"] == "done" and s["queued"] == 0
    assert s["robots_disallowed"] == 1  # /private/secret
    assert s["offsite"] == 6  # 4 links (example.com, wikipedia, localhost, cdn), 1 redirect, 1 sitemap entry
    assert s["duplicate_url"] >= len(DUPLICATE_FORMS)
    assert s["duplicate_content"] == 1  # /copy2 serves /copy1's bytes
    assert s["too_large"] == 2  # /huge (Content-Length over the cap) and /huge-stream (cut while streaming)
    assert s["non_html"] == 1  # /data.json
    assert s["filtered"] == 1  # /image.png, by its extension
    assert s["noindex"] == 1 and s["too_deep"] == 1  # /deep/4 is 4 hops away
    assert s["errors"] == {"http_404": 1, "http_500": 1, "redirect_loop": 1, "timeout": 1}
    assert s["retries"] == 3  # /broken, /flaky, /slow once each
    assert s["sitemaps"] == 1 and s["sitemap_urls"] == 3 and s["robots_files"] == 1
    assert s["pages_written"] == len(crawl["pages"]) == 24
    assert json.loads((crawl["out"] / "summary.json").read_text()) == s


def test_crawler_contacts_no_other_address(crawl):
    guard = crawl["guard"]
    assert guard.refused == [], f"the crawler tried to reach {guard.refused}"
    assert guard.connected and {a[0] for a in guard.connected} == {"127.0.0.1"}
    assert {f.get("ip") for f in crawl["fetches"] if f["status"] is not None} == {"127.0.0.1"}
    offsite = [f["url"] for f in crawl["fetches"] if "127.0.0.1" not in f["url"]]
    assert offsite == []


def test_disallowed_duplicate_and_filtered_urls_are_never_requested(crawl):
    site = crawl["site"]
    hits = Counter(site.paths())
    assert hits["/robots.txt"] == 1 and hits["/sitemap.xml"] == 1
    assert "/private/secret" not in hits and "/image.png" not in hits and "/deep/4" not in hits
    if HAVE_PROTEGO:
        assert hits["/private/open"] == 1  # Allow: /private/open is longer than Disallow: /private/
    assert sum(n for p, n in hits.items() if p.startswith(("/dup", "/./dup"))) == 1  # six forms, one fetch
    assert hits["/page1"] == 1  # linked from the index and the sitemap
    retried = {"/broken", "/flaky", "/slow"}
    assert {p for p, n in hits.items() if n > 1} == retried
    assert all(hits[p] == 2 for p in retried)
    assert hits["/slash"] == hits["/slash/"] == 1  # a redirect to the same page with a slash is followed
    assert hits["/loop-a"] == hits["/loop-b"] == 1 and hits["/redirect-target"] == 1
    robots = next(f for f in crawl["fetches"] if f["url"].endswith("/private/secret"))
    assert robots["robots"] == "disallowed" and robots["status"] is None and robots["outcome"] == "robots_disallowed"


def test_retry_after_and_timeouts(crawl):
    site = crawl["site"]
    flaky = [r.time for r in site.requests if r.path == "/flaky"]
    assert flaky[1] - flaky[0] >= 0.95  # 503 with Retry-After: 1
    slow = [f for f in crawl["fetches"] if f["url"].endswith("/slow")]
    assert [f["error"] for f in slow] == ["timeout", "timeout"] and [f["attempt"] for f in slow] == [1, 2]
    assert all(f["elapsed"] < 2.5 for f in slow)
    flaky_log = [f for f in crawl["fetches"] if f["url"].endswith("/flaky")]
    assert [f["status"] for f in flaky_log] == [503, 200]
    assert "/flaky" in crawl["pages"]


def test_pages_hold_text_language_encoding_and_licence(crawl):
    pages = crawl["pages"]
    assert "/private/secret" not in pages and "/noindex" not in pages and "/copy2" not in pages
    assert "/from-sitemap" in pages and "/plain.txt" in pages
    assert pages["/german"]["language"] == "de" and pages["/french"]["language"] == "fr"
    assert pages["/page1"]["language"] == "en" and pages["/page1"]["language_score"] > 0.9
    assert "nav" not in pages["/page1"]["text"] and "Copyright the test site" not in pages["/page1"]["text"]
    assert "rivers, mountains" in pages["/page1"]["text"]
    latin = pages["/latin1-header"]
    assert "crème brûlée" in latin["text"] and latin["encoding_source"] == "header" and latin["title"] == "Café"
    assert "crème brûlée" in pages["/latin1-meta"]["text"] and pages["/latin1-meta"]["encoding_source"] == "meta"
    cp = pages["/cp1252"]
    assert "\u201cthe price is 5 \u20ac\u201d" in cp["text"] and cp["encoding"] == "cp1252"
    assert cp["encoding_source"] == "fallback"
    assert "gzipped" in pages["/gzip"]["text"]
    assert pages["/licensed"]["licence"] == "CC-BY-SA-4.0"
    assert {h["source"] for h in pages["/licensed"]["licences"]} == {"rel=license", "meta:dc.rights", "cc-badge"}
    assert pages["/redirect"]["final_url"].endswith("/redirect-target")
    assert pages["/slash"]["final_url"].endswith("/slash/")
    for p in pages.values():
        assert {"url", "final_url", "fetched_at", "status", "content_type", "language", "language_score", "licences",
                "title", "text", "warc_file", "warc_offset"} <= set(p)


def test_every_page_points_at_its_warc_response(crawl):
    out = crawl["out"]
    for stored in crawl["pages"].values():
        record = read_record(out / stored["warc_file"], stored["warc_offset"])
        assert record["type"] == "response" and record["uri"] == stored["final_url"] and record["status"] == 200
    records = Counter()
    for file in sorted((out / "warc").glob("*.warc.gz")):
        for _, record in iter_records(file):
            records[record.rec_type] += 1
            if record.rec_type == "revisit":
                assert record.rec_headers.get_header("WARC-Refers-To-Target-URI").endswith("/copy1")
            record.content_stream().read()
    answered = [f for f in crawl["fetches"] if f["status"] is not None]
    stored = [f for f in answered if f.get("warc_file")]
    assert len(stored) == len(answered) - 1  # all but /data.json (its body is never read)
    assert records["response"] + records["revisit"] == records["request"] == len(stored)
    assert records["revisit"] == 1 and records["warcinfo"] >= 1
    assert len(crawl["fetches"]) == len(crawl["site"].requests) + 1  # + the robots decision on /private/secret


def test_resuming_a_finished_crawl_fetches_nothing(crawl):
    site, out = crawl["site"], crawl["out"]
    before = len(site.requests)
    with pytest.MonkeyPatch.context() as mp:
        guard = LoopbackOnly(mp)
        summary = run_crawl(None, out)  # the stored options
    assert len(site.requests) == before and guard.connected == []
    assert summary["runs"] == 2 and summary["fetched"] == crawl["summary"]["fetched"]
    assert len(_lines(out / "pages.jsonl")) == len(crawl["pages"])


# ----------------------------------------------------------------------------- politeness


def test_crawl_delay_spaces_requests_to_a_host(tmp_path):
    routes = {"/robots.txt": lambda r: Reply(200, b"User-agent: *\nCrawl-delay: 0.3\n", {"Content-Type": "text/plain"}),
              "/": page("Home", links=["/a", "/b"]), "/a": page("A"), "/b": page("B"), "/about": page("About"),
              "/contact": page("Contact")}  # the pages' navigation links to /about and /contact
    with Site(routes) as site:
        summary = run_crawl(_options(site, concurrency=4, per_host_concurrency=2, sitemaps=False), tmp_path / "c")
        times = [r.time for r in site.requests]
    assert summary["fetched"] == 5 and len(times) == 6 and summary["requests"] == 6
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 0.28, gaps  # the delay of robots.txt, not the options' 0


@pytest.mark.parametrize("status, fetched", [(404, 1), (500, 0)])
def test_robots_unavailable_allows_and_unreachable_disallows(tmp_path, status, fetched):
    routes = {"/robots.txt": lambda r: Reply(status, b"no"), "/": page("Home")}
    with Site(routes) as site:
        summary = run_crawl(_options(site, sitemaps=False), tmp_path / "c")
        hits = Counter(site.paths())
    assert summary["fetched"] == fetched and hits["/"] == fetched
    if status == 500:
        assert hits["/robots.txt"] == 2 and summary["robots_unreachable"] == 1 and summary["robots_disallowed"] == 1


def test_a_retried_redirect_chain_reaches_its_target(tmp_path):
    answers = iter([Reply(503, b"busy", {"Retry-After": "0"})])

    def target(request):
        return next(answers, None) or Reply(200, page("Target")(request).body)

    routes = {"/": page("Home", links=["/r"]), "/r": lambda r: Reply(301, b"", {"Location": "/t"}), "/t": target,
              "/about": page("About"), "/contact": page("Contact")}
    with Site(routes) as site:
        summary = run_crawl(_options(site, sitemaps=False), tmp_path / "c")
        hits = Counter(site.paths())
    assert hits["/r"] == hits["/t"] == 2 and summary["retries"] == 1 and summary["errors"] == {}
    pages = {p["url"].replace(site.base, ""): p for p in _lines(tmp_path / "c" / "pages.jsonl")}
    assert pages["/r"]["final_url"] == site.base + "/t" and "/t" not in pages


def test_limits_stop_the_crawl_and_a_larger_limit_goes_on(tmp_path):
    routes = {"/": page("Home", links=[f"/p{i}" for i in range(6)]), **{f"/p{i}": page(f"P{i}") for i in range(6)},
              "/about": page("About"), "/contact": page("Contact")}
    out = tmp_path / "c"
    with Site(routes) as site:
        first = run_crawl(_options(site, max_pages=3, sitemaps=False), out)
        assert first["fetched"] == 3 and first["stopped_by"] == "max_pages" and not first["complete"]
        assert len(_lines(out / "pages.jsonl")) == 3
        second = run_crawl(_options(site, max_pages=100, sitemaps=False), out)
        hits = Counter(site.paths())
    assert second["fetched"] == 9 and second["complete"] and second["runs"] == 2
    assert set(hits.values()) == {1}  # no page fetched twice
    assert len({p["url"] for p in _lines(out / "pages.jsonl")}) == 9


def test_folder_rules_and_the_command(tmp_path):
    routes = {"/": page("Home", links=["/a", "/b"]), "/a": page("A"), "/b": page("B")}
    out = tmp_path / "crawl"
    runner = CliRunner()
    with Site(routes) as site:
        common = ["--delay", "0", "--timeout", "2", "--no-sitemaps", "--min-text-chars", "50", "-q"]
        res = runner.invoke(collect, [site.base + "/", "--out", str(out), "--max-pages", "1", *common])
        assert res.exit_code == 0, res.output
        assert "1 pages fetched" in res.output and (out / "crawl.json").is_file()
        res = runner.invoke(collect, [site.base + "/a", "--out", str(out), *common])  # other seeds
        assert res.exit_code == 2 and "other seeds" in res.output
        res = runner.invoke(collect, ["--out", str(out), "--max-pages", "10", "-q"])  # resume, larger limit
        assert res.exit_code == 0, res.output
        assert "3 pages fetched" in res.output
        res = runner.invoke(collect, [site.base + "/a", "--out", str(out), "--fresh", "--max-pages", "1", *common])
        assert res.exit_code == 0 and "1 pages fetched" in res.output
        assert json.loads((out / "summary.json").read_text())["runs"] == 1
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(CrawlFolderError, match="holds no crawl"):
        prepare_folder(tmp_path / "other", CrawlOptions(seeds=["http://127.0.0.1:9/"]))
    res = runner.invoke(collect, ["--out", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "give SEEDS" in res.output
    res = runner.invoke(collect, ["http://127.0.0.1:9/", "--out", str(tmp_path / "x"), "--max-bytes", "lots"])
    assert res.exit_code == 2 and "not a size" in res.output


# ----------------------------------------------------------------------------- kill and resume


def test_a_killed_crawl_resumes_without_fetching_a_page_twice(tmp_path):
    n = 40
    routes = {"/": page("Home", links=[f"/p{i}" for i in range(n)])}
    for i in range(n):
        handler = page(f"Page {i}", links=[f"/p{(i + 1) % n}"])
        routes[f"/p{i}"] = lambda r, handler=handler: Reply(200, handler(r).body, sleep=0.05)
    out = tmp_path / "crawl"
    concurrency = 2
    command = [sys.executable, "-m", "selfsup", "collect", "--out", str(out), "--delay", "0", "--concurrency",
               str(concurrency), "--per-host", str(concurrency), "--no-sitemaps", "--min-text-chars", "50", "-q"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with Site(routes) as site:
        first = subprocess.Popen([*command, site.base + "/"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while sum(p.startswith("/p") for p in site.paths()) < 12 and time.time() < deadline \
                and first.poll() is None:
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        assert first.returncode == -signal.SIGKILL, first.stderr.read().decode()
        hits_before = Counter(site.paths())
        assert 12 <= sum(hits_before.values()) < n + 2, "the crawl must be killed in the middle"
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)  # resume
        assert second.returncode == 0, second.stderr
        hits = Counter(site.paths())
    pages = _lines(out / "pages.jsonl")
    urls = [p["url"] for p in pages]
    assert len(urls) == len(set(urls)) == n + 1  # every page once, none twice
    twice = {p for p, c in hits.items() if c > 1}
    assert twice <= {p for p in hits_before} and len(twice) <= concurrency  # only the ones in flight at the kill
    assert hits["/robots.txt"] == 1  # its answer was committed before the kill
    responses = Counter()
    for file in (out / "warc").glob("*.warc.gz"):
        for _, record in iter_records(file):
            if record.rec_type == "response":
                responses[record.rec_headers.get_header("WARC-Target-URI")] += 1
            record.content_stream().read()
    assert set(responses.values()) == {1}  # every response stored once
    assert len(responses) == n + 4  # the pages, the index, robots.txt and the 404s of /about and /contact
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["runs"] == 2 and summary["fetched"] == n + 1
    logged = Counter(f["url"] for f in _lines(out / "fetches.jsonl") if f["status"] == 200)
    assert set(logged.values()) == {1}
    with pytest.raises(CrawlFolderError, match="other .*seeds"):
        prepare_folder(out, CrawlOptions(seeds=["http://127.0.0.1:9/"]))
