"""``selfsup collect``: a polite web crawler that writes WARC, extracted text (JSONL) and a fetch log.

Modules: :mod:`.options` (the crawl's settings), :mod:`.urls` (normalisation and scope),
:mod:`.robots` (robots.txt per RFC 9309), :mod:`.frontier` (the persistent SQLite frontier),
:mod:`.fetch` (the HTTP client: streaming, byte caps, manual redirects, retries), :mod:`.warc`
(WARC writing and reading), :mod:`.extract` (HTML -> main text, language, licence hints),
:mod:`.crawl` (the orchestrator) and :mod:`.command` (the click command). See ``docs/collect.md``.

Nothing here is imported by the plugin at start-up but :mod:`.command`, which imports only click.
"""
