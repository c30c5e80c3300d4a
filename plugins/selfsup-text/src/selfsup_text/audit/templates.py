"""The audit's template sets and word sets: built in (``assets/audit/*.toml``) or added from a file.

Two kinds of material:

* **attributes** (for the likelihood test, :mod:`.likelihood`): two groups (``["male", "female"]``),
  word pairs per slot (``person = [["he", "she"], ["the man", "the woman"], ["John", "Mary"], ...]``)
  and templates with one slot and the group their content is stereotypically associated with
  (``"{person} worked as a nurse on the night shift."``, ``stereotype = "female"``). Every template
  filled with every pair of its slot gives one minimally different sentence pair.
* **WEAT tests** (for :mod:`.weat`): target sets X, Y and attribute sets A, B of words, each word
  put into every SEAT template of its kind (``"This is {}."``, ``"{} is here."``, ...).

A file given with ``--extra`` (TOML, or JSON of the same shape) has the layout of the built-in files:
``[attributes.NAME]`` tables (``groups``, ``words``, ``templates``) add templates and pairs to an
attribute of the same name or define a new one; ``[tests.NAME]`` adds WEAT tests; ``[templates]``
adds SEAT templates. Everything is checked when it is read (:class:`ValueError` naming the entry).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "audit"
BUILTIN_FILES = ("gender.toml", "weat.toml")
_SLOT = re.compile(r"\{(\w*)\}")


@dataclass(frozen=True)
class Template:
    attribute: str
    index: int  # position among the attribute's templates
    text: str
    slot: str
    stereotype: int  # index of the group the content is stereotypically associated with (0 or 1)


@dataclass
class Attribute:
    name: str
    groups: tuple[str, str]
    description: str = ""
    words: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # slot -> [(group 0 word, group 1 word)]
    templates: list[Template] = field(default_factory=list)


@dataclass(frozen=True)
class SentencePair:
    """One template filled with the two words of a pair: ``sentences[g]`` names group ``g``."""

    attribute: str
    template: int
    words: tuple[str, str]
    sentences: tuple[str, str]
    stereotype: int  # which of the two sentences is the stereotypical one


@dataclass(frozen=True)
class WeatTest:
    name: str
    title: str
    attribute: str
    sets: dict[str, tuple[str, ...]]  # "X", "Y", "A", "B" -> words
    set_names: dict[str, str]
    kinds: dict[str, str]  # "targets", "attributes" -> SEAT template kind


@dataclass
class TemplateSets:
    attributes: dict[str, Attribute] = field(default_factory=dict)
    tests: dict[str, WeatTest] = field(default_factory=dict)
    seat_templates: dict[str, list[str]] = field(default_factory=dict)  # kind -> templates with one "{}"

    def known_attributes(self) -> list[str]:
        return sorted(set(self.attributes) | {t.attribute for t in self.tests.values()})


def read_file(path: str | Path) -> dict[str, Any]:
    """A TOML or JSON file as a dict."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        data = tomllib.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a table at the top")
    return data


def load_sets(extra: str | Path | None = None) -> TemplateSets:
    """The built-in sets, plus those of ``extra`` (a TOML/JSON file) when given."""
    sets = TemplateSets()
    for name in BUILTIN_FILES:
        add_sets(sets, read_file(ASSETS / name), str(ASSETS / name))
    if extra is not None:
        add_sets(sets, read_file(extra), str(extra))
    return sets


def add_sets(sets: TemplateSets, data: dict[str, Any], where: str) -> None:
    """Merge one file's content into ``sets`` (checked; errors name ``where`` and the entry)."""
    unknown = set(data) - {"attributes", "tests", "templates"}
    if unknown:
        raise ValueError(f"{where}: unknown top-level keys {sorted(unknown)} (known: attributes, tests, templates)")
    for name, table in (data.get("attributes") or {}).items():
        _add_attribute(sets, name, table, f"{where}: attributes.{name}")
    for kind, templates in (data.get("templates") or {}).items():
        if not isinstance(templates, list) or not all(isinstance(t, str) and t.count("{}") == 1 for t in templates):
            raise ValueError(f"{where}: templates.{kind} must be a list of strings with one '{{}}' each")
        known = sets.seat_templates.setdefault(kind, [])
        known.extend(t for t in templates if t not in known)
    for name, table in (data.get("tests") or {}).items():
        _add_test(sets, name, table, f"{where}: tests.{name}")


