"""Salient spans of English text by rules: numbers, years and dates, and capitalised names.

REALM masks *salient spans*, named entities and dates found by a tagger, instead of random tokens,
because they are what needs world knowledge to fill in (Guu, Lee, Tung, Pasupat and Chang, REALM:
Retrieval-Augmented Language Model Pre-Training, ICML 2020, section 3.4); closed-book QA uses the
same masking to store facts in the weights (Roberts, Raffel and Shazeer, How Much Knowledge Can You
Pack Into the Parameters of a Language Model?, EMNLP 2020). No tagger model ships offline with the
install, so the spans are found by rules, each chosen for a reason:

* ``date``: a month name with a day and/or a year ("12 March 1998", "March 12, 1998", "March 1998"),
  or a year alone (a 4-digit number from 1000 to 2099 not part of a longer number): dates are
  REALM's second span type and years are the commonest date in encyclopaedic text;
* ``number``: digits, with thousands separators and decimals, and an optional percent sign
  ("2,500", "3.5", "40%"), not part of a time or a code ("4:00pm", "A4", "1.2.3"): quantities are
  facts a reader cannot guess from the syntax;
* ``name``: a run of capitalised words (inner connectors "of", "de", "van", "von", "the" allowed
  between two capitalised words, as in "University of Sydney"; not "and", which joins two names)
  that does **not** begin a sentence.
  A capital at a sentence start says nothing about a name (English capitalises every first word),
  so such runs are dropped whole rather than guessed at; "I" and month and weekday names alone are
  not names.

Overlaps are resolved by priority, dates over numbers over names, then longer first. Sentence
starts are those of :func:`selfsup_text.data.base.sentence_char_starts` (the plugin's splitter), plus
the position after a blank line, an opening quote or bracket at a start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from selfsup_text.data.base import sentence_char_starts

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTH = "(?:" + "|".join(MONTHS) + r"|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.)"
_YEAR = r"(?:1[0-9]{3}|20[0-9]{2})"
_DATE = re.compile(
    rf"\b(?:[0-3]?[0-9] {_MONTH},? {_YEAR}|{_MONTH} [0-3]?[0-9],? {_YEAR}|{_MONTH} {_YEAR}|"
    rf"[0-3]?[0-9] {_MONTH}|{_MONTH} [0-3]?[0-9]\b)|(?<![\d.,])\b{_YEAR}\b(?![.,]?\d)"
)
_NUMBER = re.compile(r"(?<![\w.,:])\d{1,3}(?:,\d{3})+(?:\.\d+)?%?(?![\w,:]*\d)"
                     r"|(?<![\w.,:])\d+(?:\.\d+)?%?(?![\w.:]*\d)")
_CONNECTORS = ("of", "de", "van", "von", "the", "da", "del", "du", "la", "le", "al")
_CAP = r"[A-Z][a-zA-Z'\-]*[a-zA-Z]|[A-Z]\.?"
_NAME = re.compile(rf"\b(?:{_CAP})(?:(?: (?:{'|'.join(_CONNECTORS)}))* (?:{_CAP}))*\b")
_NOT_NAMES = {"I", *MONTHS, *WEEKDAYS}
_PRIORITY = {"date": 0, "number": 1, "name": 2}


@dataclass(frozen=True)
class Span:
    """A salient span: characters ``[start, end)`` of the text, its ``kind`` and its ``text``."""

    start: int
    end: int
    kind: str
    text: str


def sentence_starts(text: str) -> set[int]:
    """Character offsets that begin a sentence: the splitter's, each moved past opening quotes,
    brackets and spaces."""
    starts = set()
    for s in sentence_char_starts(text):
        while s < len(text) and text[s] in " \t\n\"'(\u201c\u2018[":
            s += 1
        starts.add(s)
    return starts


def _names(text: str, starts: set[int]) -> list[Span]:
    out = []
    for m in _NAME.finditer(text):
        begin = m.start()
        if begin in starts or text[m.start():m.end()] in _NOT_NAMES:
            continue
        # a run right after a colon or a line break is also a sentence start of sorts
        before = text[:begin].rstrip(" \t\"'(\u201c\u2018[")
        if not before or before[-1] in ":\n":
            continue
        value = m.group(0).rstrip(".")
        value = value[:-2] if value.endswith("'s") else value  # the possessive is not part of the name
        if len(value) < 2 and not value.isalpha():
            continue
        out.append(Span(begin, begin + len(value), "name", value))
    return out


def find_spans(text: str, kinds: tuple[str, ...] | list[str] = ("number", "date", "name")) -> list[Span]:
    """The salient spans of ``text`` (see the module docstring), in order, without overlaps."""
    found: list[Span] = []
    if "date" in kinds:
        found += [Span(m.start(), m.end(), "date", m.group(0)) for m in _DATE.finditer(text)]
    if "number" in kinds:
        found += [Span(m.start(), m.end(), "number", m.group(0)) for m in _NUMBER.finditer(text)]
    if "name" in kinds:
        found += _names(text, sentence_starts(text))
    found.sort(key=lambda s: (_PRIORITY[s.kind], -(s.end - s.start), s.start))
    taken: list[Span] = []
    for span in found:
        if all(span.end <= t.start or span.start >= t.end for t in taken):
            taken.append(span)
    return sorted(taken, key=lambda s: s.start)
