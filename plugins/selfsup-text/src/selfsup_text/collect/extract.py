"""A fetched page -> its text, language, title, links and licence hints.

* Encoding (the order of the HTML standard's sniffing): a byte-order mark, else the ``charset`` of
  the ``Content-Type`` header, else a ``<meta charset>`` / ``http-equiv`` declaration in the first
  2 KiB, else UTF-8 when the bytes are valid UTF-8, else windows-1252 (the web's legacy default).
  Labels the standard maps to windows-1252 (``iso-8859-1``, ``latin1``, ``us-ascii``) decode as it.
* Main text: trafilatura (boilerplate removal: navigation, footers, cookie notices, comments);
  ``text/plain`` pages are their own text. :func:`visible_text` is the no-removal alternative.
* Language: py3langid (its model ships in the wheel) with normalised probabilities, on the first
  20,000 characters of the text: ``(code, probability)``; ``("und", 0.0)`` for an empty text.
* Licence hints, each ``{"source", "value", "licence"}`` (``licence``: an SPDX-style id such as
  ``CC-BY-SA-4.0`` when the value names a Creative Commons licence, else None): ``rel="license"``
  links and anchors, ``<meta name="license|dc.rights|dcterms.rights|dcterms.license|copyright">``,
  schema.org ``itemprop="license"``, a JSON-LD ``"license"``, CC badge images and links to
  creativecommons.org licences. They are hints a page gives about itself, not a legal finding.
* ``<meta name="robots">`` (and the ``X-Robots-Tag`` header): ``noindex`` keeps the page out of
  ``pages.jsonl``, ``nofollow`` keeps its links out of the frontier.
"""

from __future__ import annotations

import codecs
import re
import threading
from typing import Any
from urllib.parse import urljoin

HTML_TYPES = ("text/html", "application/xhtml+xml")
PLAIN_TYPES = ("text/plain",)
LANGUAGE_CHARS = 20_000
_WINDOWS_1252 = {"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "cp819", "ibm819", "us-ascii", "ascii",
                 "iso_8859-1", "iso-ir-100", "csisolatin1", "ansi_x3.4-1968", "windows-1252", "cp1252",
                 "x-cp1252"}
_META_CHARSET = re.compile(rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.I)
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_CC = re.compile(r"creativecommons\.org/(licenses|publicdomain)/([a-z+-]+)(?:/(\d+(?:\.\d+)?))?", re.I)
_BADGE = re.compile(r"(?:licensebuttons\.net|i\.creativecommons\.org)/(l|p)/([a-z+-]+)(?:/(\d+(?:\.\d+)?))?", re.I)
_JSONLD_LICENSE = re.compile(r'"license"\s*:\s*"([^"]{1,500})"', re.I)
_META_LICENCE_NAMES = ("license", "licence", "dc.rights", "dcterms.rights", "dc.license", "dcterms.license",
                       "copyright", "rights")
_BLANK_LINES = re.compile(r"\n\s*\n\s*(\n\s*)+")
MAX_LICENCE_HINTS = 20


# ---------------------------------------------------------------------------------- types and encodings


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def sniff_kind(content_type: str | None, body: bytes) -> str | None:
    """``"html"``, ``"plain"`` or None (another type) from the Content-Type, sniffing a body without one."""
    media = media_type(content_type)
    if media in HTML_TYPES:
        return "html"
    if media in PLAIN_TYPES:
        return "plain"
    if not media:
        head = body[:512].lstrip().lower()
        if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
            return "html"
    return None


def _codec(label: str | bytes | None) -> str | None:
    """The Python codec of a charset label (windows-1252 for its aliases), or None when unknown."""
    if not label:
        return None
    if isinstance(label, bytes):
        label = label.decode("ascii", "ignore")
    label = label.strip().strip("\"'").lower()
    if label in _WINDOWS_1252:
        return "cp1252"
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    return "utf-8" if name.startswith("utf-16") or name.startswith("utf-32") else name  # a meta can't say UTF-16


