"""Options of the text data sources (pydantic only: no torch, no tokenizers).

Every text source tokenizes with ``tokenizer`` (see :func:`selfsup_text.tokenizers.load_tokenizer`:
``"bytes"``, a shipped name such as ``"bpe-8k"``, or a tokenizer directory relative to the recipe) and
serves samples ``{"input_ids": LongTensor[L]}`` (plus ``"label"``, ``"document_ids"``,
``"sentence_starts"``, ``"positive_ids"``/``"negative_ids"`` where they apply).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from selfsup.options import ExistingDir, ExistingPath, Options

Split = Literal["all", "train", "val"]
OnError = Literal["skip", "raise"]
Unit = Literal["file", "line", "paragraph"]
#: Default ``max_doc_chars`` of the file-reading sources: far above any model context (about 25k
#: tokens of English), small enough that tokenizing one document takes tens of MB, not GB.
DEFAULT_MAX_DOC_CHARS = 100_000


# ----------------------------------------------------------------------------------- shared


class _SplitOptions(Options):
    split: Split = Field("all", description="Deterministic split of the documents: 'all', 'train' or 'val'.")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="Fraction of the documents in the 'val' split.")
    split_seed: int = Field(0, ge=0, description="Seed of the split (independent of the run seed).")
    limit: int | None = Field(None, gt=0, description="Keep only the first N documents of the split.")


class _TokenizedOptions(Options):
    tokenizer: str = Field(
        "bpe-8k",
        min_length=1,  # "" would name the recipe's own folder
        description="'bytes', a shipped tokenizer ('bpe-8k'), a tokenizer directory (relative to the recipe) or "
                    "hf:org/name[@revision] (a Hub checkpoint's, from the Hub cache, as the backbone's pretrained).",
    )
    add_special_tokens: bool = Field(True, description="Wrap each document as [CLS] ... [SEP].")
    max_length: int | None = Field(None, ge=2, description="Truncate each document to this many tokens.")


class _TextOptions(_SplitOptions, _TokenizedOptions):
    """Documents, tokenized; optionally packed into fixed windows (for CLM) or with sentence starts (NSP)."""

    window: int | None = Field(
        None,
        ge=1,
        description="Pack all documents (separated by [SEP]) into consecutive windows of window + 1 tokens.",
    )
    sentences: bool = Field(False, description="Add 'sentence_starts' (token offsets of sentence starts), for NSP.")
    min_tokens: int = Field(1, ge=1, description="Drop documents with fewer tokens than this (before specials).")

    @model_validator(mode="after")
    def _window_rules(self):
        if self.window is not None and self.sentences:
            raise ValueError("'sentences' needs whole documents: it cannot be combined with 'window'")
        return self


# ----------------------------------------------------------------------------------- sources


class TextFilesOptions(_TextOptions):
    """Plain-text files: files, folders (searched recursively) or glob patterns, relative to the recipe."""

    paths: list[str] = Field(min_length=1, description="Files, folders or glob patterns (relative to the recipe).")
    unit: Unit = Field("file", description="One document per file, per non-empty line or per blank-line block.")
    extensions: list[str] = Field(
        default_factory=lambda: [".txt", ".md", ".text"], description="File suffixes taken from folders."
    )
    encoding: str = Field("utf-8", description="Text encoding of the files.")
    on_error: OnError = Field(
        "skip", description="Unreadable files, or files mostly not text in 'encoding': skip and count them, or stop "
        "the build naming the file. (Occasional undecodable bytes become U+FFFD and are counted either way.)")
    max_doc_chars: int = Field(
        DEFAULT_MAX_DOC_CHARS, ge=100, le=100_000_000,
        description="Documents longer than this many characters are cut into several (counted); files are read in "
        "pieces of this size, so memory stays bounded whatever the line length.")


class JsonlOptions(_TextOptions):
    """JSON Lines: one object per line with a text field and optional label and pair fields."""

    path: ExistingPath = Field(description="A .jsonl file or a folder of them (relative to the recipe).")
    text_field: str = Field("text", description="Field holding the text.")
    label_field: str | None = Field(None, description="Field holding an integer or string class label.")
    positive_field: str | None = Field(None, description="Field with a positive text (SimCSE supervised).")
    negative_field: str | None = Field(None, description="Field with a hard-negative text (SimCSE supervised).")
    text_pair_field: str | None = Field(
        None, description="Field with a second text: samples become [CLS] text [SEP] pair [SEP] with token_type_ids "
        "(sentence-pair classification: entailment, paraphrase).")
    on_error: OnError = Field(
        "skip", description="Malformed lines or missing fields: skip and count them, or stop the build naming the "
        "file and line. (Undecodable bytes and lone surrogates become U+FFFD and are counted either way.)")
    max_doc_chars: int = Field(
        DEFAULT_MAX_DOC_CHARS, ge=100, le=100_000_000,
        description="Texts longer than this many characters are cut into several documents, or truncated when "
        "pair fields are set (counted).")

    @model_validator(mode="after")
    def _pairs(self):
        if self.negative_field is not None and self.positive_field is None:
            raise ValueError("negative_field needs positive_field")
        if (self.positive_field is not None or self.text_pair_field is not None) and self.window is not None:
            raise ValueError("pair fields cannot be combined with 'window'")
        if self.text_pair_field is not None and not self.add_special_tokens:
            raise ValueError("text_pair_field needs add_special_tokens (the [SEP] between the texts)")
        return self


class HFDatasetOptions(_TextOptions):
    """A Hugging Face dataset from local disk only: a ``save_to_disk`` folder (``path``), or local files
    read with a packaged builder (``builder`` + ``data_files``). Needs ``pip install 'selfsup-text[datasets]'``."""

    path: ExistingDir | None = Field(None, description="A folder written by datasets' save_to_disk.")
    builder: Literal["json", "csv", "parquet", "text"] | None = Field(
        None, description="Packaged builder for local data_files."
    )
    data_files: list[str] = Field(
        default_factory=list, description="Local files or globs for the builder (relative to the recipe)."
    )
    hf_split: str = Field("train", description="Which split of the dataset (a DatasetDict key).")
    text_field: str = Field("text", description="Column holding the text.")
    label_field: str | None = Field(None, description="Column holding an integer or string class label.")
    max_doc_chars: int = Field(
        DEFAULT_MAX_DOC_CHARS, ge=100, le=100_000_000,
        description="Texts longer than this many characters are cut into several documents (counted).")

    @model_validator(mode="after")
    def _one_input(self):
        if (self.path is None) == (self.builder is None):
            raise ValueError("give exactly one of 'path' (save_to_disk folder) or 'builder' (+ data_files)")
        if self.builder is not None and not self.data_files:
            raise ValueError("'builder' needs local 'data_files'")
        if self.path is not None and self.data_files:
            raise ValueError("'data_files' is only used with 'builder'")
        return self


class TokenShardsOptions(Options):
    """Token shards written by ``selfsup prepare``: ``<root>/<split>.bin`` + ``meta.json`` + ``tokenizer/``."""

    root: ExistingDir = Field(description="Output folder of `selfsup prepare` (relative to the recipe).")
    split: Literal["train", "val", "test"] = Field("train", description="Which shard to read.")
    window: int = Field(256, ge=1, description="Tokens per sample (each sample holds window + 1 tokens).")
    windows_per_epoch: int = Field(
        1024, ge=1, description="Samples per epoch; sample i reads the window at a position hashed from i."
    )
    position_seed: int = Field(0, ge=0, description="Seed of the index -> position hash.")


class EmbeddedCorpusOptions(_TextOptions):
    """Real English shipped with the install (gensim's test data): Wikipedia articles and Lee news."""

    name: Literal["wiki", "news", "all"] = Field("all", description="Wikipedia articles, Lee news documents, or both.")
    unit: Literal["document", "paragraph"] = Field(
        "document", description="One sample per article/news item, or per paragraph."
    )


class LabelledTextOptions(_SplitOptions, _TokenizedOptions):
    """Small labelled sets for probes: movie-review sentence polarity or mini 20-newsgroups posts."""

    set: Literal["polarity", "newsgroups"] = Field("polarity", description="Which labelled set.")
    split: Split = Field("train", description="Deterministic stratified split: 'all', 'train' or 'val'.")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Fraction of each class in the 'val' split.")
    max_length: int | None = Field(256, ge=2, description="Truncate each text to this many tokens.")


class SimilarityPairsOptions(_TokenizedOptions):
    """Human similarity ratings: Lee news documents (1,225 pairs), SimLex-999 or WordSim-353 word pairs."""

    set: Literal["lee", "simlex999", "wordsim353"] = Field("lee", description="Which rated set.")
    max_length: int | None = Field(256, ge=2, description="Truncate each text to this many tokens.")


class TextsOptions(_TextOptions):
    """Texts given inline (a recipe's few sentences, or captions another plugin's source passes when it
    builds this one by name): one document per entry, in order."""

    texts: list[str] = Field(min_length=1, description="The documents.")
    labels: list[int] | None = Field(None, description="An integer class per text (sample 'label').")

    @model_validator(mode="after")
    def _labels(self):
        if self.labels is not None and len(self.labels) != len(self.texts):
            raise ValueError(f"labels has {len(self.labels)} entries for {len(self.texts)} texts")
        return self


class WarcOptions(_TextOptions):
    """WARC and WET files (a ``selfsup collect`` crawl's ``warc/``, Common Crawl segments): the main text
    of each HTML (or plain-text) 2xx ``response`` record, and the text of each WET ``conversion`` record.
    Needs ``pip install 'selfsup-text[web]'`` (warcio, trafilatura, py3langid)."""

    paths: list[str] = Field(
        min_length=1, description="WARC/WET files (.warc, .warc.gz, .wet, .wet.gz), folders (searched recursively "
        "for them) or glob patterns, relative to the recipe.")
    languages: list[str] | None = Field(
        None, description="Keep only documents in these languages (ISO 639-1 codes such as 'en', identified by "
        "py3langid); None keeps every language.")
    min_language_score: float = Field(
        0.0, ge=0, le=1, description="With 'languages': keep a document only when py3langid's probability of its "
        "language is at least this.")
    min_chars: int = Field(200, ge=1, description="Drop documents with fewer characters than this (after "
                           "extraction).")
    extract: Literal["trafilatura", "raw"] = Field(
        "trafilatura", description="HTML records: the main text by trafilatura (boilerplate removed), or 'raw': "
        "every visible text of the page. WET conversion records are text already and read as they are either way.")
    dedup: bool = Field(True, description="Keep one copy of documents whose text is exactly the same.")
    max_records: int | None = Field(
        None, gt=0, description="Read at most this many WARC records in all (files in sorted order), e.g. to "
        "sample a large Common Crawl segment.")
    on_error: OnError = Field(
        "skip", description="Unreadable files or records (bad gzip, broken HTTP): skip and count them, or stop "
        "the build naming the file and offset.")
    max_doc_chars: int = Field(
        DEFAULT_MAX_DOC_CHARS, ge=100, le=100_000_000,
        description="Documents longer than this many characters are cut into several (counted).")

    @model_validator(mode="after")
    def _languages(self):
        if self.languages is not None:
            bad = [x for x in self.languages if not (2 <= len(x) <= 3 and x.isascii() and x.isalpha()
                                                      and x.islower())]
            if bad or not self.languages:
                raise ValueError(f"languages are lowercase ISO 639-1 codes such as 'en' or 'de', got {bad or '[]'}")
        return self
