"""A small reader of the WordNet 3.0 database files (the WNDB format, wndb(5WN)), for EDA's synonyms.

WordNet (Miller 1995, "WordNet: A Lexical Database for English", Communications of the ACM 38(11);
Fellbaum 1998, "WordNet: An Electronic Lexical Database", MIT Press) ships as plain text files:

* ``index.<pos>`` (``pos`` = noun, verb, adj, adv): one line per lemma, sorted,
  ``lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt synset_offset...``, with the
  synset offsets in sense order (most frequent sense first); lemmas are lower case, collocations
  joined by underscores;
* ``data.<pos>``: one line per synset, found by its byte offset,
  ``synset_offset lex_filenum ss_type w_cnt word lex_id [word lex_id...] p_cnt [ptr...] | gloss``,
  ``w_cnt`` in hexadecimal, adjectives possibly followed by a syntactic marker (``(a)``, ``(p)``, ``(ip)``);
* ``<pos>.exc``: irregular inflections, ``inflected_form base_form...`` (``geese goose``).

Licence and copyright lines at the top of each file start with two spaces and are skipped.

Why not nltk's reader: nltk's ``WordNetCorpusReader`` needs a ``lexnames`` file, which Debian's
``wordnet-base`` package does not ship, and nltk only reads corpora from its own data path. The format
is simple and documented, so this module reads it directly: the index and exception lists are loaded
into dicts on first use (about 0.5 s and 30 MB for the four parts of speech), synsets are read from a
memory map of the data file at their offset (safe to share with forked data-loader workers).

Base forms follow WordNet's Morphy (morph(7WN)): the exception list, the word itself, then the
detachment rules (``-s``, ``-es``, ``-ies`` -> ``-y``, ``-ed``, ``-ing``, ``-er``, ``-est``, ...)
applied until a form in the index is found.

The database is found at ``directory``, else ``$WNSEARCHDIR``, else ``$WNHOME/dict``, else
``/usr/share/wordnet`` (Debian and Ubuntu: ``apt-get install wordnet-base``).
"""

from __future__ import annotations

import mmap
import os
import threading
from dataclasses import dataclass
from pathlib import Path

#: WordNet's parts of speech and the file name part of each.
POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
DEFAULT_DIR = Path("/usr/share/wordnet")
INSTALL_HINT = ("install WordNet 3.0 (Debian/Ubuntu: `apt-get install wordnet-base`, which puts it in "
                "/usr/share/wordnet), or point wordnet_dir (or $WNSEARCHDIR) at a folder holding its "
                "index.noun, data.noun, ... files")

#: Morphy's detachment rules (morph(7WN)): (suffix, replacement) per part of speech.
MORPHY_RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "n": (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"), ("men", "man"),
          ("ies", "y")),
    "v": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")),
    "a": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "r": (),
}


@dataclass(frozen=True)
class Synset:
    """One synset of a data file: its ``offset`` in ``data.<pos>``, ``pos`` (the index's: n, v, a, r),
    ``ss_type`` (``s`` for adjective satellites), ``lex_filenum``, ``words`` (as entered: case kept,
    underscores for spaces, syntactic markers removed) and ``gloss``."""

    offset: int
    pos: str
    ss_type: str
    lex_filenum: int
    words: tuple[str, ...]
    gloss: str

    @property
    def lemmas(self) -> tuple[str, ...]:
        """The words with spaces instead of underscores (``railway car``)."""
        return tuple(w.replace("_", " ") for w in self.words)


def find_wordnet_dir(directory: str | os.PathLike | None = None) -> Path:
    """The WordNet database folder: ``directory``, else ``$WNSEARCHDIR``, else ``$WNHOME/dict``, else
    ``/usr/share/wordnet``. Raises ``FileNotFoundError`` naming how to install it when the folder
    lacks the database files."""
    if directory is not None:
        path, origin = Path(directory).expanduser(), "wordnet_dir"
    elif os.environ.get("WNSEARCHDIR"):
        path, origin = Path(os.environ["WNSEARCHDIR"]), "$WNSEARCHDIR"
    elif os.environ.get("WNHOME"):
        path, origin = Path(os.environ["WNHOME"]) / "dict", "$WNHOME/dict"
    else:
        path, origin = DEFAULT_DIR, "the default"
    missing = [f"{kind}.{name}" for name in POS_FILES.values() for kind in ("index", "data")
               if not (path / f"{kind}.{name}").is_file()]
    if missing:
        what = "does not exist" if not path.exists() else f"lacks {', '.join(missing)}"
        raise FileNotFoundError(f"WordNet not found: {path} ({origin}) {what}; {INSTALL_HINT}")
    return path