def _add_attribute(sets: TemplateSets, name: str, table: dict[str, Any], where: str) -> None:
    unknown = set(table) - {"groups", "description", "words", "templates"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (known: groups, description, words, templates)")
    groups = table.get("groups")
    attribute = sets.attributes.get(name)
    if attribute is None:
        if not (isinstance(groups, list) and len(groups) == 2 and all(isinstance(g, str) and g for g in groups)
                and groups[0] != groups[1]):
            raise ValueError(f"{where}: groups must name exactly two different groups, got {groups!r}")
        attribute = sets.attributes[name] = Attribute(name, (groups[0], groups[1]), str(table.get("description", "")))
    elif groups is not None and tuple(groups) != attribute.groups:
        raise ValueError(f"{where}: groups {groups!r} differ from the attribute's {list(attribute.groups)!r}")
    for slot, pairs in (table.get("words") or {}).items():
        checked = []
        for pair in pairs if isinstance(pairs, list) else [pairs]:
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(w, str) and w.strip() for w in pair)):
                raise ValueError(f"{where}: words.{slot} entries are [{attribute.groups[0]}, {attribute.groups[1]}] "
                                 f"pairs of words, got {pair!r}")
            checked.append((pair[0].strip(), pair[1].strip()))
        attribute.words.setdefault(slot, []).extend(checked)
    for entry in table.get("templates") or []:
        if not isinstance(entry, dict) or set(entry) != {"text", "stereotype"}:
            raise ValueError(f"{where}: each template is {{text = ..., stereotype = ...}}, got {entry!r}")
        slots = _SLOT.findall(entry["text"])
        if len(slots) != 1 or not slots[0]:
            raise ValueError(f"{where}: template {entry['text']!r} must have exactly one {{slot}}")
        if entry["stereotype"] not in attribute.groups:
            raise ValueError(f"{where}: template {entry['text']!r}: stereotype {entry['stereotype']!r} is not one of "
                             f"the groups {list(attribute.groups)}")
        attribute.templates.append(Template(name, len(attribute.templates), entry["text"], slots[0],
                                            attribute.groups.index(entry["stereotype"])))
    for template in attribute.templates:
        if not attribute.words.get(template.slot):
            raise ValueError(f"{where}: template {template.text!r} uses slot {{{template.slot}}}, which has no "
                             "word pairs")


def _add_test(sets: TemplateSets, name: str, table: dict[str, Any], where: str) -> None:
    if name in sets.tests:
        raise ValueError(f"{where}: a WEAT test named {name!r} exists already")
    required = {"attribute", "X", "Y", "A", "B"}
    known = required | {"title", "X_name", "Y_name", "A_name", "B_name", "targets", "attributes"}
    if required - set(table) or set(table) - known:
        raise ValueError(f"{where}: needs {sorted(required)}, may have {sorted(known - required)}; got {sorted(table)}")
    sets_: dict[str, tuple[str, ...]] = {}
    for key in "XYAB":
        words = table[key]
        if not (isinstance(words, list) and len(words) >= 2 and all(isinstance(w, str) and w.strip() for w in words)):
            raise ValueError(f"{where}: {key} must be a list of at least two words")
        sets_[key] = tuple(w.strip() for w in words)
    kinds = {"targets": table.get("targets", "terms"), "attributes": table.get("attributes", "terms")}
    sets.tests[name] = WeatTest(name, str(table.get("title", name)), str(table["attribute"]), sets_,
                                {k: str(table.get(f"{k}_name", k)) for k in "XYAB"}, kinds)


def fill(template: str, word: str, slot: str | None = None) -> str:
    """``template`` with its slot (``{slot}``, or ``{}``) replaced by ``word``; a sentence that starts with
    the word gets a capital first letter ("he is" -> "He is")."""
    text = template.replace("{" + (slot or "") + "}", word, 1)
    if template.startswith("{") and text[:1].islower():
        text = text[0].upper() + text[1:]
    return text


def sentence_pairs(sets: TemplateSets, attributes: list[str]) -> list[SentencePair]:
    """Every template of ``attributes`` filled with every word pair of its slot."""
    pairs = []
    for name in attributes:
        attribute = sets.attributes.get(name)
        if attribute is None:
            continue
        for t in attribute.templates:
            for words in attribute.words[t.slot]:
                pairs.append(SentencePair(name, t.index, words, (fill(t.text, words[0], t.slot),
                                                                  fill(t.text, words[1], t.slot)), t.stereotype))
    return pairs


def seat_sentences(sets: TemplateSets, words: tuple[str, ...], kind: str) -> tuple[list[str], list[int]]:
    """``(sentences, word index of each)``: every word in every SEAT template of ``kind``."""
    templates = sets.seat_templates.get(kind)
    if not templates:
        raise ValueError(f"no SEAT templates of kind {kind!r} (known: {', '.join(sorted(sets.seat_templates))})")
    sentences, owners = [], []
    for i, word in enumerate(words):
        for template in templates:
            sentences.append(fill(template, word))
            owners.append(i)
    return sentences, owners