def decode_body(body: bytes, content_type: str | None, *, html: bool = True) -> tuple[str, str, str]:
    """``(text, codec, how)``: ``how`` is "bom", "header", "meta", "utf-8" (valid UTF-8) or "fallback"."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return body[len(bom):].decode(name, errors="replace"), name, "bom"
    match = _HEADER_CHARSET.search(content_type or "")
    codec = _codec(match.group(1)) if match else None
    how = "header"
    if codec is None and html:
        match = _META_CHARSET.search(body[:2048])
        codec, how = (_codec(match.group(1)) if match else None), "meta"
    if codec is not None:
        return body.decode(codec, errors="replace"), codec, how
    try:
        return body.decode("utf-8"), "utf-8", "utf-8"
    except UnicodeDecodeError:
        return body.decode("cp1252", errors="replace"), "cp1252", "fallback"


# ---------------------------------------------------------------------------------- HTML


def parse_html(text: str):
    """An lxml HTML tree of ``text`` (an XML declaration removed: lxml refuses one in a str), or None."""
    import lxml.html

    text = _XML_DECLARATION.sub("", text, count=1)
    if not text.strip():
        return None
    try:
        return lxml.html.document_fromstring(text)
    except Exception:  # noqa: BLE001 - lxml's ParserError and friends: a page with no parsable HTML
        return None


def main_text(html: str, url: str | None = None) -> str:
    """The main text of ``html`` by trafilatura (boilerplate removed), "" when it finds none."""
    import trafilatura

    text = trafilatura.extract(html, url=url, include_comments=False, include_tables=True, deduplicate=False,
                               with_metadata=False)
    return (text or "").strip()


def visible_text(html: str) -> str:
    """Every visible text of ``html`` (no boilerplate removal): scripts, styles and templates dropped,
    one line per block, runs of blank lines collapsed."""
    tree = parse_html(html)
    if tree is None:
        return ""
    for bad in tree.xpath("//script|//style|//noscript|//template|//head"):
        bad.drop_tree()
    blocks = "p div li h1 h2 h3 h4 h5 h6 tr td th section article nav header footer aside main table ul ol pre"
    for block in tree.xpath("|".join(f"//{name}" for name in blocks.split()) + "|//br"):
        if block.tag != "br":
            block.text = "\n" + (block.text or "")
        block.tail = "\n" + (block.tail or "")
    lines = [" ".join(line.split()) for line in tree.text_content().splitlines()]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _cc_id(kind: str, name: str, version: str | None) -> str:
    name = name.lower().strip("-")
    if kind in ("publicdomain", "p"):
        return {"zero": "CC0", "mark": "PDM"}.get(name, "CC-PD-" + name.upper()) + (f"-{version}" if version else "")
    return "CC-" + name.upper() + (f"-{version}" if version else "")


def licence_id(value: str) -> str | None:
    """An SPDX-style id when ``value`` names a Creative Commons licence (URL, badge or 'CC BY-SA 4.0')."""
    for pattern in (_CC, _BADGE):
        m = pattern.search(value)
        if m:
            return _cc_id(m.group(1).lower(), m.group(2), m.group(3))
    m = re.search(r"\bCC[- ]?(0|BY(?:[- ](?:SA|NC|ND))*)(?:[- ](\d\.\d))?\b", value)
    if m:
        kind = m.group(1).upper().replace(" ", "-")
        return ("CC0" if kind == "0" else "CC-" + kind) + (f"-{m.group(2)}" if m.group(2) else "")
    return None


def licence_hints(tree, base_url: str | None = None) -> list[dict[str, Any]]:
    """The licence hints of a page (see the module docstring), page order within each kind."""
    hints: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()

    def add(source: str, value: str | None) -> None:
        value = " ".join((value or "").split())
        if not value or (source, value) in seen or len(hints) >= MAX_LICENCE_HINTS:
            return
        seen.add((source, value))
        hints.append({"source": source, "value": value[:500], "licence": licence_id(value)})

    def absolute(href: str | None) -> str:
        return urljoin(base_url, href) if base_url and href else (href or "")

    for el in tree.xpath("//link[@href]|//a[@href]"):
        if "license" in (el.get("rel") or "").lower().split():
            add("rel=license", absolute(el.get("href")))
    for el in tree.xpath("//meta[@name and @content]"):
        if el.get("name").strip().lower() in _META_LICENCE_NAMES:
            add(f"meta:{el.get('name').strip().lower()}", el.get("content"))
    for el in tree.xpath("//*[@itemprop]"):
        if "license" in el.get("itemprop").lower().split():
            add("itemprop=license", absolute(el.get("href")) or el.get("content") or el.text_content())
    for script in tree.xpath("//script[@type]"):
        if "ld+json" in script.get("type").lower():
            for m in _JSONLD_LICENSE.finditer(script.text_content() or ""):
                add("json-ld", m.group(1))
    for img in tree.xpath("//img[@src]"):
        if _BADGE.search(img.get("src")):
            add("cc-badge", absolute(img.get("src")))
    for a in tree.xpath("//a[@href]"):
        if _CC.search(a.get("href")):
            add("cc-link", absolute(a.get("href")))
    return hints


def meta_robots(tree, header: str | None = None) -> set[str]:
    """The directives of ``<meta name="robots">`` (and ``X-Robots-Tag``), lowercased: noindex, nofollow, ..."""
    values = [header or ""]
    if tree is not None:
        values += [m.get("content") or "" for m in tree.xpath("//meta[@name]")
                   if m.get("name").strip().lower() in ("robots", "selfsup-collect")]
    out: set[str] = set()
    for value in values:
        for part in value.lower().replace(";", ",").split(","):
            part = part.strip().split(":")[-1].strip()  # "X-Robots-Tag: googlebot: noindex" forms
            if part == "none":
                out |= {"noindex", "nofollow"}
            elif part:
                out.add(part)
    return out


def page_links(tree, url: str) -> list[str]:
    """Absolute forms (fragments kept: normalisation drops them) of the page's ``<a>``/``<area>`` links,
    resolved against ``<base href>`` when the page has one."""
    base = url
    bases = tree.xpath("//base[@href]/@href")
    if bases:
        base = urljoin(url, bases[0].strip())
    out = []
    for href in tree.xpath("//a[@href]/@href|//area[@href]/@href"):
        href = href.strip()
        if href and not href.startswith(("#", "mailto:", "javascript:", "tel:", "data:")):
            try:
                out.append(urljoin(base, href))
            except ValueError:
                continue
    return out


# ---------------------------------------------------------------------------------- language

_IDENTIFIER = None
_IDENTIFIER_LOCK = threading.Lock()


def _identifier():
    global _IDENTIFIER
    with _IDENTIFIER_LOCK:
        if _IDENTIFIER is None:
            from py3langid.langid import MODEL_FILE, LanguageIdentifier

            if hasattr(LanguageIdentifier, "from_model_file"):  # py3langid >= 0.4
                _IDENTIFIER = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
            else:  # pragma: no cover - py3langid 0.2/0.3
                _IDENTIFIER = LanguageIdentifier.from_pickled_model(MODEL_FILE, norm_probs=True)
        return _IDENTIFIER


def language_codes() -> set[str]:
    """The languages py3langid knows (ISO 639-1 codes)."""
    ident = _identifier()
    return set(getattr(ident, "labels", None) or ident.nb_classes)


def identify_language(text: str) -> tuple[str, float]:
    """``(ISO 639-1 code, probability)`` of ``text``'s language; ``("und", 0.0)`` when it has no letters."""
    sample = text[:LANGUAGE_CHARS]
    if not any(ch.isalpha() for ch in sample):
        return "und", 0.0
    lang, score = _identifier().classify(sample)
    return str(lang), round(float(score), 4)