class WordNet:
    """The WordNet database in ``directory`` (see :func:`find_wordnet_dir`): :meth:`synsets`,
    :meth:`synonyms`, :meth:`morphy`, :meth:`lemma_offsets`, :meth:`exceptions`. Thread-safe; picklable
    (a copy reopens the files)."""

    def __init__(self, directory: str | os.PathLike | None = None):
        self.directory = find_wordnet_dir(directory)
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._index: dict[str, dict[str, tuple[int, ...]]] = {}
        self._exceptions: dict[str, dict[str, tuple[str, ...]]] = {}
        self._maps: dict[str, mmap.mmap] = {}
        self._synsets: dict[tuple[str, int], Synset] = {}

    def __getstate__(self) -> dict:
        return {"directory": self.directory}

    def __setstate__(self, state: dict) -> None:
        self.directory = state["directory"]
        self._lock = threading.Lock()
        self._reset()

    # ------------------------------------------------------------------ files
    def lemma_offsets(self, pos: str) -> dict[str, tuple[int, ...]]:
        """``index.<pos>``: lemma (lower case, underscores) -> synset offsets in sense order."""
        _check_pos(pos)
        table = self._index.get(pos)
        if table is None:
            with self._lock:
                table = self._index.get(pos)
                if table is None:
                    table = self._index[pos] = _read_index(self.directory / f"index.{POS_FILES[pos]}")
        return table

    def exceptions(self, pos: str) -> dict[str, tuple[str, ...]]:
        """``<pos>.exc``: inflected form -> base forms (empty when the file is absent)."""
        _check_pos(pos)
        table = self._exceptions.get(pos)
        if table is None:
            with self._lock:
                table = self._exceptions.get(pos)
                if table is None:
                    table = self._exceptions[pos] = _read_exceptions(self.directory / f"{POS_FILES[pos]}.exc")
        return table

    def synset(self, pos: str, offset: int) -> Synset:
        """The synset at byte ``offset`` of ``data.<pos>``."""
        _check_pos(pos)
        key = (pos, int(offset))
        found = self._synsets.get(key)
        if found is not None:
            return found
        data = self._map(pos)
        end = data.find(b"\n", offset)
        line = data[offset : end if end >= 0 else len(data)].decode("utf-8", errors="replace")
        synset = _parse_synset(line, pos, offset, self.directory)
        self._synsets[key] = synset
        return synset

    def _map(self, pos: str) -> mmap.mmap:
        data = self._maps.get(pos)
        if data is None:
            with self._lock:
                data = self._maps.get(pos)
                if data is None:
                    with open(self.directory / f"data.{POS_FILES[pos]}", "rb") as fh:
                        data = self._maps[pos] = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        return data

    # ------------------------------------------------------------------ lookups
    def morphy(self, word: str, pos: str) -> list[str]:
        """Base forms of ``word`` in ``pos`` that are in the index (Morphy): the exception list's
        forms, else the word itself and the forms one detachment rule gives, else rules applied again
        until some form is in the index. ``[]`` when none is."""
        _check_pos(pos)
        form = word.strip().lower().replace(" ", "_")
        index = self.lemma_offsets(pos)

        def known(forms: list[str]) -> list[str]:
            return list(dict.fromkeys(f for f in forms if f in index))

        def detach(forms: list[str]) -> list[str]:
            return [f[: len(f) - len(old)] + new for f in forms for old, new in MORPHY_RULES[pos]
                    if f.endswith(old) and len(f) > len(old)]

        exceptional = self.exceptions(pos).get(form)
        if exceptional:
            return known([form, *exceptional])
        forms = detach([form])
        found = known([form, *forms])
        while not found and forms:
            forms = detach(forms)
            found = known(forms)
        return found

    def synsets(self, word: str, pos: str | None = None, *, senses: int | None = None) -> list[Synset]:
        """The synsets of ``word`` (any inflected form, through :meth:`morphy`), parts of speech in the
        order n, v, a, r and senses in WordNet's order; ``senses`` keeps the first N of each base form."""
        out: list[Synset] = []
        seen: set[tuple[str, int]] = set()
        for p in ([pos] if pos else list(POS_FILES)):
            index = self.lemma_offsets(p)
            for base in self.morphy(word, p):
                offsets = index[base]
                for offset in offsets[:senses] if senses is not None else offsets:
                    if (p, offset) not in seen:
                        seen.add((p, offset))
                        out.append(self.synset(p, offset))
        return out

    def synonyms(self, word: str, pos: str | None = None, *, senses: int | None = None) -> list[str]:
        """Every lemma of every synset of ``word``, spaces for underscores, in sense order without
        repeats, leaving out ``word`` itself and its base forms (case-insensitively): what EDA replaces
        a word with."""
        own = {word.lower().replace("_", " ")}
        for p in ([pos] if pos else list(POS_FILES)):
            own.update(b.replace("_", " ") for b in self.morphy(word, p))
        out: dict[str, None] = {}
        for synset in self.synsets(word, pos, senses=senses):
            for lemma in synset.lemmas:
                if lemma.lower() not in own:
                    out.setdefault(lemma)
        return list(out)


