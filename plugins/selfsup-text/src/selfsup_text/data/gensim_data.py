"""Real text that ships with the install: gensim's test data, read without torch.

* ``news``: the Lee background corpus (``lee_background.cor``), 300 Australian Broadcasting
  Corporation news documents, one per line, of which 293 are distinct (the 7 exact repeats are
  dropped, so that no document is in both the train and the val split) (Lee, Pincombe & Welsh 2005,
  "An empirical evaluation of models of text document similarity", CogSci); about 0.35 MB.
* ``wiki``: the 106 English Wikipedia articles (main namespace, redirects dropped) of gensim's
  shortened dump ``enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2``, converted
  to plain text with gensim's ``extract_pages``/``filter_wiki`` plus the clean-up below, keeping
  case and punctuation; about 2.9 MB. Paragraphs are separated by blank lines. The extracted text
  is cached under ``$SELFSUP_CACHE_DIR/text`` (default ``~/.cache/selfsup/text``), keyed by the
  dump's SHA-256, so it is converted once per install.

Also the evaluation sets: ``pang_lee_polarity.cor`` (Pang & Lee 2005 sentence polarity),
``mini_newsgroup`` (a 20-newsgroups sample), ``lee.cor`` + ``similarities0-1.txt`` (Lee et al. 2005
document similarity ratings), ``simlex999.txt`` (Hill et al. 2015) and ``wordsim353.tsv``
(Finkelstein et al. 2002).
"""

from __future__ import annotations

import bz2
import hashlib
import json
import os
import re
from functools import lru_cache
from pathlib import Path

WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
NEWS_FILE = "lee_background.cor"
_EXTRACT_VERSION = "1"  # bump when the clean-up below changes, to invalidate caches


def gensim_data_dir() -> Path:
    """gensim's ``test/test_data`` folder (installed with gensim)."""
    try:
        import gensim
    except ImportError:  # pragma: no cover - gensim is a dependency of the plugin
        raise ImportError("the embedded corpus needs gensim: pip install gensim") from None
    path = Path(os.path.dirname(gensim.__file__)) / "test" / "test_data"
    if not path.is_dir():
        raise FileNotFoundError(f"gensim's test data folder is missing: {path} (reinstall gensim)")
    return path


def datafile(name: str) -> Path:
    path = gensim_data_dir() / name
    if not path.exists():
        raise FileNotFoundError(f"gensim test data file not found: {path}")
    return path


def cache_dir() -> Path:
    """``$SELFSUP_CACHE_DIR/text`` or ``~/.cache/selfsup/text`` (created)."""
    root = os.environ.get("SELFSUP_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "selfsup"
    path = base / "text"
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------- news


@lru_cache(maxsize=1)
def news_documents() -> tuple[str, ...]:
    """The 293 distinct Lee background news documents (lines of ``lee_background.cor``, first occurrences)."""
    text = datafile(NEWS_FILE).read_text(encoding="utf-8", errors="replace")
    lines = (line.strip() for line in text.splitlines() if line.strip())
    return tuple(dict.fromkeys(lines))  # ordered de-duplication


# ------------------------------------------------------------------------------------- wiki

_QUOTES = re.compile(r"'{2,}")  # wiki bold/italic markers
_HEADING = re.compile(r"^\s*=+\s*(.*?)\s*=+\s*$")
_LIST = re.compile(r"^\s*[*#:;]+\s*")
_EMPTY_PARENS = re.compile(r"\(\s*[,;:]?\s*\)")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?)])")
_SPACES = re.compile(r"[ \t\u00a0]+")
_TABLE_LINE = re.compile(r"^\s*(\{\||\|\}|\||!)")
# Sections at the end of an article that hold only links and citations.
_TAIL_SECTIONS = {"see also", "references", "external links", "further reading", "notes", "bibliography",
                  "sources", "citations", "footnotes"}


def clean_wiki_text(markup_free: str) -> str:
    """Plain paragraphs from ``filter_wiki`` output: quotes, list markers and tables removed,
    headings kept as one-line paragraphs, link/citation tail sections dropped, paragraphs joined
    by one blank line."""
    paragraphs: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            paragraphs.append(" ".join(current))
            current.clear()

    for raw in markup_free.splitlines():
        heading = _HEADING.match(raw)
        if heading:
            flush()
            title = _QUOTES.sub("", heading.group(1)).strip()
            if title.lower() in _TAIL_SECTIONS:
                break
            if title:
                paragraphs.append(title)
            continue
        if not raw.strip():
            flush()
            continue
        if _TABLE_LINE.match(raw):
            continue
        line = _LIST.sub("", raw)
        line = _QUOTES.sub("", line)
        line = _EMPTY_PARENS.sub("", line)
        line = _SPACES.sub(" ", line).strip()
        line = _SPACE_BEFORE_PUNCT.sub(r"\1", line)
        if line:
            current.append(line)
    flush()
    # A heading followed directly by another heading (an empty section) is noise.
    kept = [p for i, p in enumerate(paragraphs) if not (_is_heading_like(p) and
            (i + 1 == len(paragraphs) or _is_heading_like(paragraphs[i + 1])))]
    return "\n\n".join(kept)


def _is_heading_like(paragraph: str) -> bool:
    return len(paragraph) < 80 and not paragraph.rstrip().endswith((".", "!", "?", ":", '"'))


def _extract_wiki(dump: Path) -> list[dict[str, str]]:
    from gensim.corpora.wikicorpus import IGNORED_NAMESPACES, extract_pages, filter_wiki

    articles = []
    with bz2.open(dump, "rb") as f:
        for title, text, _pageid in extract_pages(f):
            if text.lstrip().lower().startswith("#redirect"):
                continue
            if any(title.startswith(ns + ":") for ns in IGNORED_NAMESPACES):
                continue
            body = clean_wiki_text(filter_wiki(text))
            if len(body) >= 200:
                articles.append({"title": title, "text": body})
    return articles


