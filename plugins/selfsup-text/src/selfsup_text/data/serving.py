"""Serving decoders of the text data sources: a served text (a JSON string) -> the sample its source
would yield for such a document.

Each source registers a ``decoder=`` factory ``(options, context) -> TextDecoder`` built from its
recipe options alone: it loads the tokenizer (``token_shards``: the one in ``<root>/tokenizer``, with
``meta.json``'s separator and ``manifest.json``'s cleaning settings when they are there) and reads no
document of the data set. A request field ``"text"`` holds the document; sources with
``text_pair_field`` (``jsonl``) also read ``"text_pair"`` (required, as the source skips lines
without it; it may be empty).

A served text goes through what the source does to one document, in the same order, with the
functions the source uses (:mod:`selfsup_text.data.reading`, :class:`selfsup_text.data.base.Tokenization`):

1. lone surrogates (``"\\ud800"``, which JSON can carry and no tokenizer takes) become U+FFFD, as
   ``jsonl`` and ``text_files`` replace them (counted: stat ``replaced_chars``);
2. stripped where the source's documents are stripped (``text_files``, ``warc`` and the shipped sets:
   ``embedded_corpus``, ``labelled_text``, ``similarity_pairs``; ``jsonl``, ``hf_dataset`` and ``texts``
   tokenize their text as it is). A request is one document whatever the source's ``unit``: line
   breaks in it are kept, not split into several documents;
3. over ``max_doc_chars`` characters (``text_files``, ``jsonl``, ``hf_dataset``, ``warc``, and ``token_shards``
   from ``selfsup prepare``'s settings), the source cuts a text into several documents: the decoder
   keeps the first (:func:`~selfsup_text.data.reading.cut_text`), or, with pair fields, truncates
   each text (:func:`~selfsup_text.data.reading.cut_point`), as ``jsonl`` does;
4. ``token_shards`` only: ``selfsup prepare``'s cleaning (:func:`selfsup_text.prepare.clean.clean_text`)
   with the settings in ``<root>/manifest.json`` (none when the folder has no manifest);
5. an empty or whitespace-only text (the sources drop those), or one that makes no token, is refused;
6. tokenized without specials, then made a sample by the source's :class:`Tokenization`:

   * document mode: ``{"input_ids": [L]}``, ``[CLS] ... [SEP]`` when ``add_special_tokens``, cut to
     ``max_length``; ``"sentence_starts"`` when ``sentences``; pairs ``[CLS] a [SEP] b [SEP]`` with
     ``"token_type_ids"`` (longest-first truncation). Labels and SimCSE's ``positive_ids``/``negative_ids``
     are training targets, not inputs: a decoded sample has none (nor ``"index"``);
   * window mode (``window = W``, and ``token_shards``): the document as the packed stream holds it,
     its tokens then the separator, as one window would start it: ``{"input_ids": [<= W + 1],
     "document_ids": [<= W + 1]}`` (all 0: one document), cut to ``W + 1`` tokens (the window length
     the model was trained on). A short document is not padded to the window: the source's ``collate``
     pads decoded samples like any batch of different lengths.

The source's ``min_tokens`` (a filter of training documents) is not applied: a short query is served.

Length limit (``truncate=True``: cut as the source cuts; ``truncate=False``: refused with 413):
``max_length`` in document mode, else the tokenizer's ``model_max_length`` when it names one (a
pretrained folder's tokenizer, e.g. 512), else none; ``W + 1`` tokens in window mode; and
``max_doc_chars`` characters where the source has it. The decoder cannot see the backbone (its
context has none), so a source without ``max_length`` whose tokenizer names no limit is not capped
at the backbone's positions.

Stats: ``chars`` (characters received, pair included), ``tokens`` (the document's tokens before the
``max_length``/window cut, specials excluded, pair included), ``truncated`` (1.0 when cut) and
``replaced_chars`` (lone surrogates replaced).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable

from selfsup.components import BadInput, BuildContext
from selfsup_text.data.base import Tokenization, tokenizer_for
from selfsup_text.data.reading import cut_point, cut_text, replace_invalid

FIELD, PAIR_FIELD = "text", "text_pair"
#: ``model_max_length`` at or above this is transformers' "no limit" placeholder (``int(1e30)``).
_NO_LIMIT = 1_000_000


def tokenizer_limit(tokenizer: Any) -> int | None:
    """The tokenizer's ``model_max_length`` when it names a real limit (a pretrained folder's), else None."""
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < _NO_LIMIT else None


class TextDecoder:
    """A served ``{"text": str}`` (plus ``"text_pair"`` for pair sources) -> ``(sample, stats)``, with the
    preprocessing of the source it was built for (see the module docstring).

    ``tokenization``: the source's :class:`Tokenization` (its ``max_length`` the limit in document mode);
    ``window``: window mode's ``W``; ``sentences``: add ``sentence_starts``; ``pair``: read ``text_pair``;
    ``strip``: strip the text first; ``max_chars``: the source's ``max_doc_chars``; ``cut``: a longer
    text is cut into documents (keep the first) rather than truncated; ``clean``: a ``str -> str``
    applied after the cut (``token_shards``: ``selfsup prepare``'s cleaning); ``source`` names it."""

    def __init__(self, tokenization: Tokenization, *, source: str, window: int | None = None,
                 sentences: bool = False, pair: bool = False, strip: bool = False, max_chars: int | None = None,
                 cut: bool = True, clean: Callable[[str], str] | None = None):
        if window is not None and (sentences or pair):
            raise ValueError("window mode serves packed documents: no sentence starts or pairs")
        self.tokenization, self.source, self.window = tokenization, source, window
        self.sentences, self.pair, self.strip, self.max_chars, self.cut = sentences, pair, strip, max_chars, cut
        self.clean = clean
        self.fields: Mapping[str, str] = MappingProxyType({FIELD: "text", **({PAIR_FIELD: "text"} if pair else {})})

    @property
    def max_tokens(self) -> int | None:
        """The longest sample (specials and separator included) before cutting; None: no limit."""
        if self.window is not None:
            return self.window + 1
        tok = self.tokenization
        if tok.max_length is None:
            return None
        return tok.max_length if self.pair else tok.content_max + tok.specials

    def __repr__(self) -> str:
        mode = f"window={self.window}" if self.window is not None else f"max_tokens={self.max_tokens}"
        return f"TextDecoder({self.source}: fields={list(self.fields)}, {mode}, max_chars={self.max_chars})"

    # ------------------------------------------------------------------------------ steps

    def _received(self, raw: Any, field: str) -> tuple[str, int]:
        """The field's string with lone surrogates replaced, and how many were."""
        if not isinstance(raw, Mapping) or field not in raw or raw[field] is None:
            raise BadInput(field, "missing: send the document as a JSON string" if field == FIELD
                           else f"missing: this model reads sentence pairs, send the second text as {field!r}")
        value = raw[field]
        if not isinstance(value, str):
            raise BadInput(field, f"must be a string, got {type(value).__name__}")
        return replace_invalid(value)

    def _read(self, text: str, field: str, truncate: bool) -> tuple[str, bool]:
        """``text`` as the source reads one document: stripped, cut to ``max_chars``, cleaned."""
        if self.strip:
            text = text.strip()
        cut = False
        if self.max_chars is not None and len(text) > self.max_chars:
            if not truncate:
                raise BadInput(field, f"{len(text):,} characters, the data source reads at most {self.max_chars:,} "
                               "per document (max_doc_chars); send a shorter text or serve with truncation on", 413)
            if self.cut:  # the source makes several documents of it: this is the first
                pieces = cut_text(text, self.max_chars)
                text = pieces[0] if pieces else ""
            else:
                text = text[: cut_point(text, self.max_chars)]
            cut = True
        if self.clean is not None:
            text = self.clean(text)
        return text, cut

    def _tokens(self, text: str, field: str, offsets: bool = False):
        try:
            ids, ends = self.tokenization.encode([text], offsets=offsets)
        except Exception as exc:  # noqa: BLE001 - whatever the tokenizer refuses is a bad input
            raise BadInput(field, f"cannot be tokenized: {type(exc).__name__}: {str(exc)[:200]}") from None
        return ids[0], None if ends is None else ends[0]

    def _too_long(self, tokens: int) -> BadInput:
        return BadInput(FIELD, f"{tokens} tokens, the model takes at most {self.max_tokens}; send a shorter text or "
                               "serve with truncation on", 413)

    # ------------------------------------------------------------------------------ decoding

    def __call__(self, raw: Mapping[str, Any], *, truncate: bool = True) -> tuple[dict[str, Any], dict[str, float]]:
        text, replaced = self._received(raw, FIELD)
        chars = len(text)
        text, cut = self._read(text, FIELD, truncate)
        if not text.strip():
            raise BadInput(FIELD, "empty: no characters but whitespace" + (
                " (after the cleaning of `selfsup prepare`)" if self.clean is not None else ""))
        second = None
        if self.pair:
            second, more = self._received(raw, PAIR_FIELD)
            replaced += more
            chars += len(second)
            second, cut_pair = self._read(second, PAIR_FIELD, truncate)
            cut = cut or cut_pair
        ids, ends = self._tokens(text, FIELD, offsets=self.sentences)
        if len(ids) == 0:
            raise BadInput(FIELD, "the text makes no token (only characters the tokenizer drops)")
        tok = self.tokenization
        if self.window is not None:
            stream, documents = tok.pack([ids])  # [n + 1], [n + 1]: the tokens, then the separator
            full, limit = len(stream), self.window + 1
            sample = {"input_ids": stream[:limit].clone(), "document_ids": documents[:limit].clone()}
            tokens = len(ids)
        elif second is not None:
            pair_ids, _ = self._tokens(second, PAIR_FIELD)
            input_ids, types = tok.join(ids, pair_ids)
            full, tokens = len(ids) + len(pair_ids) + 3, len(ids) + len(pair_ids)
            sample = {"input_ids": input_ids, "token_type_ids": types}
        else:
            full, tokens = len(ids) + tok.specials, len(ids)
            sample = {"input_ids": tok.wrap(ids)}
        if self.sentences:  # of the first text, as the source computes them (pairs included)
            sample["sentence_starts"] = tok.sentence_starts(text, ends)
        cut_tokens = len(sample["input_ids"]) < full
        if cut_tokens and not truncate:
            raise self._too_long(full)
        stats = {"chars": float(chars), "tokens": float(tokens), "truncated": float(cut or cut_tokens),
                 "replaced_chars": float(replaced)}
        return sample, stats


# ---------------------------------------------------------------------------------- factories


def _document_decoder(options: Any, context: BuildContext, source: str, *, strip: bool,
                      max_chars: int | None = None, pair: bool = False, cut: bool = True) -> TextDecoder:
    """A :class:`TextDecoder` with the options' tokenizer, specials, ``max_length`` (else the tokenizer's
    limit), ``window`` and ``sentences``."""
    tokenizer = tokenizer_for(options, context)
    window = getattr(options, "window", None)
    max_length = getattr(options, "max_length", None)
    if max_length is None and window is None:
        max_length = tokenizer_limit(tokenizer)
    return TextDecoder(Tokenization.of(tokenizer, options, max_length=max_length), source=source, window=window,
                       sentences=bool(getattr(options, "sentences", False)), pair=pair, strip=strip,
                       max_chars=max_chars, cut=cut)


def text_files_decoder(options: Any, context: BuildContext) -> TextDecoder:
    """``text_files``: documents are stripped and cut to ``max_doc_chars``."""
    return _document_decoder(options, context, "text_files", strip=True, max_chars=options.max_doc_chars)


def jsonl_decoder(options: Any, context: BuildContext) -> TextDecoder:
    """``jsonl``: the text as it is, cut to ``max_doc_chars`` (truncated, with pair fields); ``text_pair``
    is read when the source has ``text_pair_field``."""
    pairs = options.positive_field is not None or options.text_pair_field is not None
    return _document_decoder(options, context, "jsonl", strip=False, max_chars=options.max_doc_chars,
                             pair=options.text_pair_field is not None, cut=not pairs)


def hf_decoder(options: Any, context: BuildContext) -> TextDecoder:
    """``hf_dataset``: the text as it is, cut to ``max_doc_chars``. Needs no ``datasets`` package."""
    return _document_decoder(options, context, "hf_dataset", strip=False, max_chars=options.max_doc_chars)


def corpus_decoder(options: Any, context: BuildContext) -> TextDecoder:
    """``embedded_corpus``: its documents (articles, news items, paragraphs) are stripped text."""
    return _document_decoder(options, context, "embedded_corpus", strip=True)


def labelled_decoder(options: Any, context: BuildContext) -> TextDecoder:
    """``labelled_text``: its sentences and posts are stripped text; ``max_length`` 256 by default."""
    return _document_decoder(options, context, "labelled_text", strip=True)


def similarity_decoder(options: Any, context: BuildContext) -> TextDecoder:
    """``similarity_pairs``: its documents and words are stripped text; ``max_length`` 256 by default."""
    return _document_decoder(options, context, "similarity_pairs", strip=True)


def texts_decoder(options: Any, context: BuildContext) -> TextDecoder:
    """``texts``: the text as it is."""
    return _document_decoder(options, context, "texts", strip=False)


def shards_decoder(options: Any, context: BuildContext) -> TextDecoder:
    """``token_shards``: ``<root>/tokenizer`` (required), the separator of ``<root>/meta.json`` and the
    reading and cleaning settings of ``<root>/manifest.json`` (each when present); no shard is opened."""
    from selfsup_text.data.shards import read_meta
    from selfsup_text.tokenizers import load_tokenizer

    root = context.resolve(options.root)
    try:
        tokenizer = load_tokenizer(str(root / "tokenizer"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"token_shards: serving needs the tokenizer the shards were written with: {exc}") \
            from None
    meta = read_meta(root) if (root / "meta.json").is_file() else {}
    settings = _prepare_settings(root)
    clean = None
    if settings:
        from selfsup_text.prepare.clean import CleanOptions, clean_text

        pii = settings.get("pii") or None  # `prepare --pii`: e-mails became placeholders, not deleted
        clean_options = CleanOptions(**{k: bool(settings[k]) for k in ("nfkc", "strip_urls", "lowercase")
                                        if k in settings}, keep_emails=bool(pii))
        pii_options = None
        if pii:
            from selfsup_text.prepare.pii import PiiOptions

            pii_options = PiiOptions(**pii) if isinstance(pii, dict) else PiiOptions()

        def clean(text: str) -> str:
            text = clean_text(text, clean_options)
            if pii_options is not None:
                from selfsup_text.prepare.pii import scrub_pii

                text = scrub_pii(text, pii_options)[0]
            return text

    max_chars = settings.get("max_doc_chars")
    tokenization = Tokenization(tokenizer, add_special_tokens=False, sep_id=meta.get("sep_id"))
    return TextDecoder(tokenization, source="token_shards", window=options.window, strip=False,
                       max_chars=int(max_chars) if max_chars else None, clean=clean)


def _prepare_settings(root: Path) -> dict[str, Any]:
    """``settings`` of ``<root>/manifest.json`` (written by ``selfsup prepare``), or {} without one."""
    file = root / "manifest.json"
    if not file.is_file():
        return {}
    try:
        settings = json.loads(file.read_text(encoding="utf-8")).get("settings") or {}
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"token_shards: cannot read {file}: {exc}") from None
    return settings if isinstance(settings, dict) else {}


def warc_decoder(options: Any, context: BuildContext) -> TextDecoder:
    """``warc``: its documents are extracted page texts, stripped and cut to ``max_doc_chars``, as
    ``text_files``' are; a served text is such a text already (no HTML extraction, no language filter)."""
    return _document_decoder(options, context, "warc", strip=True, max_chars=options.max_doc_chars)
