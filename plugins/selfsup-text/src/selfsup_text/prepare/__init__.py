"""``selfsup prepare``: raw text in, cleaned, de-duplicated, split and tokenized shards out.

Steps, one module each: :mod:`.inputs` (read files, folders, JSONL or the embedded corpus),
:mod:`.clean` (Unicode NFKC, control characters, URLs, whitespace, optional lowercase),
:mod:`.pii` (e-mails, phone numbers, IP addresses to placeholders), :mod:`.language` (py3langid),
:mod:`.quality` (the rule-based filters of :mod:`.gopher` and :mod:`.c4`, counted per rule),
:mod:`.dedup` (exact and MinHash-LSH near duplicates), :mod:`.split` (deterministic shuffle and
train/val/test split), :mod:`.shards` (tokenize into ``<split>.bin`` + ``meta.json`` + ``tokenizer/``)
and :mod:`.manifest` (counts). :mod:`.command` wires them into the click command.
"""
