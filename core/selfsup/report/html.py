"""The report page: one HTML string with inline styles, no script, and every text escaped.

Helpers return :class:`Markup` (HTML this module made); anything else given to them is escaped.
The page's Content-Security-Policy allows images from ``data:`` URIs and inline styles only, so
nothing in it can make a request, even a string a plugin or a recipe put there.
"""

from __future__ import annotations

import base64
import html as _html
import json
import re
from typing import Any, Iterable, Mapping, Sequence

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
main{max-width:1100px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:26px;margin:8px 0 2px}h2{font-size:20px;margin:0 0 12px;border-bottom:1px solid #e1e4ea;padding-bottom:6px}
h3{font-size:16px;margin:18px 0 8px}.sub{color:#5b6475;margin:0 0 16px}
section{background:#fff;border:1px solid #e1e4ea;border-radius:8px;padding:18px 22px;margin:18px 0}
nav{margin:8px 0 0}nav a{margin-right:14px;color:#2459c7;text-decoration:none;white-space:nowrap}
table{border-collapse:collapse;margin:8px 0;font-size:14px}th,td{border-bottom:1px solid #eceef2;padding:4px 10px;
text-align:left;vertical-align:top}th{background:#f1f3f6;font-weight:600}td.num{text-align:right;
font-variant-numeric:tabular-nums}
figure{margin:10px 0 16px}figure img{max-width:100%;height:auto;border:1px solid #eceef2}
figcaption{color:#5b6475;font-size:13px}
pre{background:#f1f3f6;padding:12px 14px;border-radius:6px;white-space:pre-wrap;overflow-wrap:anywhere;font-size:13px;
line-height:1.45}
.banner{border-radius:8px;padding:12px 16px;margin:12px 0;font-weight:500}
.warn{background:#fff4e0;border:1px solid #f0b34a}.error{background:#fde8e8;border:1px solid #e06666}
.note{color:#5b6475}.failed{background:#fde8e8;border:1px solid #e06666;border-radius:6px;padding:8px 12px}
.from{color:#8a92a3;font-size:12px;margin:-8px 0 10px}
@media print{body{background:#fff}section{break-inside:avoid;border:none}nav{display:none}}
"""


class Markup(str):
    """HTML made by this module: inserted as it is, never escaped again."""


def esc(value: Any) -> Markup:
    """``value`` as text in HTML (``<``, ``&`` and quotes escaped); :class:`Markup` is kept."""
    return value if isinstance(value, Markup) else Markup(_html.escape(str(value), quote=True))


def anchor(title: str) -> str:
    """An id for a section title: lower case letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "section"


def cell(value: Any) -> tuple[Markup, bool]:
    """A table cell's HTML and whether it is a number (right-aligned)."""
    if isinstance(value, Markup):
        return value, False
    if isinstance(value, bool) or value is None:
        return esc("" if value is None else value), False
    if isinstance(value, int):
        return esc(value), True
    if isinstance(value, float):
        return esc(f"{value:.4g}"), True
    if isinstance(value, (dict, list, tuple)):
        return esc(json.dumps(value, default=str)), False
    return esc(value), False


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> Markup:
    """A table of ``rows`` (dicts); the columns are ``columns`` or the keys in first-seen order."""
    if not rows:
        return Markup("")
    columns = list(columns or dict.fromkeys(k for row in rows for k in row))
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            text, number = cell(row.get(column))
            cells.append(f'<td class="num">{text}</td>' if number else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return Markup(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def figure(png: bytes, caption: str = "", alt: str = "") -> Markup:
    """A PNG embedded as a base64 ``data:`` URI, with an optional caption."""
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("a report figure must be PNG data (a matplotlib Figure is converted for you)")
    data = base64.b64encode(png).decode("ascii")
    text = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return Markup(f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt or caption)}">{text}</figure>')


def paragraph(text: str, kind: str = "") -> Markup:
    """A paragraph of plain text; ``kind`` ``"note"`` greys it, ``"failed"`` marks a failure."""
    css = f' class="{esc(kind)}"' if kind else ""
    return Markup(f"<p{css}>{esc(text)}</p>")


def banner(text: str, level: str = "warn") -> Markup:
    """A coloured box at the top of the page (``level``: ``"warn"`` or ``"error"``)."""
    return Markup(f'<div class="banner {esc(level)}" role="alert">{esc(text)}</div>')


def pre(text: str) -> Markup:
    """Preformatted text (a recipe, a traceback)."""
    return Markup(f"<pre>{esc(text)}</pre>")


def heading(text: str, level: int = 3) -> Markup:
    return Markup(f"<h{level}>{esc(text)}</h{level}>")


def link(href: str, text: str) -> Markup:
    """A link to a file beside the report (a relative path); anything with a scheme is refused."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", href) or href.startswith("//"):
        raise ValueError(f"report links must be relative paths, got {href!r}")
    return Markup(f'<a href="{esc(href)}">{esc(text)}</a>')


def details(summary: str, body: Iterable[str]) -> Markup:
    """A collapsed block (opens on click, no script)."""
    return Markup(f"<details><summary>{esc(summary)}</summary>{''.join(map(esc, body))}</details>")


def section(title: str, body: Iterable[str], *, ident: str, source: str = "") -> Markup:
    """A titled ``<section>`` with id ``ident``; ``source`` names the plugin that contributed it."""
    origin = f'<p class="from">from {esc(source)}</p>' if source else ""
    return Markup(f'<section id="{esc(ident)}"><h2>{esc(title)}</h2>{origin}{"".join(map(esc, body))}</section>')


def page(title: str, subtitle: str, banners: Sequence[str], sections: Sequence[tuple[str, Sequence[str], str]]) -> str:
    """The whole document. ``sections``: ``(title, body parts, source plugin or "")``, each given a
    unique id that the navigation at the top links to."""
    used: set[str] = set()
    parts, nav = [], []
    for name, body, source in sections:
        ident, n = anchor(name), 2
        while ident in used:
            ident, n = f"{anchor(name)}-{n}", n + 1
        used.add(ident)
        nav.append(f'<a href="#{esc(ident)}">{esc(name)}</a>')
        parts.append(section(name, body, ident=ident, source=source))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n<body><main>"
        f"<header><h1>{esc(title)}</h1><p class=\"sub\">{esc(subtitle)}</p>"
        f"<nav>{''.join(nav)}</nav></header>\n{''.join(map(esc, banners))}\n" + "\n".join(parts) +
        "\n</main></body></html>\n"
    )