@lru_cache(maxsize=1)
def wiki_articles() -> tuple[str, ...]:
    """The plain text of the Wikipedia articles of gensim's shortened dump (cached on disk)."""
    dump = datafile(WIKI_DUMP)
    key = f"{file_sha256(dump)[:16]}-v{_EXTRACT_VERSION}"
    cached = cache_dir() / f"enwiki-shortened-{key}.jsonl"
    if not cached.is_file():
        articles = _extract_wiki(dump)
        tmp = cached.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "w", encoding="utf-8") as f:
            for article in articles:
                f.write(json.dumps(article, ensure_ascii=False) + "\n")
        os.replace(tmp, cached)  # atomic: concurrent builders write the same content
    with open(cached, encoding="utf-8") as f:
        return tuple(json.loads(line)["text"] for line in f if line.strip())


def corpus_documents(name: str) -> list[str]:
    """Documents of the embedded corpus ``name`` ("wiki", "news" or "all" = wiki then news)."""
    if name == "wiki":
        return list(wiki_articles())
    if name == "news":
        return list(news_documents())
    if name == "all":
        return list(wiki_articles()) + list(news_documents())
    raise ValueError(f"embedded corpus name must be 'wiki', 'news' or 'all', got {name!r}")


def split_paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks of ``text``, stripped, empty ones dropped."""
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


# ------------------------------------------------------------------------------------- evaluation sets


def read_legacy_text(path: Path) -> str:
    """UTF-8, else Windows-1252 (some of gensim's older files), else Latin-1 (never fails)."""
    raw = path.read_bytes()
    for encoding in ("utf-8", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def polarity() -> tuple[list[str], list[int], list[str]]:
    """Pang & Lee (2005) sentence polarity sample: 200 movie-review sentences, 100 per class.
    Returns ``(texts, labels, label_names)`` with label names ``["neg", "pos"]``."""
    names = ["neg", "pos"]
    texts, labels = [], []
    for line in read_legacy_text(datafile("pang_lee_polarity.cor")).splitlines():
        if not line.strip():
            continue
        tag, _, text = line.strip().partition(" ")
        if not tag.startswith("__label__") or tag[len("__label__"):] not in names:
            raise ValueError(f"pang_lee_polarity.cor: unexpected label {tag!r}")
        texts.append(text.strip())
        labels.append(names.index(tag[len("__label__"):]))
    return texts, labels, names


class _BunchUnpickler:
    """Unpickles the old scikit-learn ``Bunch`` of ``mini_newsgroup`` as a plain dict."""

    @staticmethod
    def load(raw: bytes) -> dict:
        import io
        import pickle

        class Unpickler(pickle.Unpickler):
            def find_class(self, module: str, name: str):
                if module.startswith("sklearn.") and name == "Bunch":
                    return dict
                if module.split(".")[0] not in ("copy_reg", "copyreg", "__builtin__", "builtins", "numpy"):
                    raise pickle.UnpicklingError(f"mini_newsgroup: unexpected global {module}.{name}")
                return super().find_class(module, name)

        return Unpickler(io.BytesIO(raw), encoding="latin1").load()


def newsgroups() -> tuple[list[str], list[int], list[str]]:
    """gensim's 200-post sample of 20 Newsgroups (Lang 1995): alt.atheism vs sci.space, 100 each.

    Only the message bodies are kept: the headers (which name the newsgroup) are removed, as with
    scikit-learn's ``fetch_20newsgroups(remove=("headers",))``."""
    import zlib

    bunch = _BunchUnpickler.load(zlib.decompress(datafile("mini_newsgroup").read_bytes()))
    texts = []
    for post in bunch["data"]:
        _headers, _, body = post.partition("\n\n")
        texts.append(body.strip())
    return texts, [int(t) for t in bunch["target"]], [str(n) for n in bunch["target_names"]]


def lee_similarity() -> tuple[list[str], list[tuple[int, int]], list[float]]:
    """Lee et al. (2005): 50 news documents and their mean human similarity ratings (scaled to 0..1),
    as the 1,225 pairs ``i < j`` of the upper triangle of ``similarities0-1.txt``."""
    docs = [line.strip() for line in read_legacy_text(datafile("lee.cor")).splitlines() if line.strip()]
    rows = [line.split() for line in datafile("similarities0-1.txt").read_text().splitlines() if line.strip()]
    matrix = [[float(x) for x in row] for row in rows]
    if len(docs) != 50 or len(matrix) != 50 or any(len(row) != 50 for row in matrix):
        raise ValueError("lee.cor / similarities0-1.txt: expected 50 documents and a 50 x 50 matrix")
    pairs = [(i, j) for i in range(50) for j in range(i + 1, 50)]
    return docs, pairs, [matrix[i][j] for i, j in pairs]


def word_pairs(name: str) -> tuple[list[str], list[tuple[int, int]], list[float]]:
    """SimLex-999 (Hill et al. 2015) or WordSim-353 (Finkelstein et al. 2002) as ``(words, pairs,
    ratings)``: the distinct words (in first-seen order), index pairs into them, mean human ratings."""
    file = {"simlex999": "simlex999.txt", "wordsim353": "wordsim353.tsv"}[name]
    words: list[str] = []
    index: dict[str, int] = {}
    pairs, scores = [], []
    for line in datafile(file).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        a, b, score = line.split("\t")[:3]
        for w in (a, b):
            if w not in index:
                index[w] = len(words)
                words.append(w)
        pairs.append((index[a], index[b]))
        scores.append(float(score))
    return words, pairs, scores
