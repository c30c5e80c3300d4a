"""Step 2 of ``selfsup prepare``: text normalization and clean-up.

In order: Unicode NFKC normalization (optional; folds compatibility forms such as ligatures and
full-width letters, UAX #15), removal of URLs (``http(s)://``, ``ftp://``, ``www.``) and e-mail
addresses (optional; ``keep_emails`` leaves the e-mails to the PII step, :mod:`.pii`, which writes
``<EMAIL>`` in their place), removal of control and format characters (Unicode categories Cc/Cf, except
newline and tab), whitespace clean-up (runs of spaces/tabs to one space, lines stripped, three or
more newlines to a paragraph break), optional lowercasing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

URL = re.compile(r"(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"'()\[\]]+", re.IGNORECASE)
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u3000]+")
_BLANKS = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class CleanOptions:
    nfkc: bool = True
    strip_urls: bool = True
    lowercase: bool = False
    keep_emails: bool = False  # with strip_urls: remove URLs only (prepare --pii replaces e-mails instead)


def remove_controls(text: str) -> str:
    """Drops control/format characters (Cc, Cf) except newline and tab; CR and CRLF become newlines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf"))


def normalize_whitespace(text: str) -> str:
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def clean_text(text: str, options: CleanOptions) -> str:
    """``text`` after every enabled step (possibly empty)."""
    if options.nfkc:
        text = unicodedata.normalize("NFKC", text)
    if options.strip_urls:
        text = URL.sub("", text)
        if not options.keep_emails:
            text = EMAIL.sub("", text)
    text = normalize_whitespace(remove_controls(text))
    if options.lowercase:
        text = text.lower()
    return text
