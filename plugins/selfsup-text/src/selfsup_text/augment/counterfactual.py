"""Counterfactual data augmentation (the ``counterfactual`` augmentation and ``counterfactual_corpus``).

Lu, Mardziel, Wu, Amancharla and Datta, "Gender Bias in Neural Natural Language Processing" (2018,
https://arxiv.org/abs/1807.11714): CDA adds to the corpus a copy of each text with gendered words
swapped (he <-> she, man <-> woman, ...), so that a model sees both versions equally often.
Maudslay, Gonen, Cotterell and Teufel, "It's All in the Name: Mitigating Gender Bias with
Name-Based Counterfactual Data Substitution" (EMNLP 2019, https://arxiv.org/abs/1909.00871):
counterfactual data *substitution* (CDS) replaces each text by its swapped copy with probability
0.5 instead of adding it (the corpus keeps its size, and no text is seen in both versions), and
first names are swapped too. Zmigrod, Mielke, Wallach and Cotterell, "Counterfactual Data
Augmentation for Mitigating Gender Stereotypes in Languages with Rich Morphology" (ACL 2019)
show what word swapping misses: agreement and inflection (this module handles English plurals and
possessives only).

What is swapped (:class:`Swapper`), word by word (a word is a run of letters; ``'s``, hyphens and
punctuation stay as they are, so ``man's`` -> ``woman's`` and ``father-in-law`` -> ``mother-in-law``):

* the word pairs of ``assets/counterfactual/gender.toml`` in both directions, with plurals made by
  rule (``men``/``women``, ``actresses``, ``ladies``) and in the case they are written in
  (``He`` -> ``She``, ``HE`` -> ``SHE``; ``he`` -> ``she``); titles (Mr <-> Mrs) and first names
  (John <-> Mary, 64 pairs) only when written with a capital letter; a few one-way pairs (lord ->
  lady, Ms -> Mr);
* pronouns: he <-> she, him -> her, himself <-> herself, hers -> his, and the two ambiguous ones:
  ``her`` is a possessive determiner (-> ``his``) or an object pronoun (-> ``him``), and ``his`` a
  determiner (-> ``her``) or an independent possessive (-> ``hers``). The rule, looking at the
  words around it (no tagger), is: the *object/independent* reading when the next thing is the end
  of the text or punctuation, or a function word (a preposition, conjunction, determiner, pronoun
  or adverb particle from :data:`FUNCTION_WORDS`: "gave her a book", "told her that", "a friend of
  his."), or when the word before is a causative or perception verb (made, let, saw, heard, ...)
  and the next word a common bare verb ("made her cry", "let her go"); otherwise the *determiner*
  reading ("her book", "her own", "her very first", "her 1943 novel"). "his or her book" keeps the
  determiner reading on both sides ("with her and his sister" does not: after "and" the object reading
  was the more common one in the corpus). The counts of each reading are returned, and the rule's errors on real
  text are measured in docs/bias.md.

Not swapped: anything inside an ``exclude`` phrase (matched case-sensitively at word boundaries:
"Her Majesty", "Queen Elizabeth", "God", a user's list of proper names), names after a
place-name prefix ("St. John", "Lake George", "Port Elizabeth"), words not in the lists (the
lists are English and binary: see docs/bias.md for what that leaves out). A name that is also a
surname ("Bertrand Russell" if Russell were listed) is swapped: the rule does not know people.

The augmentation edits whole documents through :class:`selfsup_text.augment.text.TextAugmentation`
(ids -> text -> swapped text -> ids), with ``probability`` per document drawn from the sample's
generator; :func:`counterfactual_corpus` does it for a list of texts (``selfsup prepare
--counterfactual``), adding the swapped copies (CDA) or substituting them with probability 0.5 (CDS).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from selfsup.components import BuildContext
from selfsup_text.augment.options import CounterfactualOptions
from selfsup_text.augment.text import TextAugmentation

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "counterfactual"

#: Words after which ``her`` is an object pronoun and ``his`` an independent possessive.
FUNCTION_WORDS = frozenset("""
to in on at with for from by about of into onto over under after before as than like up down out off away back
through around across against along behind beyond during toward towards upon without within among between
and or but nor so yet that which who whom whose when where while if because although though until unless since
whether once
a an the this these those some any no all both either neither such what
i me you he him she her it we us they them myself yourself himself herself itself ourselves themselves
again too also now then here there today tonight yesterday tomorrow not well anyway either instead
is was are were be been being am will would shall should can could may might must do does did has have had
""".split())

#: Verbs after which ``her`` + a bare verb is an object ("made her cry", "saw her leave").
CAUSATIVE_VERBS = frozenset("""
make makes made making let lets letting see sees saw seen seeing watch watches watched watching hear hears heard
hearing help helps helped helping have has had having feel feels felt feeling bid bids notice notices noticed
""".split())

#: Common bare verbs read after an object ``her`` (the causative rule above).
BARE_VERBS = frozenset("""
go come leave stay do be cry laugh smile sing dance speak talk walk run know feel think sleep eat drink win lose
fall die work play try take make say tell get give live sit stand wait fly drive read write understand learn
change go get move stop start open close decide marry kill fight enter return pay buy sell wear look seem
""".split())

#: Words before a capitalised name that make it part of a place name ("St. John", "Lake George").
PLACE_PREFIXES = frozenset({"St", "Saint", "Sainte", "San", "Santa", "Lake", "Fort", "Mount", "Port", "Cape"})

#: Phrases never swapped by default (case-sensitive): the default of the ``exclude`` option.
DEFAULT_EXCLUDE = tuple(CounterfactualOptions.model_fields["exclude"].default)

_WORD = re.compile(r"[^\W\d_]+")  # a run of letters
_VOWELS = set("aeiou")


def pluralize(word: str) -> str:
    """The English plural of a lower-case noun by rule: -man -> -men, sibilants -> -es, consonant + y -> -ies."""
    if word.endswith("man"):
        return word[:-3] + "men"
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in _VOWELS:
        return word[:-1] + "ies"
    return word + "s"


def match_case(word: str, like: str) -> str:
    """``word`` in the case pattern of ``like``: UPPER (two or more letters all upper), Capitalised, or lower."""
    if len(like) > 1 and like.isupper():
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _load(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    import json

    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    return tomllib.loads(path.read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def builtin_lists() -> dict[str, Any]:
    """``assets/counterfactual/gender.toml`` as a dict."""
    return _load(ASSETS / "gender.toml")


@dataclass
class Tables:
    """Lower-case word -> replacement (lower case) for plain words, and for words swapped only when capitalised."""

    words: dict[str, str] = field(default_factory=dict)
    capitalised: dict[str, str] = field(default_factory=dict)  # titles and names, keys lower case
    names: set[str] = field(default_factory=set)  # lower-case names (for the place-prefix rule)

    def add(self, a: str, b: str, *, two_way: bool = True, capital_only: bool = False, name: bool = False) -> None:
        table = self.capitalised if capital_only else self.words
        for x, y in ((a, b), (b, a)) if two_way else ((a, b),):
            x, y = x.lower(), y
            if x in table and table[x].lower() != y.lower():
                raise ValueError(f"counterfactual pairs: {x!r} is paired with both {table[x]!r} and {y!r}")
            table[x] = y if capital_only else y.lower()
            if name:
                self.names.add(x)


def build_tables(pairs: Sequence[str] = ("words", "names"), extra: dict[str, Any] | None = None) -> Tables:
    """The swap tables of the built-in lists named in ``pairs`` ("words": gendered words and titles,
    "names": first names) plus an ``extra`` dict of the same layout as ``gender.toml``."""
    unknown = set(pairs) - {"words", "names"}
    if unknown:
        raise ValueError(f"unknown counterfactual pair lists {sorted(unknown)} (known: words, names)")
    tables = Tables()
    sources = [({k: v for k, v in builtin_lists().items() if k != "names"} if "words" in pairs else {}),
               ({"names": builtin_lists()["names"]} if "names" in pairs else {}), extra or {}]
    for source in sources:
        known = {"words", "no_plural", "plurals", "one_way", "titles", "titles_one_way", "names"}
        if set(source) - known:
            raise ValueError(f"counterfactual pairs: unknown keys {sorted(set(source) - known)} "
                             f"(known: {', '.join(sorted(known))})")
        no_plural = set(source.get("no_plural", []))
        plurals = dict(source.get("plurals", {}))
        for kind, two_way in (("words", True), ("one_way", False)):
            for a, b in _pairs(source.get(kind, []), kind):
                if {a.lower(), b.lower()} & PRONOUN_FORMS:
                    raise ValueError(f"counterfactual pairs: [{a}, {b}]: the pronouns he/she, him/her, his/her/hers "
                                     "and himself/herself are swapped by rule, not by pairs")
                tables.add(a, b, two_way=two_way)
                if a not in no_plural and b not in no_plural:
                    tables.add(plurals.get(a, pluralize(a)), plurals.get(b, pluralize(b)), two_way=two_way)
        for kind, two_way in (("titles", True), ("titles_one_way", False)):
            for a, b in _pairs(source.get(kind, []), kind):
                tables.add(a, b, two_way=two_way, capital_only=True)
        for a, b in _pairs(source.get("names", []), "names"):
            tables.add(a, b, capital_only=True, name=True)
    return tables


def _pairs(items: Iterable[Any], kind: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(w, str) and w for w in item)):
            raise ValueError(f"counterfactual pairs: {kind} entries are [male, female] pairs of words, got {item!r}")
        out.append((item[0].strip(), item[1].strip()))
    return out


#: Pronouns handled in code (the ambiguous her/his by context).
PRONOUNS = {"he": "she", "she": "he", "him": "her", "himself": "herself", "herself": "himself", "hers": "his"}
PRONOUN_FORMS = frozenset({*PRONOUNS, "her", "his"})
POSSESSIVES = frozenset({"his", "her", "their", "my", "your", "our", "its"})


class Swapper:
    """Swaps the attribute words of texts (see the module docstring): ``swap(text) -> (text, counts)``."""

    def __init__(self, pairs: Sequence[str] = ("words", "names"), *, extra: dict[str, Any] | None = None,
                 exclude: Sequence[str] = DEFAULT_EXCLUDE):
        self.tables = build_tables(pairs, extra)
        self.pronouns = "words" in pairs
        phrases = sorted({p.strip() for p in exclude if p.strip()}, key=len, reverse=True)
        self.exclude = (re.compile("|".join(rf"(?<!\w){re.escape(p)}(?!\w)" for p in phrases))
                        if phrases else None)

    def swap(self, text: str) -> tuple[str, Counter]:
        """``(swapped text, counts)``: counts of ``swapped`` words, ``excluded`` phrase occurrences,
        ``her_as_his``, ``her_as_him``, ``his_as_her``, ``his_as_hers`` and ``names_kept`` (after a place prefix)."""
        counts: Counter = Counter()
        protected: list[tuple[int, int]] = []
        if self.exclude is not None:
            for m in self.exclude.finditer(text):
                protected.append(m.span())
                counts["excluded"] += 1
        words = list(_WORD.finditer(text))
        out: list[str] = []
        last = 0
        p = 0
        for i, m in enumerate(words):
            start, end = m.span()
            while p < len(protected) and protected[p][1] <= start:
                p += 1
            if p < len(protected) and protected[p][0] < end:
                continue  # inside an excluded phrase
            new = self._replacement(text, words, i, counts)
            if new is None:
                continue
            out.append(text[last:start])
            out.append(new)
            last = end
            counts["swapped"] += 1
        out.append(text[last:])
        return "".join(out), counts

    def _replacement(self, text: str, words: list[re.Match], i: int, counts: Counter) -> str | None:
        word = words[i].group()
        low = word.lower()
        if word[0].isupper() and low in self.tables.capitalised:
            if low in self.tables.names and i > 0 and words[i - 1].group() in PLACE_PREFIXES \
                    and text[words[i - 1].end():words[i].start()] in (" ", ". "):
                counts["names_kept"] += 1
                return None
            target = self.tables.capitalised[low]
            return target.upper() if len(word) > 1 and word.isupper() else target
        if self.pronouns:
            if low in ("her", "his"):
                independent = self._object_reading(text, words, i)
                if low == "her":
                    target = "him" if independent else "his"
                else:
                    target = "hers" if independent else "her"
                counts[f"{low}_as_{target}"] += 1
                return match_case(target, word)
            if low in PRONOUNS:
                return match_case(PRONOUNS[low], word)
        if low in self.tables.words:
            return match_case(self.tables.words[low], word)
        return None

    @staticmethod
    def _object_reading(text: str, words: list[re.Match], i: int) -> bool:
        """Whether ``her``/``his`` at word ``i`` is an object / independent pronoun (see the module docstring)."""
        end = words[i].end()
        rest = text[end:].lstrip()
        if rest[:1].isdigit():  # "her 1943 novel"
            return False
        gap = text[end:words[i + 1].start()] if i + 1 < len(words) else text[end:]
        if i + 1 >= len(words) or gap.strip():  # the end of the text, or punctuation before the next word
            return True
        following = words[i + 1].group().lower()
        if following == "or" and i + 2 < len(words) and words[i + 2].group().lower() in POSSESSIVES \
                and not text[words[i + 1].end():words[i + 2].start()].strip():
            return False  # "his or her book"
        if following in FUNCTION_WORDS:
            return True
        before = words[i - 1].group().lower() if i > 0 else ""
        return before in CAUSATIVE_VERBS and following in BARE_VERBS


def swapper_of(options: Any, base_dir: Path | None = None) -> Swapper:
    """The :class:`Swapper` of a :class:`~selfsup_text.augment.options.CounterfactualOptions`."""
    extra = None
    if options.extra_pairs_file is not None:
        path = Path(options.extra_pairs_file)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        extra = _load(path)
    return Swapper(options.pairs, extra=extra, exclude=options.exclude)


class CounterfactualAugmentation(TextAugmentation):
    """Swaps the attribute words of a document with probability ``probability`` (drawn from the sample's generator)."""

    def __init__(self, options: Any, context: BuildContext):
        super().__init__(options, context)
        self.probability = float(options.probability)
        self.swapper = swapper_of(options, context.base_dir)

    def edit(self, text: str, generator: Any) -> str:
        import torch

        if self.probability < 1.0 and float(torch.rand((), generator=generator)) >= self.probability:
            return text
        return self.swapper.swap(text)[0]


def build(options: Any, context: BuildContext) -> CounterfactualAugmentation:
    return CounterfactualAugmentation(options, context)


def counterfactual_corpus(texts: list[str], *, mode: str, seed: int,
                          options: Any = None) -> tuple[list[str], dict[str, int]]:
    """A corpus with counterfactual copies: ``mode = "add"`` (CDA, Lu et al.) returns ``texts`` followed
    by a swapped copy of each text that contains attribute words; ``"substitute"`` (CDS, Maudslay et al.)
    replaces each such text by its swapped copy with probability 0.5 (a coin per text, seeded by ``seed``
    and its position, so a text's coin does not depend on the others), keeping order and size.

    ``options``: a ``CounterfactualOptions`` (default: the built-in words and names, the default exclusions;
    its ``probability`` is not used here). The counts: ``documents_in``, ``documents_out``,
    ``documents_with_attribute_words``, ``documents_added`` or ``documents_substituted``, and over the
    swapped texts kept: ``words_swapped``, ``excluded_phrases``, ``her_as_his``, ``her_as_him``,
    ``his_as_her``, ``his_as_hers``, ``names_kept``."""
    from selfsup.lib.seeding import sample_seeds

    if mode not in ("add", "substitute"):
        raise ValueError(f"counterfactual mode must be 'add' or 'substitute', got {mode!r}")
    if options is None:
        options = CounterfactualOptions()
    swapper = swapper_of(options)
    coins = [s / 2.0 ** 63 for s in sample_seeds(seed, "counterfactual", 0, range(len(texts)))] if texts else []
    stats: Counter = Counter()
    copies: list[str] = []
    out = list(texts)
    for i, text in enumerate(texts):
        swapped, counts = swapper.swap(text)
        if swapped == text:
            continue
        stats["documents_with_attribute_words"] += 1
        if mode == "add":
            copies.append(swapped)
        elif coins[i] < 0.5:
            out[i] = swapped
        else:
            continue
        stats.update(counts)
    out += copies
    result = {
        "documents_in": len(texts), "documents_out": len(out),
        "documents_with_attribute_words": stats["documents_with_attribute_words"],
        ("documents_added" if mode == "add" else "documents_substituted"):
            len(copies) if mode == "add" else sum(a != b for a, b in zip(out, texts)),
        "words_swapped": stats["swapped"], "excluded_phrases": stats["excluded"],
    }
    for key in ("her_as_his", "her_as_him", "his_as_her", "his_as_hers", "names_kept"):
        result[key] = stats[key]
    return out, result