_open: dict[Path, WordNet] = {}
_open_lock = threading.Lock()


def open_wordnet(directory: str | os.PathLike | None = None) -> WordNet:
    """A shared :class:`WordNet` for the folder :func:`find_wordnet_dir` finds (one per folder and process)."""
    path = find_wordnet_dir(directory).resolve()
    with _open_lock:
        found = _open.get(path)
        if found is None:
            found = _open[path] = WordNet(path)
    return found


# ---------------------------------------------------------------------------------------- parsing


def _check_pos(pos: str) -> None:
    if pos not in POS_FILES:
        raise ValueError(f"unknown part of speech {pos!r}; use one of {', '.join(POS_FILES)}")


def _read_index(path: Path) -> dict[str, tuple[int, ...]]:
    table: dict[str, tuple[int, ...]] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if line.startswith("  ") or not line.strip():  # licence lines
                continue
            fields = line.split()
            try:
                count = int(fields[2])
                offsets = tuple(int(x) for x in fields[len(fields) - count :]) if count else ()
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{number}: not a WordNet index line: {line[:80]!r}") from None
            table[fields[0]] = offsets
    return table


def _read_exceptions(path: Path) -> dict[str, tuple[str, ...]]:
    table: dict[str, tuple[str, ...]] = {}
    if not path.is_file():
        return table
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            fields = line.split()
            if len(fields) >= 2:
                table[fields[0]] = tuple(fields[1:])
    return table


def _parse_synset(line: str, pos: str, offset: int, directory: Path) -> Synset:
    head, _, gloss = line.partition(" | ")
    fields = head.split(" ")
    try:
        if int(fields[0]) != offset:
            raise ValueError("offset mismatch")
        count = int(fields[3], 16)
        words = tuple(_strip_marker(w) for w in fields[4 : 4 + 2 * count : 2])
        if len(words) != count:
            raise ValueError("short word list")
        return Synset(offset, pos, fields[2], int(fields[1]), words, gloss.strip())
    except (IndexError, ValueError) as exc:
        raise ValueError(f"{directory / ('data.' + POS_FILES[pos])}: no synset at offset {offset} ({exc}): "
                         f"{line[:80]!r}") from None


def _strip_marker(word: str) -> str:
    """``ready_to_hand(p)`` -> ``ready_to_hand``: adjectives' syntactic markers (a), (p), (ip)."""
    if word.endswith(")"):
        cut = word.rfind("(")
        if cut > 0 and word[cut + 1 : -1] in ("a", "p", "ip"):
            return word[:cut]
    return word
