"""PII scrubbing for ``selfsup prepare``: e-mail addresses, phone numbers and IP addresses become
placeholders (``<EMAIL>``, ``<PHONE>``, ``<IP>``).

Regular expressions followed by validation, the kind of detector used for web and code corpora: the
BigScience ROOTS corpus (Laurençon et al. 2022, "The BigScience ROOTS Corpus: A 1.6TB Composite
Multilingual Dataset") and BigCode's SantaCoder (Ben Allal et al. 2023, "SantaCoder: don't reach for
the stars!") found e-mail and IP addresses with regular expressions and replaced them with
placeholders; StarCoder (Li et al. 2023) wrote them as ``<EMAIL>``-style tokens. What each detector
takes, and what it leaves alone on purpose (the tests hold a table of both):

* **e-mail**: ``local@domain.tld`` with a dotted domain and a 2+ letter top-level domain; not
  ``user@localhost``, ``@handles`` or obfuscated forms (``name [at] example [dot] com``).
* **IPv4**: four dot-separated numbers 0-255 without leading zeros, standing alone: not part of a
  longer dotted number (``1.2.3.4.5``), not right after ``v``, ``version``, ``ver.``, ``release`` or
  ``build`` (version numbers such as ``v1.2.3.4``); three-part versions (``3.10.2``) and dates
  (``15.01.2023``) have too few parts to match.
* **IPv6**: a run of hex groups and colons that :class:`ipaddress.IPv6Address` accepts (full,
  ``::``-compressed, with an embedded IPv4 or a ``%zone``), with at least one digit; times
  (``12:30:45``), ratios and MAC addresses (``00:1a:2b:3c:4d:5e``) are not valid IPv6 and stay.
* **phone**: international numbers (``+`` country code, 8 to 15 digits, spaces, dots, dashes or
  brackets between groups: ``+44 20 7946 0958``, ``+1-202-555-0143``, ``+33 6 12 34 56 78``), North
  American numbers with separators (``(202) 555-0143``, ``202-555-0143``, ``202.555.0143``,
  ``1-800-555-0199``) and national numbers with a leading trunk 0 in 3 to 5 groups of 9 to 11 digits
  (``020 7946 0958``, ``06 12 34 56 78``, ``(02) 9876 5432``). Never a bare digit string (``1234567890``
  could be anything), a year range (``1990-1995``), an ISO or dotted date, a decimal, an amount
  (``1,234,567``) or an ISBN. Local numbers without an area code (``555-0143``) are not found.

Google's ``phonenumbers`` (libphonenumber) finds more national formats but needs a home region per
document and is not a dependency of this plugin; these patterns are region-free. Counts are kept per
kind; the manifest records counts only, never the matched values.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

from pydantic import Field

from selfsup.options import Options

EMAIL = re.compile(
    r"(?<![\w.+-])[^\W_][\w.+-]*@(?:[^\W_](?:[\w-]*[^\W_])?\.)+[A-Za-z]{2,}(?![\w-])"
)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)"
IPV4 = re.compile(rf"(?<![\w.])({_OCTET}(?:\.{_OCTET}){{3}})(?!\.?\d)(?![\w])")
_VERSION_BEFORE = re.compile(r"(?:\bv|\bversion|\bver\.?|\brelease|\bbuild)\s*$", re.IGNORECASE)
IPV6 = re.compile(
    r"(?<![\w:.])((?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{0,4})(?:%\w+)?)(?![\w:]|\.\w)"
)
_SEP = r"[ .\-\u2010-\u2013]"
PHONE = re.compile(
    r"(?<![\w+/.,-])(?:"
    # international: +CC, then groups (an area code may be bracketed), 8-15 digits in all (checked below)
    rf"\+\d{{1,3}}(?:{_SEP}?\(\d{{1,4}}\)|{_SEP}?\d{{1,5}}){{1,6}}"
    # North American: optional 1-, (NPA) or NPA-, then NXX-XXXX, with separators
    rf"|(?:1{_SEP})?(?:\(\d{{3}}\) ?|\d{{3}}{_SEP})\d{{3}}{_SEP}\d{{4}}"
    # national with a trunk 0: 0AB... in 3-5 groups, 9-11 digits in all (checked below)
    rf"|(?:\(0\d{{1,4}}\) ?|0\d{{1,4}}{_SEP})\d{{1,4}}(?:{_SEP}\d{{2,4}}){{1,3}}"
    r")(?![\w+/-]|[.,]\d)"
)
#: A date written with dashes, dots or slashes: never taken for a phone number.
_DATE = re.compile(r"^(?:\d{1,2}[-./]\d{1,2}[-./]\d{2,4}|\d{4}[-./]\d{1,2}[-./]\d{1,2})$")


class PiiOptions(Options):
    """Which kinds of PII ``selfsup prepare --pii`` replaces, and with what."""

    emails: bool = Field(True, description="Replace e-mail addresses.")
    phones: bool = Field(True, description="Replace phone numbers.")
    ips: bool = Field(True, description="Replace IPv4 and IPv6 addresses.")
    email_placeholder: str = Field("<EMAIL>", description="What an e-mail address becomes.")
    phone_placeholder: str = Field("<PHONE>", description="What a phone number becomes.")
    ip_placeholder: str = Field("<IP>", description="What an IP address becomes.")


def _is_ipv6(candidate: str) -> bool:
    if not any(c.isdigit() for c in candidate) or candidate.count(":") < 2:
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def _is_phone(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    if _DATE.match(candidate):
        return False
    if candidate.startswith("+"):
        return 8 <= digits <= 15
    if candidate.lstrip("(").startswith("0"):
        return 9 <= digits <= 11
    return digits in (10, 11)


def scrub_pii(text: str, options: PiiOptions | None = None) -> tuple[str, Counter]:
    """``text`` with its e-mails, IP addresses and phone numbers replaced (in that order, so a number
    inside an address is not taken for a phone), and how many of each (``emails``, ``ips``, ``phones``)."""
    options = options or PiiOptions()
    counts: Counter = Counter()
    if options.emails:
        text, n = EMAIL.subn(options.email_placeholder, text)
        counts["emails"] += n
    if options.ips:
        text = _replace(IPV6, text, lambda m: _is_ipv6(m.group(1)), options.ip_placeholder, counts, "ips")
        text = _replace(IPV4, text, lambda m: not _VERSION_BEFORE.search(m.string[max(0, m.start() - 12) : m.start()]),
                        options.ip_placeholder, counts, "ips")
    if options.phones:
        text = _replace(PHONE, text, lambda m: _is_phone(m.group()), options.phone_placeholder, counts, "phones")
    return text, counts


def _replace(pattern: re.Pattern, text: str, accept, placeholder: str, counts: Counter, kind: str) -> str:
    def sub(match: re.Match) -> str:
        if accept(match):
            counts[kind] += 1
            return placeholder
        return match.group()

    return pattern.sub(sub, text)


def scrub_corpus(texts: list[str], options: PiiOptions | None = None) -> tuple[list[str], dict[str, int]]:
    """Every text scrubbed, and the totals: ``emails``, ``phones``, ``ips`` and ``documents`` (texts changed)."""
    total: Counter = Counter()
    out = []
    for text in texts:
        new, counts = scrub_pii(text, options)
        total.update(counts)
        total["documents"] += new != text
        out.append(new)
    return out, {key: int(total[key]) for key in ("emails", "phones", "ips", "documents")}
