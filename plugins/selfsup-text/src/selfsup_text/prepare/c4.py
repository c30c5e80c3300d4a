"""C4's heuristic clean-up of web pages.

Raffel et al. 2020, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text
Transformer" (JMLR 21), §2.2 "The Colossal Clean Crawled Corpus". The paper's rules, as applied here:

* line rules (the line is dropped, the page kept): lines not ending in a terminal punctuation mark
  ("a period, exclamation mark, question mark, or end quotation mark"; a line ending in an ellipsis
  ``...`` does not count, as in the reference code), lines with fewer than 5 words, lines containing
  "javascript" (the "Javascript should be enabled" warnings), lines containing a policy boilerplate
  string ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies",
  "use cookies"); citation markers (``[1]``, ``[edit]``, ``[citation needed]``) are removed from lines;
* page rules (the page is dropped): pages containing "lorem ipsum", pages containing a curly
  bracket ``{`` (code), pages containing a word or phrase of the "List of Dirty, Naughty, Obscene or
  Otherwise Bad Words" (LDNOOBW, English; shipped in ``assets/ldnoobw/``), and pages left with fewer
  than 3 sentences once their lines are filtered (and, with ``min_sentences = 0``, pages left with no
  line at all: ``c4_no_lines_left``).

Which numbers: the paper says "We discarded any page with fewer than 3 sentences and only retained
lines that contained at least 5 words", and the reference implementation that built C4 (TensorFlow
Datasets' ``c4_utils.clean_page``) has ``_MIN_WORDS_PER_LINE = 5``, ``_MIN_NUM_SENTENCES = 3``; it also
drops lines with a word longer than 1,000 characters, kept here. (Dolma's C4 tagger counts lines of
fewer than 3 words instead; that is not C4.)

Differences from the reference code, each deliberate: the page rules for "lorem ipsum", ``{`` and bad
words look at the whole page as it came in, as the paper words them (``clean_page`` only looks at the
lines that survived the punctuation and length rules, so most code, whose lines end in ``;`` or ``{``,
lost its lines instead of the page); the end quotation mark includes ``”`` besides ``"``; sentences are
counted with the rule-based splitter below instead of NLTK's Punkt model (nothing to download; it
splits after ``.``, ``!``, ``?`` followed by a capital or digit, except after a known abbreviation or a
single capital letter); blank lines between kept lines are kept as paragraph breaks (``clean_page``
joins the kept lines with single newlines). Bad words match as whole words or phrases of the
lowercased page (``(?<!\\w)word(?!\\w)``, the reference code's ``(?:\\W|^)word(?:\\W|$)``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pydantic import Field

from selfsup.options import ExistingFile, Options

BAD_WORDS_FILE = Path(__file__).resolve().parent.parent / "assets" / "ldnoobw" / "en.txt"
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs etc e.g i.e al fig figs no nos vol vols pp p ca cf approx inc ltd co corp "
    "gen col lt sgt capt cmdr adm maj rev hon gov sen rep pres ft jan feb mar apr jun jul aug sep sept oct nov "
    "dec u.s u.k u.n a.m p.m".split())
_BOUNDARY = re.compile(r"[.!?]+[\"'”’)\]]*\s+(?=[\"'“‘(\[]*\w)")


class C4Options(Options):
    """C4's rules (Raffel et al. 2020, §2.2); the defaults are the paper's (and its reference code's)."""

    enabled: bool = Field(False, description="Apply the C4 rules (prepare's --quality c4 turns this on).")
    terminal_punctuation: list[str] = Field(
        [".", "!", "?", '"', "”"], min_length=1,
        description="Keep only lines ending with one of these (and not with an ellipsis '...').")
    min_words_per_line: int = Field(5, ge=0, description="Drop lines with fewer whitespace-separated words.")
    min_sentences: int = Field(3, ge=0, description="Drop pages with fewer sentences in their kept lines.")
    max_word_length: int = Field(1000, ge=1, description="Drop lines with a word longer than this many "
                                 "characters (the reference code's rule).")
    remove_citations: bool = Field(True, description="Remove citation markers: [1], [edit], [citation needed].")
    javascript_lines: bool = Field(True, description="Drop lines containing 'javascript' (any case).")
    policy_substrings: list[str] = Field(list(POLICY), description="Drop lines containing one of these "
                                         "(lowercase, matched on the lowercased line).")
    lorem_ipsum: bool = Field(True, description="Drop pages containing 'lorem ipsum' (any case).")
    curly_brace: bool = Field(True, description="Drop pages containing a curly bracket '{'.")
    bad_words: bool = Field(True, description="Drop pages containing a word or phrase of the bad-words list.")
    bad_words_file: ExistingFile | None = Field(
        None, description="Your own bad-words list: UTF-8, one word or phrase per line (blank lines ignored); "
        "default: the shipped LDNOOBW English list (assets/ldnoobw/en.txt, 403 entries, CC BY 4.0).")


#: Page rules, in the order they are checked.
PAGE_RULES = ("c4_lorem_ipsum", "c4_curly_brace", "c4_bad_words", "c4_too_few_sentences", "c4_no_lines_left")
#: Line rules, in the order each line is checked (the first that fails names a dropped line's reason).
LINE_RULES = ("c4_long_word_lines", "c4_no_terminal_punctuation_lines", "c4_short_lines", "c4_javascript_lines",
              "c4_policy_lines")


class BadWords:
    """Whole-word (or whole-phrase) matching of a word list on lowercased text."""

    def __init__(self, entries: list[str]):
        entries = sorted({e.strip().lower() for e in entries if e.strip()}, key=lambda e: (-len(e), e))
        self.words = frozenset(e for e in entries if re.fullmatch(r"\w+", e))
        others = [e for e in entries if e not in self.words]  # phrases, and words with other characters
        self.phrases = re.compile(r"(?<!\w)(?:%s)(?!\w)" % "|".join(map(re.escape, others))) if others else None
        self.size = len(entries)

    def find(self, text: str) -> str | None:
        """The first listed word or phrase found in ``text`` (a word before a phrase), or ``None``."""
        lowered = text.lower()
        for token in re.findall(r"\w+", lowered):
            if token in self.words:
                return token
        match = self.phrases.search(lowered) if self.phrases is not None else None
        return match.group() if match else None


@lru_cache(maxsize=8)
def load_bad_words(path: Path | None = None) -> BadWords:
    """The list in ``path`` (default: the shipped LDNOOBW English list)."""
    file = Path(path) if path is not None else BAD_WORDS_FILE
    return BadWords(file.read_text(encoding="utf-8").splitlines())


def count_sentences(line: str) -> int:
    """Sentences in ``line``: 1 + the boundaries (``.``/``!``/``?``, optional closing quotes or brackets,
    whitespace, then a capital letter or digit), not counting a period after a known abbreviation
    (``Mr.``, ``e.g.``, ``U.S.``) or after a single capital letter (an initial)."""
    line = line.strip()
    if not line:
        return 0
    count = 1
    for match in _BOUNDARY.finditer(line):
        after = line[match.end() :].lstrip("\"'“‘([")
        if not (after[:1].isupper() or after[:1].isdigit()):
            continue
        if match.group().startswith(".") and not match.group().startswith(".."):
            head = line[: match.start()].split()
            before = head[-1].lstrip("\"'“‘([") if head else ""
            if before.lower() in ABBREVIATIONS or (len(before) == 1 and before.isupper()):
                continue
        count += 1
    return count


@dataclass
class C4Result:
    """What the C4 rules did to one page."""

    text: str  # the page without its dropped lines (the input when a page rule failed)
    failures: list[str] = field(default_factory=list)  # page rules failed, in PAGE_RULES order
    removed_lines: dict[str, list[str]] = field(default_factory=dict)  # line rule -> the lines it dropped
    citations: int = 0  # citation markers removed
    sentences: int = 0  # sentences in the kept lines
    bad_word: str | None = None  # the bad word or phrase found


def c4_clean(text: str, options: C4Options, bad_words: BadWords | None = None) -> C4Result:
    """Apply the C4 rules to one page; ``bad_words`` defaults to :func:`load_bad_words` of the options."""
    result = C4Result(text=text)
    lowered = text.lower()
    if options.lorem_ipsum and "lorem ipsum" in lowered:
        result.failures.append("c4_lorem_ipsum")
    if options.curly_brace and "{" in text:
        result.failures.append("c4_curly_brace")
    if options.bad_words:
        words = bad_words or load_bad_words(options.bad_words_file)
        result.bad_word = words.find(text)
        if result.bad_word is not None:
            result.failures.append("c4_bad_words")

    ends = tuple(options.terminal_punctuation)
    policy = tuple(p.lower() for p in options.policy_substrings)
    kept: list[str] = []
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            if kept and kept[-1]:
                kept.append("")  # a paragraph break between kept lines
            continue
        if any(len(word) > options.max_word_length for word in line.split()):
            rule = "c4_long_word_lines"
        else:
            if options.remove_citations:
                line, n = CITATION.subn("", line)
                line = line.strip()
                result.citations += n
            low = line.lower()
            if not line.endswith(ends) or line.endswith("..."):
                rule = "c4_no_terminal_punctuation_lines"
            elif len(line.split()) < options.min_words_per_line:
                rule = "c4_short_lines"
            elif options.javascript_lines and "javascript" in low:
                rule = "c4_javascript_lines"
            elif any(p in low for p in policy):
                rule = "c4_policy_lines"
            else:
                kept.append(line)
                result.sentences += count_sentences(line)
                continue
        result.removed_lines.setdefault(rule, []).append(raw.strip())
    if result.sentences < options.min_sentences:
        result.failures.append("c4_too_few_sentences")
    elif not kept:  # with min_sentences = 0 only: every line was dropped
        result.failures.append("c4_no_lines_left")
    if not result.failures:
        result.text = "\n".join(kept).strip()
    return result