# ---------------------------------------------------------------------------------- a page


def extract_page(body: bytes, content_type: str | None, url: str, robots_header: str | None = None) -> dict[str, Any]:
    """Everything the crawl keeps of an HTML or plain-text response (see the module docstring):
    ``kind``, ``encoding``, ``encoding_source``, ``title``, ``text``, ``language``, ``language_score``,
    ``licences`` (hints), ``licence`` (the first CC id among them), ``canonical``, ``links``,
    ``noindex``, ``nofollow``."""
    kind = sniff_kind(content_type, body) or "html"
    decoded, codec, how = decode_body(body, content_type, html=kind == "html")
    out: dict[str, Any] = {"kind": kind, "encoding": codec, "encoding_source": how, "title": None, "canonical": None,
                           "licences": [], "links": []}
    directives = meta_robots(None, robots_header)
    if kind == "plain":
        text = decoded.strip()
    else:
        tree = parse_html(decoded)
        if tree is not None:
            titles = tree.xpath("//title")
            out["title"] = " ".join(titles[0].text_content().split()) or None if titles else None
            canonical = [el.get("href") for el in tree.xpath("//link[@href]")
                         if "canonical" in (el.get("rel") or "").lower().split()]
            out["canonical"] = urljoin(url, canonical[0].strip()) if canonical else None
            out["licences"] = licence_hints(tree, url)
            directives |= meta_robots(tree)
            out["links"] = page_links(tree, url)
        text = main_text(decoded, url) if tree is not None else ""
    out["licence"] = next((h["licence"] for h in out["licences"] if h["licence"]), None)
    out["noindex"] = "noindex" in directives
    out["nofollow"] = "nofollow" in directives
    out["text"] = text
    out["language"], out["language_score"] = identify_language(text)
    return out


# ---------------------------------------------------------------------------------- sitemaps

MAX_SITEMAP_BYTES = 50 * 1024 * 1024  # the sitemaps protocol's limit, uncompressed


def parse_sitemap(content: bytes) -> tuple[list[str], list[str]]:
    """``(page URLs, sitemap URLs)`` of a sitemap (``<urlset>``), a sitemap index (``<sitemapindex>``),
    either gzipped, or a plain-text sitemap (one URL a line). External entities and the network are off."""
    import gzip
    import zlib

    if content[:2] == b"\x1f\x8b":
        try:
            decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            content = decoder.decompress(content, MAX_SITEMAP_BYTES)
        except (zlib.error, gzip.BadGzipFile):
            return [], []
    head = content[:1024].lstrip()
    if not head.startswith(b"<"):
        lines = content.decode("utf-8", errors="replace").splitlines()
        return [s.strip() for s in lines if s.strip().lower().startswith(("http://", "https://"))], []
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, recover=True, huge_tree=False)
    try:
        root = etree.fromstring(content, parser=parser)
    except etree.XMLSyntaxError:
        return [], []
    if root is None:
        return [], []
    index = etree.QName(root).localname.lower() == "sitemapindex"
    locs = []
    for el in root.iter():
        if isinstance(el.tag, str) and etree.QName(el).localname.lower() == "loc" and el.text and el.text.strip():
            locs.append(el.text.strip())
    return ([], locs) if index else (locs, [])
