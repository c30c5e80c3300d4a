"""Language filtering for ``selfsup prepare``: keep documents identified as one of the listed
languages with at least a minimum probability.

The identifier is py3langid, the maintained, faster port of langid.py (Lui & Baldwin 2012,
"langid.py: An Off-the-shelf Language Identification Tool", ACL System Demonstrations): a naive Bayes
classifier over byte n-grams whose model ships inside the wheel (nothing to download; 140 languages
in py3langid 0.4, 97 in langid.py).
Probabilities are its normalised ones (``norm_probs=True``). Web-corpus pipelines filter the same way
with other identifiers: C4 kept pages that langdetect called English with probability >= 0.99
(Raffel et al. 2020, §2.2), CCNet kept fastText scores >= 0.5 (Wenzek et al. 2020) and FineWeb
>= 0.65 (Penedo et al. 2024, "The FineWeb Datasets"). The default ``min_score`` is FineWeb's 0.65:
each identifier is calibrated differently; with py3langid 0.4 the English documents of the embedded
corpus score 0.99 to 1.0, but one short real sentence 0.3 to 0.98 and a navigation menu 0.58, so
C4's 0.99 would drop short real text and 0.65 drops menus and fragments. The whole document is
classified.
"""

from __future__ import annotations

import difflib
from collections import Counter
from functools import lru_cache
from typing import Any

from pydantic import Field, field_validator

from selfsup.options import Options

INSTALL_HINT = "pip install 'selfsup-text[web]'"


class LanguageOptions(Options):
    """Which languages ``selfsup prepare --languages`` keeps."""

    languages: list[str] = Field(..., min_length=1, description="Codes of the languages to keep, as py3langid "
                                 "names them (ISO 639-1 where there is one: en, fr, de, es, ...).")
    min_score: float = Field(0.65, ge=0, le=1, description="Drop documents whose identified language has a "
                             "lower probability (FineWeb's threshold, Penedo et al. 2024).")

    @field_validator("languages")
    @classmethod
    def _lowercase(cls, value: list[str]) -> list[str]:
        return [code.strip().lower() for code in value if code.strip()]


@lru_cache(maxsize=1)
def identifier() -> Any:
    """py3langid's identifier with normalised probabilities (loaded once)."""
    try:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        raise ImportError(f"the language filter needs py3langid: {INSTALL_HINT}") from None
    load = getattr(LanguageIdentifier, "from_model_file", None) or LanguageIdentifier.from_pickled_model
    return load(MODEL_FILE, norm_probs=True)


def known_languages() -> list[str]:
    """The language codes py3langid identifies."""
    ident = identifier()
    labels = getattr(ident, "labels", None)
    return sorted(set(labels if labels is not None else ident.nb_classes))


def check_languages(codes: list[str]) -> None:
    """Raise a ``ValueError`` naming each code py3langid does not know (and the nearest one it knows)."""
    known = known_languages()
    for code in codes:
        if code not in known:
            near = difflib.get_close_matches(code, known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ValueError(f"--languages: unknown language code {code!r}{hint} (py3langid knows {len(known)}: "
                             f"{', '.join(known)})")


def identify(text: str) -> tuple[str, float]:
    """(language code, probability) of ``text``."""
    lang, score = identifier().classify(text)
    return str(lang), float(score)


def language_filter(texts: list[str], options: LanguageOptions, *, examples: int = 3,
                    excerpt: int = 200) -> tuple[list[str], dict[str, Any]]:
    """The texts identified as one of ``options.languages`` with probability >= ``options.min_score``, and
    the report: ``kept`` (per language), ``removed``, ``removed_by_language`` (the identified language of
    each removed document), ``low_score`` (listed language, probability below the minimum) and up to
    ``examples`` removed ``examples`` (``"fr 0.99: <first excerpt characters>"``)."""
    check_languages(options.languages)
    wanted = set(options.languages)
    kept: list[str] = []
    kept_by: Counter = Counter()
    removed_by: Counter = Counter()
    low_score = 0
    shown: list[str] = []
    for text in texts:
        lang, score = identify(text)
        if lang in wanted and score >= options.min_score:
            kept.append(text)
            kept_by[lang] += 1
            continue
        removed_by[lang] += 1
        low_score += lang in wanted
        if len(shown) < examples:
            shown.append(f"{lang} {score:.2f}: {text[:excerpt]}")
    report = {
        "languages": list(options.languages), "min_score": options.min_score,
        "kept": dict(sorted(kept_by.items())), "removed": len(texts) - len(kept),
        "removed_by_language": dict(removed_by.most_common()), "low_score": low_score, "examples": shown,
        "identifier": f"py3langid {_version()}",
    }
    return kept, report


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("py3langid")
    except PackageNotFoundError:  # imported from a source tree: only the version string is lost
        return "unknown"
