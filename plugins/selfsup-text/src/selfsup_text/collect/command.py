"""The ``selfsup collect`` command: a polite crawl into a folder of WARC, text and logs (docs/collect.md).

Example::

    selfsup collect https://example.org/ --out crawl/ --max-pages 200 --contact https://example.org/me
    selfsup collect --out crawl/                  # resume it (settings read from crawl/crawl.json)
    selfsup collect --out crawl/ --max-pages 500  # resume it and go on to 500 pages

Only click and the standard library are imported here; the crawler (httpx, warcio, trafilatura,
py3langid: ``pip install 'selfsup-text[web]'``) is imported when the command runs.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.I)
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "kib": 2**10, "m": 10**6, "mb": 10**6, "mib": 2**20,
          "g": 10**9, "gb": 10**9, "gib": 2**30, "t": 10**12, "tb": 10**12, "tib": 2**40}
#: CLI parameter -> CrawlOptions field.
FIELDS = {
    "domains": "allowed_domains", "allow": "allow_paths", "deny": "deny_paths", "max_pages": "max_pages",
    "max_bytes": "max_bytes", "max_page_bytes": "max_page_bytes", "max_depth": "max_depth", "delay": "delay",
    "concurrency": "concurrency", "per_host": "per_host_concurrency", "timeout": "timeout", "retries": "retries",
    "backoff": "backoff", "max_retry_wait": "max_retry_wait", "max_redirects": "max_redirects",
    "user_agent": "user_agent", "contact": "contact", "languages": "languages", "min_text_chars": "min_text_chars",
    "sitemaps": "sitemaps", "max_sitemaps": "max_sitemaps", "warc_max_bytes": "warc_max_bytes",
    "trust_env": "trust_env",
}
LISTS = {"domains", "allow", "deny", "languages"}


class ByteSize(click.ParamType):
    """A byte count: ``5000000``, ``5MB``, ``5MiB``, ``1.5G``."""

    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        match = _SIZE.match(str(value))
        unit = (match.group(2) or "").lower() if match else ""
        if not match or unit not in _UNITS:
            self.fail(f"{value!r} is not a size (e.g. 5000000, 5MB, 5MiB)", param, ctx)
        return int(float(match.group(1)) * _UNITS[unit])


def add_command(cli: click.Group) -> None:
    """Register ``collect`` on the ``selfsup`` command group."""
    cli.add_command(collect)


@click.command("collect")
@click.argument("seeds", nargs=-1)
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Crawl folder (created).")
@click.option("--seeds-file", type=click.Path(exists=True, dir_okay=False), help="More seeds, one URL a line.")
@click.option("--fresh", is_flag=True, help="Delete the crawl already in --out and start over.")
@click.option("--domain", "domains", multiple=True, help="Allowed domain (with its subdomains); repeatable. "
              "Default: the seeds' hosts.")
@click.option("--allow", multiple=True, help="Only fetch paths with this prefix (or 're:REGEX'); repeatable.")
@click.option("--deny", multiple=True, help="Never fetch paths with this prefix (or 're:REGEX'); repeatable.")
@click.option("--max-pages", type=click.IntRange(1), default=1000, show_default=True, help="Page fetches in all.")
@click.option("--max-bytes", type=ByteSize(), default="1GB", show_default=True, help="Bytes downloaded in all.")
@click.option("--max-page-bytes", type=ByteSize(), default="5MB", show_default=True,
              help="Longer responses are cut there and counted too_large.")
@click.option("--max-depth", type=click.IntRange(0), default=5, show_default=True, help="Link hops from a seed.")
@click.option("--delay", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Seconds between requests to one host (a larger robots.txt Crawl-delay wins).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=8, show_default=True,
              help="Requests in flight, all hosts together.")
@click.option("--per-host", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Requests in flight to one host.")
@click.option("--timeout", type=click.FloatRange(0, min_open=True), default=30.0, show_default=True,
              help="Seconds one request may take in all.")
@click.option("--retries", type=click.IntRange(0, 10), default=3, show_default=True,
              help="Retries after a timeout, connection error, 429 or 5xx.")
@click.option("--backoff", type=click.FloatRange(0), default=1.0, show_default=True,
              help="Retry k waits BACKOFF * 2**(k-1) s, or the Retry-After asked for.")
@click.option("--max-retry-wait", type=click.FloatRange(0), default=300.0, show_default=True,
              help="A longer Retry-After gives the URL up.")
@click.option("--max-redirects", type=click.IntRange(0, 30), default=10, show_default=True,
              help="Redirect hops followed from one URL.")
@click.option("--user-agent", default=None, help="User-Agent (default: selfsup-collect/<version> (+CONTACT)).")
@click.option("--contact", default=None, help="URL or e-mail where site owners can reach you (in the User-Agent).")
@click.option("--language", "languages", multiple=True,
              help="Keep only pages in this language in pages.jsonl (ISO 639-1, e.g. en); repeatable.")
@click.option("--min-text-chars", type=click.IntRange(0), default=200, show_default=True,
              help="Pages with less main text are not written to pages.jsonl.")
@click.option("--sitemaps/--no-sitemaps", default=True, show_default=True,
              help="Queue the URLs of the seed hosts' sitemaps.")
@click.option("--max-sitemaps", type=click.IntRange(0), default=50, show_default=True,
              help="Sitemap files fetched in all.")
@click.option("--warc-max-bytes", type=ByteSize(), default="1GB", show_default=True,
              help="Start a new WARC file past this size.")
@click.option("--trust-env", is_flag=True, help="Use proxy settings from the environment (HTTP_PROXY, ...).")
@click.option("--quiet", "-q", is_flag=True, help="No progress lines.")
@click.pass_context
def collect(ctx, seeds, out, seeds_file, fresh, quiet, **params) -> None:
    """Crawl from SEEDS (http/https URLs) politely into --out: WARC files, pages.jsonl (main text,
    language, licence hints), fetches.jsonl (every request) and summary.json.

    Honours robots.txt (and its Crawl-delay), keeps to the seeds' hosts (or --domain), and stops at
    --max-pages/--max-bytes. Run the same command again (or just `selfsup collect --out DIR`) to
    resume a stopped or killed crawl: no page already stored is fetched again. Changing the scope
    (seeds, domains, paths, depth, languages, ...) of an existing crawl is refused: use --fresh or
    another --out. Limits and pacing may change on resume.
    """
    try:
        from selfsup_text.collect.crawl import OPTIONS, Crawler, CrawlFolderError, prepare_folder
        from selfsup_text.collect.options import CrawlOptions
    except ImportError as exc:
        click.echo(f"error: selfsup collect needs the web extra ({exc}): pip install 'selfsup-text[web]'", err=True)
        sys.exit(2)
    import json

    from pydantic import ValidationError

    seed_list = list(seeds)
    if seeds_file:
        seed_list += [s.strip() for s in Path(seeds_file).read_text(encoding="utf-8").splitlines()
                      if s.strip() and not s.lstrip().startswith("#")]
    given = {}
    for name, field in FIELDS.items():
        source = ctx.get_parameter_source(name)
        if source is not None and source.name == "COMMANDLINE":
            value = params[name]
            given[field] = list(value) if name in LISTS else value
    out_dir = Path(out)
    stored_file = out_dir / OPTIONS
    try:
        if stored_file.is_file() and not fresh:
            stored = json.loads(stored_file.read_text(encoding="utf-8"))["options"]
            if seed_list:
                given["seeds"] = seed_list
            options = CrawlOptions.model_validate({**stored, **given})
        elif seed_list:
            defaults = {FIELDS[name]: (list(v) if name in LISTS else v) for name, v in params.items()
                        if name in FIELDS and not (name in LISTS and not v)}
            options = CrawlOptions.model_validate({**defaults, **given, "seeds": seed_list})
        else:
            options = None
        options, resumed = prepare_folder(out_dir, options, fresh=fresh)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(problems) from None
    except (CrawlFolderError, ValueError, KeyError) as exc:
        raise click.UsageError(str(exc)) from None
    if options.contact is None and options.user_agent is None and not quiet:
        click.echo("note: no --contact given; site owners cannot reach you from the User-Agent", err=True)
    log = (lambda message: None) if quiet else (lambda message: click.echo(message, err=True))
    if resumed:
        log(f"resuming the crawl in {out_dir}")
    summary = Crawler(options, out_dir, log=log).run()
    errors = ", ".join(f"{k} {v}" for k, v in summary["errors"].items()) or "none"
    click.echo(f"{summary['fetched']} pages fetched, {summary['pages_written']} written to pages.jsonl; "
               f"{summary['robots_disallowed']} disallowed by robots.txt, {summary['offsite']} off-site, "
               f"{summary['duplicate_url']} duplicate URLs, {summary['duplicate_content']} duplicate contents, "
               f"{summary['too_large']} too large, {summary['non_html']} not HTML; errors: {errors}; "
               f"{summary['retries']} retries; {summary['queued']} still queued")
    if summary["stopped_by"] == "interrupted":
        click.echo(f"interrupted: run `selfsup collect --out {out_dir}` to resume", err=True)
        sys.exit(130)
    if not summary["complete"]:
        click.echo(f"stopped by {summary['stopped_by']}; resume with a larger limit to go on", err=True)
    click.echo(f"wrote {out_dir}/ (warc/, pages.jsonl, fetches.jsonl, summary.json, frontier.sqlite)")
