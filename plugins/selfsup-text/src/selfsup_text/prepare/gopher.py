"""Gopher's rule-based quality and repetition filters for web documents.

Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from Training Gopher",
Appendix A.1.1 (MassiveWeb). *Quality filtering*: keep documents with 50 to 100,000 words and a mean
word length of 3 to 10 characters; drop documents whose symbol-to-word ratio is above 0.1 for the hash
symbol or for the ellipsis, with more than 90% of lines starting with a bullet point or more than 30%
ending in an ellipsis; require 80% of the words to contain an alphabetic character and at least two of
the stop words *the, be, to, of, and, that, have, with*. *Repetition removal* (Table A1): drop documents
whose measurements are above these thresholds:

* duplicate line fraction 0.30, duplicate paragraph fraction 0.30;
* duplicate line character fraction 0.20, duplicate paragraph character fraction 0.20;
* top 2-gram, 3-gram, 4-gram character fraction 0.20, 0.18, 0.16;
* duplicate 5-, 6-, 7-, 8-, 9-, 10-gram character fraction 0.15, 0.14, 0.13, 0.12, 0.11, 0.10.

The paper gives the rules in words; where it leaves a detail open, this module decides as follows (the
tests write each formula out):

* *tokens* are the whitespace-separated pieces of the text; a *word* is a token with its leading and
  trailing punctuation and symbols (Unicode categories P*, S*) stripped, if anything is left. Word
  count and mean word length use words; the alphabetic-word share uses tokens (a ``|`` of a menu is a
  token without a letter), as the reference re-implementation in datatrove does.
* symbol ratios: ``count("#") / words`` and ``(count("...") + count("…")) / words``.
* lines are the non-empty lines (stripped), paragraphs the non-empty blocks between blank lines; a
  bullet line starts with one of ``bullets``, an ellipsis line ends with ``...`` or ``…``.
* stop words: the number of *distinct* stop words present ("at least two of the following words";
  datatrove's re-implementation counts them the same way).
* a duplicate line (paragraph) is one equal to an earlier line (paragraph); its fraction is over all
  lines, its character fraction is its characters over the characters of all lines (paragraphs).
* n-grams are over the words lowercased; character fractions count the characters of the words a
  set of n-gram occurrences covers, each word once, over the characters of all words. Top n-gram: the
  occurrences of the most frequent n-gram (0 when no n-gram occurs twice; among equally frequent
  ones, the largest fraction). Duplicate n-grams: every occurrence of an n-gram after its first
  (so overlapping repeats are not counted twice, as the paper asks).
* a document fails a "max" rule when its value is strictly above the threshold and a "min" rule when
  strictly below (the paper's "greater than", "more than", "at least").
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from itertools import accumulate
from typing import Any

from pydantic import Field, field_validator, model_validator

from selfsup.options import Options

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
BULLETS = ("•", "‣", "◦", "⁃", "∙", "●", "○", "■", "□", "▪", "▫", "►", "▶", "-", "*", "–", "—")
ELLIPSES = ("...", "…")
TOP_NGRAMS = (2, 3, 4)
DUPLICATE_NGRAMS = (5, 6, 7, 8, 9, 10)


def _fraction(description: str, default: float) -> Any:
    return Field(default, ge=0, le=1, description=description)


class GopherOptions(Options):
    """Gopher's thresholds (Rae et al. 2021, Appendix A.1.1 and Table A1); the defaults are the paper's."""

    enabled: bool = Field(False, description="Apply the Gopher rules (prepare's --quality gopher turns this on).")
    min_words: int = Field(50, ge=0, description="Drop documents with fewer words than this.")
    max_words: int = Field(100_000, ge=1, description="Drop documents with more words than this.")
    min_mean_word_length: float = Field(3.0, ge=0, description="Drop documents whose mean word length "
                                        "(characters) is below this.")
    max_mean_word_length: float = Field(10.0, gt=0, description="Drop documents whose mean word length "
                                        "(characters) is above this.")
    max_symbol_word_ratio: float = Field(0.1, ge=0, description="Drop documents with more '#', or more "
                                         "ellipses ('...', '…'), per word than this.")
    max_bullet_lines: float = _fraction("Drop documents where more than this share of the lines start with a "
                                        "bullet.", 0.9)
    max_ellipsis_lines: float = _fraction("Drop documents where more than this share of the lines end with "
                                          "an ellipsis.", 0.3)
    min_alpha_words: float = _fraction("Drop documents where fewer than this share of the tokens contain an "
                                       "alphabetic character.", 0.8)
    stop_words: list[str] = Field(list(STOP_WORDS), description="The stop words (lowercase).")
    min_stop_words: int = Field(2, ge=0, description="Drop documents with fewer distinct stop words than this.")
    bullets: list[str] = Field(list(BULLETS), min_length=1, description="Characters that start a bullet line.")
    max_duplicate_lines: float = _fraction("Drop documents with a larger share of lines equal to an earlier line.",
                                           0.30)
    max_duplicate_paragraphs: float = _fraction("Drop documents with a larger share of paragraphs equal to an "
                                                "earlier paragraph.", 0.30)
    max_duplicate_line_chars: float = _fraction("Drop documents with a larger share of characters in duplicate "
                                                "lines.", 0.20)
    max_duplicate_paragraph_chars: float = _fraction("Drop documents with a larger share of characters in "
                                                     "duplicate paragraphs.", 0.20)
    max_top_2gram_chars: float = _fraction("Drop documents with a larger share of characters in the most "
                                           "frequent word 2-gram.", 0.20)
    max_top_3gram_chars: float = _fraction("The same for the most frequent 3-gram.", 0.18)
    max_top_4gram_chars: float = _fraction("The same for the most frequent 4-gram.", 0.16)
    max_duplicate_5gram_chars: float = _fraction("Drop documents with a larger share of characters in repeated "
                                                 "word 5-grams.", 0.15)
    max_duplicate_6gram_chars: float = _fraction("The same for repeated 6-grams.", 0.14)
    max_duplicate_7gram_chars: float = _fraction("The same for repeated 7-grams.", 0.13)
    max_duplicate_8gram_chars: float = _fraction("The same for repeated 8-grams.", 0.12)
    max_duplicate_9gram_chars: float = _fraction("The same for repeated 9-grams.", 0.11)
    max_duplicate_10gram_chars: float = _fraction("The same for repeated 10-grams.", 0.10)

    @field_validator("stop_words")
    @classmethod
    def _lowercase(cls, value: list[str]) -> list[str]:
        return [word.strip().lower() for word in value if word.strip()]

    @model_validator(mode="after")
    def _ranges(self) -> GopherOptions:
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) is above max_words ({self.max_words})")
        if self.min_mean_word_length > self.max_mean_word_length:
            raise ValueError(f"min_mean_word_length ({self.min_mean_word_length}) is above max_mean_word_length "
                             f"({self.max_mean_word_length})")
        return self


#: The rules in the order they are checked (the first that fails names a removed document's reason).
RULES = (
    "gopher_word_count", "gopher_mean_word_length", "gopher_symbol_ratio", "gopher_bullet_lines",
    "gopher_ellipsis_lines", "gopher_alpha_words", "gopher_stop_words",
    "gopher_duplicate_lines", "gopher_duplicate_paragraphs", "gopher_duplicate_line_chars",
    "gopher_duplicate_paragraph_chars",
    *(f"gopher_top_{n}gram_chars" for n in TOP_NGRAMS),
    *(f"gopher_duplicate_{n}gram_chars" for n in DUPLICATE_NGRAMS),
)


def _is_mark(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "PS"


def strip_marks(token: str) -> str:
    """``token`` without its leading and trailing punctuation and symbols."""
    if token[:1].isalnum() and token[-1:].isalnum():  # the usual case, no marks at either end
        return token
    start, end = 0, len(token)
    while start < end and _is_mark(token[start]):
        start += 1
    while end > start and _is_mark(token[end - 1]):
        end -= 1
    return token[start:end]


def words_of(text: str) -> list[str]:
    """The words of ``text``: whitespace tokens with leading/trailing punctuation stripped, empty ones dropped."""
    return [w for w in (strip_marks(t) for t in text.split()) if w]


def _duplicates(items: list[str]) -> tuple[float, float]:
    """(share of items equal to an earlier item, their characters over all characters)."""
    if not items:
        return 0.0, 0.0
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        seen.add(item)
    return count / len(items), chars / max(sum(len(i) for i in items), 1)


def _covered_chars(prefix: list[int], starts: list[int], n: int) -> int:
    """Characters of the words covered by the n-grams starting at ``starts`` (sorted), each word counted
    once; ``prefix[i]`` is the number of characters of the first ``i`` words."""
    total, end = 0, 0
    for s in starts:
        lo = max(s, end)
        end = s + n
        total += prefix[end] - prefix[lo] if end > lo else 0
    return total


def _prefix(words: list[str]) -> list[int]:
    return [0, *accumulate(len(w) for w in words)]


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return list(zip(*(words[i:] for i in range(n))))


def top_ngram_fraction(words: list[str], n: int, prefix: list[int] | None = None) -> float:
    """Characters covered by the occurrences of the most frequent word n-gram over all word characters
    (0 when no n-gram occurs twice; among equally frequent n-grams, the largest fraction)."""
    grams = _ngrams(words, n)
    counts = Counter(grams)
    top = max(counts.values(), default=0)
    if top < 2:
        return 0.0
    prefix = prefix or _prefix(words)
    tied = {g for g, c in counts.items() if c == top}
    positions: dict[tuple[str, ...], list[int]] = {g: [] for g in tied}
    for i, g in enumerate(grams):
        if g in tied:
            positions[g].append(i)
    best = max(_covered_chars(prefix, p, n) for p in positions.values())
    return best / max(prefix[-1], 1)


def duplicate_ngram_fraction(words: list[str], n: int, prefix: list[int] | None = None) -> float:
    """Characters covered by every occurrence of a word n-gram after its first, over all word characters."""
    grams = _ngrams(words, n)
    first = dict(zip(reversed(grams), range(len(grams) - 1, -1, -1)))  # each n-gram -> its first position
    if len(first) == len(grams):
        return 0.0
    starts = sorted(set(range(len(grams))).difference(first.values()))
    prefix = prefix or _prefix(words)
    return _covered_chars(prefix, starts, n) / max(prefix[-1], 1)


def gopher_stats(text: str, options: GopherOptions | None = None) -> dict[str, float]:
    """Every measurement the Gopher rules compare with a threshold."""
    options = options or GopherOptions()
    tokens = text.split()
    words = words_of(text)
    n_words = len(words)
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    paragraphs = [p.strip() for p in _paragraphs(text) if p.strip()]
    stop = set(options.stop_words)
    lowered = [w.lower() for w in words]
    dup_lines, dup_line_chars = _duplicates(lines)
    dup_paragraphs, dup_paragraph_chars = _duplicates(paragraphs)
    stats = {
        "words": float(n_words),
        "mean_word_length": sum(len(w) for w in words) / n_words if n_words else 0.0,
        "hash_ratio": text.count("#") / max(n_words, 1),
        "ellipsis_ratio": sum(text.count(e) for e in ELLIPSES) / max(n_words, 1),
        "bullet_lines": sum(line.startswith(tuple(options.bullets)) for line in lines) / max(len(lines), 1),
        "ellipsis_lines": sum(line.endswith(ELLIPSES) for line in lines) / max(len(lines), 1),
        "alpha_words": sum(any(c.isalpha() for c in t) for t in tokens) / len(tokens) if tokens else 0.0,
        "stop_words": float(len(stop.intersection(lowered))),
        "duplicate_lines": dup_lines,
        "duplicate_paragraphs": dup_paragraphs,
        "duplicate_line_chars": dup_line_chars,
        "duplicate_paragraph_chars": dup_paragraph_chars,
    }
    prefix = _prefix(lowered)
    for n in TOP_NGRAMS:
        stats[f"top_{n}gram_chars"] = top_ngram_fraction(lowered, n, prefix)
    for n in DUPLICATE_NGRAMS:
        stats[f"duplicate_{n}gram_chars"] = duplicate_ngram_fraction(lowered, n, prefix)
    return stats


def _paragraphs(text: str) -> list[str]:
    blocks, current = [], []
    for line in text.split("\n"):
        if line.strip():
            current.append(line.strip())
        elif current:
            blocks.append("\n".join(current))
            current = []
    if current:
        blocks.append("\n".join(current))
    return blocks


def gopher_failures(text: str, options: GopherOptions) -> list[str]:
    """The rules (of :data:`RULES`, in that order) that ``text`` fails."""
    s = gopher_stats(text, options)
    o = options
    failed = {
        "gopher_word_count": not o.min_words <= s["words"] <= o.max_words,
        "gopher_mean_word_length": not o.min_mean_word_length <= s["mean_word_length"] <= o.max_mean_word_length,
        "gopher_symbol_ratio": max(s["hash_ratio"], s["ellipsis_ratio"]) > o.max_symbol_word_ratio,
        "gopher_bullet_lines": s["bullet_lines"] > o.max_bullet_lines,
        "gopher_ellipsis_lines": s["ellipsis_lines"] > o.max_ellipsis_lines,
        "gopher_alpha_words": s["alpha_words"] < o.min_alpha_words,
        "gopher_stop_words": s["stop_words"] < o.min_stop_words,
        "gopher_duplicate_lines": s["duplicate_lines"] > o.max_duplicate_lines,
        "gopher_duplicate_paragraphs": s["duplicate_paragraphs"] > o.max_duplicate_paragraphs,
        "gopher_duplicate_line_chars": s["duplicate_line_chars"] > o.max_duplicate_line_chars,
        "gopher_duplicate_paragraph_chars": s["duplicate_paragraph_chars"] > o.max_duplicate_paragraph_chars,
    }
    for n in TOP_NGRAMS:
        failed[f"gopher_top_{n}gram_chars"] = s[f"top_{n}gram_chars"] > getattr(o, f"max_top_{n}gram_chars")
    for n in DUPLICATE_NGRAMS:
        failed[f"gopher_duplicate_{n}gram_chars"] = (
            s[f"duplicate_{n}gram_chars"] > getattr(o, f"max_duplicate_{n}gram_chars"))
    return [rule for rule in RULES if failed[rule]]
