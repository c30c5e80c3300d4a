"""``selfsup prepare``'s quality and language filters: each Gopher and C4 rule at its threshold against the
formula written out here, synthetic boilerplate failing the right rule, the embedded corpus (real
Wikipedia and news) passing, the counting, the TOML configuration, py3langid on real sentences and the
command end to end."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from selfsup_text.data.gensim_data import corpus_documents
from selfsup_text.prepare.c4 import (
    BAD_WORDS_FILE,
    BadWords,
    C4Options,
    c4_clean,
    count_sentences,
    load_bad_words,
)
from selfsup_text.prepare.gopher import RULES, GopherOptions, gopher_failures, gopher_stats
from selfsup_text.prepare.language import LanguageOptions, identify, language_filter
from selfsup_text.prepare.quality import (
    QualityOptions,
    load_quality_config,
    quality_filter,
    removed_total,
    resolve_quality,
)

GOPHER = GopherOptions(enabled=True)
C4 = C4Options(enabled=True)


def distinct_words(n: int, length: int = 4) -> list[str]:
    """``n`` different lowercase words of ``length`` letters (no stop word among them)."""
    letters = "bcdfghjklmnpqrstvwxz"
    return ["".join(p) for p in itertools.islice(itertools.product(letters, repeat=length), n)]


def fails(rule: str, text: str, **thresholds) -> bool:
    return rule in gopher_failures(text, GOPHER.model_copy(update=thresholds))


# ----------------------------------------------------------------------------- the formulas, written out

_MARKS = re.compile(r"^[\W_]+|[\W_]+$")  # for the ASCII texts below: leading/trailing punctuation


def ref_words(text: str) -> list[str]:
    return [w for w in (_MARKS.sub("", t) for t in text.split()) if w]


def ref_duplicates(items: list[str]) -> tuple[float, float]:
    dup = [item for i, item in enumerate(items) if item in items[:i]]
    return len(dup) / len(items), sum(map(len, dup)) / sum(map(len, items))


def ref_top_ngram(words: list[str], n: int) -> float:
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    counts = Counter(grams)
    top = max(counts.values())
    if top < 2:
        return 0.0
    best = 0.0
    for gram in [g for g, c in counts.items() if c == top]:
        covered = {j for i, g in enumerate(grams) if g == gram for j in range(i, i + n)}
        best = max(best, sum(len(words[j]) for j in covered) / sum(map(len, words)))
    return best


def ref_duplicate_ngram(words: list[str], n: int) -> float:
    covered = set()
    for i in range(len(words) - n + 1):
        if any(words[j : j + n] == words[i : i + n] for j in range(i)):
            covered.update(range(i, i + n))
    return sum(len(words[j]) for j in covered) / sum(map(len, words))


def _repetitive_text() -> str:
    """Lines and paragraphs with repeats, and repeated word n-grams of every length up to 10."""
    rng = np.random.default_rng(0)
    pool = distinct_words(40, 3) + ["the", "of", "and", "a", "tree", "river", "stones"]
    chunk = " ".join(pool[i] for i in rng.integers(0, len(pool), 12))
    lines = [" ".join(pool[i] for i in rng.integers(0, len(pool), 8)) for _ in range(12)]
    lines[3] = lines[7] = lines[9] = lines[1]  # three duplicate lines
    text = "\n".join(lines[:6]) + "\n\n" + chunk + "\n\n" + "\n".join(lines[6:]) + "\n\n" + chunk
    return text


def _lines(text: str) -> list[str]:
    return [x.strip() for x in text.split("\n") if x.strip()]


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _lowered(text: str) -> list[str]:
    return [w.lower() for w in ref_words(text)]


# (measure, rule, threshold option, "max" or "min", the measure's formula)
MEASURES = [
    ("words", "gopher_word_count", "min_words", "min", lambda t: len(ref_words(t))),
    ("mean_word_length", "gopher_mean_word_length", "min_mean_word_length", "min",
     lambda t: np.mean([len(w) for w in ref_words(t)])),
    ("mean_word_length", "gopher_mean_word_length", "max_mean_word_length", "max",
     lambda t: np.mean([len(w) for w in ref_words(t)])),
    ("hash_ratio", "gopher_symbol_ratio", "max_symbol_word_ratio", "max", lambda t: t.count("#") / len(ref_words(t))),
    ("alpha_words", "gopher_alpha_words", "min_alpha_words", "min",
     lambda t: sum(any(c.isalpha() for c in tok) for tok in t.split()) / len(t.split())),
    ("duplicate_lines", "gopher_duplicate_lines", "max_duplicate_lines", "max",
     lambda t: ref_duplicates(_lines(t))[0]),
    ("duplicate_line_chars", "gopher_duplicate_line_chars", "max_duplicate_line_chars", "max",
     lambda t: ref_duplicates(_lines(t))[1]),
    ("duplicate_paragraphs", "gopher_duplicate_paragraphs", "max_duplicate_paragraphs", "max",
     lambda t: ref_duplicates(_paragraphs(t))[0]),
    ("duplicate_paragraph_chars", "gopher_duplicate_paragraph_chars", "max_duplicate_paragraph_chars", "max",
     lambda t: ref_duplicates(_paragraphs(t))[1]),
    *[(f"top_{n}gram_chars", f"gopher_top_{n}gram_chars", f"max_top_{n}gram_chars", "max",
       lambda t, n=n: ref_top_ngram(_lowered(t), n)) for n in (2, 3, 4)],
    *[(f"duplicate_{n}gram_chars", f"gopher_duplicate_{n}gram_chars", f"max_duplicate_{n}gram_chars", "max",
       lambda t, n=n: ref_duplicate_ngram(_lowered(t), n)) for n in range(5, 11)],
]


@pytest.mark.parametrize("stat, rule, option, kind, formula", MEASURES, ids=[m[2] for m in MEASURES])
def test_gopher_measure_equals_formula_and_threshold_edge(stat, rule, option, kind, formula):
    text = _repetitive_text() + "\n\n# ## tag, 1990 2001 (x) -- |"
    value = float(formula(text))
    assert value > 0  # the text exercises the measure
    assert gopher_stats(text, GOPHER)[stat] == pytest.approx(value, abs=1e-12)
    step = 1 if option == "min_words" else 1e-9
    assert not fails(rule, text, **{option: value})  # at the threshold: kept
    beyond = value - step if kind == "max" else value + step  # just past it: removed
    assert fails(rule, text, **{option: beyond})


def test_every_gopher_rule_is_tested():
    at_defaults = {"gopher_bullet_lines", "gopher_ellipsis_lines", "gopher_stop_words"}  # exact counts below
    assert {m[1] for m in MEASURES} | at_defaults == set(RULES)


def test_gopher_ngram_measures_by_hand():
    # duplicate 5-grams: "a b c d e" again at positions 5-9 -> 5 of 11 one-letter words
    words = "a b c d e a b c d e f".split()
    assert gopher_stats(" ".join(words))["duplicate_5gram_chars"] == pytest.approx(5 / 11)
    # top 2-gram "x y" twice covers 4 of the 5 words; overlapping repeats count each word once
    assert gopher_stats("x y x y z")["top_2gram_chars"] == pytest.approx(4 / 5)
    assert gopher_stats("ha ha ha ha")["top_2gram_chars"] == pytest.approx(1.0)  # not 3 x 2 / 4
    assert gopher_stats("ha ha ha ha")["duplicate_5gram_chars"] == 0.0  # fewer words than n
    assert gopher_stats("one two three four")["top_2gram_chars"] == 0.0  # nothing repeats
    # case and punctuation do not make n-grams different
    assert gopher_stats("The cat. the cat! THE CAT")["top_2gram_chars"] == pytest.approx(1.0)


def test_gopher_defaults_at_the_papers_edges():
    words = distinct_words(400)
    body = " ".join(words[:48])
    text49, text50 = "the of " + " ".join(words[:47]), "the of " + body
    assert fails("gopher_word_count", text49) and not fails("gopher_word_count", text50)
    assert not fails("gopher_word_count", "the of " + "word " * 99_998)  # 100,000 words kept
    assert fails("gopher_word_count", "the of " + "word " * 99_999)  # 100,001 removed
    # mean word length 3 vs 2.98, 10 vs 10.02 (punctuation does not count: "abc." is 3 letters)
    three = [w[:3] + "." for w in distinct_words(50)]
    assert not fails("gopher_mean_word_length", " ".join(three))
    assert fails("gopher_mean_word_length", " ".join(three[:49] + ["ab"]))
    ten = [w * 2 + "ab" for w in distinct_words(50)]  # 4 + 4 + 2 letters
    assert not fails("gopher_mean_word_length", " ".join(ten))
    assert fails("gopher_mean_word_length", " ".join(ten[:49] + ["abcdefghijk"]))
    # symbol-to-word ratio 0.1: 10 '#' per 100 words kept, 11 removed; ellipses the same
    hundred = words[:100]
    assert not fails("gopher_symbol_ratio", " ".join(hundred) + " #" * 10)
    assert fails("gopher_symbol_ratio", " ".join(hundred) + " #" * 11)
    assert not fails("gopher_symbol_ratio", " ".join(w + "..." if i < 10 else w for i, w in enumerate(hundred)))
    assert fails("gopher_symbol_ratio", " ".join(w + "…" if i < 11 else w for i, w in enumerate(hundred)))
    # 90% bullet lines kept, 91% removed; 30% ellipsis lines kept, 31% removed
    lines = [" ".join(words[i * 3 : i * 3 + 3]) for i in range(100)]
    bullets = ["•", "-", "*", "–", "▪"]
    assert not fails("gopher_bullet_lines", "\n".join(
        (bullets[i % 5] + " " + line) if i < 90 else line for i, line in enumerate(lines)))
    assert fails("gopher_bullet_lines", "\n".join(
        (bullets[i % 5] + " " + line) if i < 91 else line for i, line in enumerate(lines)))
    assert not fails("gopher_ellipsis_lines", "\n".join(line + "..." if i < 30 else line for i, line in
                                                          enumerate(lines)))
    assert fails("gopher_ellipsis_lines", "\n".join(line + "…" if i < 31 else line for i, line in enumerate(lines)))
    # 80% of tokens with a letter kept, 79% removed (numbers and a menu's '|' have none)
    assert not fails("gopher_alpha_words", " ".join(words[:80] + ["1990"] * 10 + ["|"] * 10))
    assert fails("gopher_alpha_words", " ".join(words[:79] + ["1990"] * 11 + ["|"] * 10))
    # two distinct stop words needed: "the" 50 times is one
    assert fails("gopher_stop_words", " ".join(words[:60] + ["the"] * 50))
    assert not fails("gopher_stop_words", " ".join(words[:60] + ["The", "of."]))
    # duplicate lines 3 of 10 kept, 4 of 10 removed; paragraphs the same
    uniq = [" ".join(words[i * 5 : i * 5 + 5]) for i in range(10)]
    assert not fails("gopher_duplicate_lines", "\n".join(uniq[:7] + uniq[:3]))
    assert fails("gopher_duplicate_lines", "\n".join(uniq[:6] + uniq[:4]))
    assert not fails("gopher_duplicate_paragraphs", "\n\n".join(uniq[:7] + uniq[:3]))
    assert fails("gopher_duplicate_paragraphs", "\n\n".join(uniq[:6] + uniq[:4]))
    # top 2-gram: 50 four-letter words, "p q" 5 times covers 10 words = 0.20 (kept), 6 times 0.24 (removed)
    filler = distinct_words(60)
    five = filler[:40] + ["pppp", "qqqq"] * 5
    six = filler[:38] + ["pppp", "qqqq"] * 6
    assert len(five) == len(six) == 50
    assert gopher_stats(" ".join(five))["top_2gram_chars"] == pytest.approx(0.20)
    assert not fails("gopher_top_2gram_chars", " ".join(five))
    assert fails("gopher_top_2gram_chars", " ".join(six))
    # duplicate 5-grams: 100 four-letter words; a 5-gram repeated 3 times after its first = 15 words = 0.15
    gram = ["alfa", "bram", "chad", "dela", "echo"]  # vowels: not among the consonant-only fillers

    def with_repeats(k: int) -> list[str]:
        out, fill = [], iter(distinct_words(100))
        for _ in range(k + 1):
            out += gram + [next(fill)]
        return out + [next(fill) for _ in range(100 - len(out))]

    assert gopher_stats(" ".join(with_repeats(3)))["duplicate_5gram_chars"] == pytest.approx(0.15)
    assert not fails("gopher_duplicate_5gram_chars", " ".join(with_repeats(3)))
    assert fails("gopher_duplicate_5gram_chars", " ".join(with_repeats(4)))


# ----------------------------------------------------------------------------- C4


def c4(text: str, **options):
    return c4_clean(text, C4.model_copy(update=options))


GOOD = ("The river rises in the hills above the town. It flows east through farmland for many miles. "
        "Fishermen have worked its lower reaches since the Middle Ages.")


def test_c4_line_rules_at_their_edges():
    # 5 words kept, 4 dropped; terminal punctuation . ! ? " ” kept; ; : ... and none dropped
    result = c4(GOOD + "\nOne two three four five.\nOne two three four.")
    assert "One two three four five." in result.text
    assert result.removed_lines == {"c4_short_lines": ["One two three four."]}
    for end in (".", "!", "?", '"', "”"):
        assert not c4(GOOD + f"\nThis line ends with a mark{end}").removed_lines
    for end in (";", ":", "...", "", ",", "…"):
        assert c4(GOOD + f"\nThis line ends without a mark{end}").removed_lines == {
            "c4_no_terminal_punctuation_lines": [f"This line ends without a mark{end}"]}
    # a word of 1000 characters is kept, of 1001 dropped (checked before anything else)
    assert not c4(GOOD + "\nA b c d " + "x" * 999 + ".").removed_lines  # the token "xx...x." has 1000
    assert list(c4(GOOD + "\nA b c d " + "x" * 1000 + ".").removed_lines) == ["c4_long_word_lines"]
    # javascript (any case) and policy lines
    js = c4(GOOD + "\nPlease enable JavaScript in your browser to see this page.")
    assert list(js.removed_lines) == ["c4_javascript_lines"] and "JavaScript" not in js.text
    for phrase in ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies"):
        line = f"By reading on you agree to our {phrase} and all that."
        assert c4(GOOD + "\n" + line.capitalize()).removed_lines == {"c4_policy_lines": [line.capitalize()]}
    # citation markers leave the line
    cited = c4("The town was founded in 1120.[1] Its church is older.[citation needed] The mill burned.[edit][23]")
    assert cited.citations == 4 and cited.text == "The town was founded in 1120. Its church is older. The mill burned."


def test_c4_page_rules():
    assert c4(GOOD).failures == [] and c4(GOOD).text == GOOD
    # sentences: 3 kept, 2 removed (abbreviations and initials do not end a sentence)
    assert c4("Mr. J. Smith went to Washington. He saw the U.S. Army there! Did he?").failures == []
    assert c4("Mr. J. Smith went to Washington. He saw the U.S. Army there today.").failures == [
        "c4_too_few_sentences"]
    assert c4("Too short a page", min_sentences=0).failures == ["c4_no_lines_left"]
    # lorem ipsum and { anywhere on the page, even on a line the line rules would drop
    assert c4(GOOD + "\nLorem ipsum dolor sit amet").failures == ["c4_lorem_ipsum"]
    assert c4(GOOD + "\nfunction f(x) { return x; }").failures == ["c4_curly_brace"]
    assert c4(GOOD + "\nfunction f(x) { return x; }", curly_brace=False).failures == []
    # rules switched off
    assert c4(GOOD + "\nLorem ipsum dolor sit amet.", lorem_ipsum=False).failures == []


def test_count_sentences():
    assert count_sentences("Mr. Smith went to Washington. He saw the U.S. Army there! Did he? Yes.") == 4
    assert count_sentences("J. R. R. Tolkien wrote books. They sold.") == 2
    assert count_sentences('"Stop." He said it twice.') == 2
    assert count_sentences("It cost 3.5 dollars. Then 4 more came.") == 2
    assert count_sentences("no capital after. the period") == 1
    assert count_sentences("") == 0


def test_bad_words_whole_words_and_phrases(tmp_path):
    words = load_bad_words()
    assert words.size == 403 and BAD_WORDS_FILE.is_file()
    assert words.find("The class assessed the grass and the bass.") is None  # inside other words: no match
    assert words.find("He called him an Ass.") == "ass"
    assert words.find("search: 2 girls 1 cup") == "2 girls 1 cup"
    assert words.find("a g-spot b") == "g-spot"
    result = c4_clean(GOOD + " Some sex scenes were cut.", C4, words)
    assert result.failures == ["c4_bad_words"] and result.bad_word == "sex"
    assert c4_clean(GOOD + " Some sex scenes were cut.", C4.model_copy(update={"bad_words": False})).failures == []
    own = tmp_path / "words.txt"
    own.write_text("fishermen\n\nmiddle ages\n")
    assert BadWords(own.read_text().splitlines()).find(GOOD) == "fishermen"
    assert c4(GOOD, bad_words_file=own).failures == ["c4_bad_words"]


# ----------------------------------------------------------------------------- boilerplate and real text

NEWS = corpus_documents("news")
REAL = [NEWS[i] for i in (2, 32, 67, 72, 120, 192, 270, 283, 36, 40, 50, 60, 70, 80, 110)]


def boilerplate(base: str) -> dict[str, str]:
    """Web boilerplate of each kind (appended to or replacing a real news document) -> the rule it fails."""
    menu = " | ".join(["Home", "News", "Sport", "Weather", "iPlayer", "Sounds", "Bitesize", "CBeebies",
                       "Food", "Travel", "Music", "Culture", "Future", "Worklife", "Earth", "Reel"] * 4)
    bullets = "\n".join(f"• {line}" for line in re.split(r"(?<=[.!?]) ", base) if line)
    code = "var settings = { theme: 'dark', retries: 3 };\nfunction load(x) { return settings[x]; }"
    return {
        "gopher_word_count": "Breaking news: more soon.",
        "gopher_alpha_words": menu,
        "gopher_symbol_ratio": base + " " + " ".join(f"#{w}" for w in base.split()[:40]),
        "gopher_bullet_lines": bullets,
        "gopher_stop_words": " ".join(distinct_words(80)),
        "gopher_duplicate_lines": base + "\n" + "\n".join(["Click here to subscribe to our newsletter today."] * 12),
        "c4_lorem_ipsum": base + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.",
        "c4_curly_brace": base + "\n" + code,
    }


def test_boilerplate_fails_the_right_rule_and_real_news_passes():
    options, _ = resolve_quality("gopher+c4")
    for i, (rule, text) in enumerate(boilerplate(REAL[0]).items()):
        kept, report = quality_filter([text], options)
        assert kept == [] and report[rule]["removed"] == 1, (rule, [r for r, e in report.items() if e.get("removed")])
    kept, report = quality_filter(REAL, options)
    assert len(kept) == len(REAL) and removed_total(report) == 0
    # a cookie banner or a JavaScript warning costs the line, not the page
    page = REAL[1] + "\nThis site uses cookies to give you the best experience.\nPlease enable JavaScript to read on."
    kept, report = quality_filter([page], options)
    assert kept == [REAL[1]]
    assert report["c4_policy_lines"]["lines_removed"] == report["c4_javascript_lines"]["lines_removed"] == 1
    assert report["c4_policy_lines"]["examples"] == ["This site uses cookies to give you the best experience."]


def test_embedded_corpus_mostly_passes_and_counts_add_up():
    docs = corpus_documents("all")  # 106 Wikipedia articles and 293 news documents
    gopher_only, _ = resolve_quality("gopher")
    kept, report = quality_filter(docs, gopher_only)
    assert len(kept) >= 0.98 * len(docs)  # 396 of 399 with the paper's thresholds
    assert len(kept) + removed_total(report) == len(docs)
    c4_no_words = QualityOptions(c4=C4Options(enabled=True, bad_words=False))
    kept, report = quality_filter(docs, c4_no_words)
    assert len(kept) >= 0.95 * len(docs)  # 389 of 399
    assert sum(e["lines_removed"] for r, e in report.items() if r.endswith("_lines")) > 500  # headings, lists
    both, _ = resolve_quality("gopher+c4")
    kept, report = quality_filter(docs, both)
    assert len(kept) + removed_total(report) == len(docs)
    for entry in report.values():
        if "removed" in entry:
            assert entry["removed"] <= entry["would_fail"] and len(entry["examples"]) == min(entry["removed"], 3)
    # C4's word list is blunt: "sexual", "rape" and the like end articles and news reports (Dodge et al. 2021)
    assert report["c4_bad_words"]["removed"] == max(e.get("removed", 0) for e in report.values())
    assert all(e.startswith("[") and len(e) <= 200 + 40 for e in report["c4_bad_words"]["examples"])


def test_first_failing_rule_wins_and_would_fail_counts_all():
    options, _ = resolve_quality("gopher+c4")
    short_lorem = "Lorem ipsum dolor sit amet."  # too few words (Gopher) and lorem ipsum (C4)
    kept, report = quality_filter([short_lorem, REAL[0]], options)
    assert kept == [REAL[0]]
    assert report["gopher_word_count"] == {"removed": 1, "would_fail": 1, "examples": [short_lorem]}
    assert report["c4_lorem_ipsum"] == {"removed": 0, "would_fail": 1, "examples": []}
    assert quality_filter(["x"], QualityOptions()) == (["x"], {})  # nothing enabled: nothing done


# ----------------------------------------------------------------------------- configuration


def test_quality_config_file(tmp_path):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "mine.txt").write_text("zebra\n")
    config = tmp_path / "q.toml"
    config.write_text('[gopher]\nmin_words = 20\nmax_top_2gram_chars = 0.3\n\n[c4]\nmin_words_per_line = 3\n'
                      'bad_words_file = "lists/mine.txt"\n')
    options = load_quality_config(config)
    assert options.gopher.min_words == 20 and options.gopher.max_top_2gram_chars == 0.3
    assert options.gopher.max_words == 100_000 and options.c4.min_sentences == 3  # the rest stay the papers'
    assert options.c4.bad_words_file == tmp_path / "lists" / "mine.txt"  # relative to the file
    both, warnings = resolve_quality("gopher+c4", config)
    assert both.gopher.enabled and both.c4.enabled and both.gopher.min_words == 20 and warnings == []
    only, warnings = resolve_quality("gopher", config)
    assert only.named() == "gopher" and warnings == [
        "--quality-config sets c4 thresholds (bad_words_file, min_words_per_line) but c4 is off "
        "(use --quality c4 or gopher+c4)"]
    config.write_text("[gopher]\nenabled = true\n")
    assert resolve_quality(None, config)[0].named() == "gopher"  # without --quality the file decides
    assert resolve_quality("none", config)[0].named() == "none"


@pytest.mark.parametrize("toml, message", [
    ("[gopher]\nmin_word = 20\n", "gopher.min_word: unknown field; did you mean 'min_words'?"),
    ("[gopheer]\nmin_words = 20\n", "gopheer: unknown field; did you mean 'gopher'?"),
    ("[c4]\nmin_sentence = 2\n", "c4.min_sentence: unknown field; did you mean 'min_sentences'?"),
    ("[gopher]\nmax_bullet_lines = 1.5\n", "gopher.max_bullet_lines: Input should be less than or equal to 1 "
                                           "(got 1.5)"),
    ("[gopher]\nmin_words = 200\nmax_words = 100\n", "min_words (200) is above max_words (100)"),
    ('[c4]\nbad_words_file = "missing.txt"\n', "c4.bad_words_file: file not found"),
    ("[gopher\n", "invalid TOML"),
])
def test_quality_config_errors_name_the_field(tmp_path, toml, message):
    config = tmp_path / "q.toml"
    config.write_text(toml)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_quality_config(config)


def test_quality_choice_is_checked():
    with pytest.raises(ValueError, match="did you mean 'gopher'"):
        resolve_quality("gopehr")


# ----------------------------------------------------------------------------- language

# Article 1 of the Universal Declaration of Human Rights in the UN's translations, and short real sentences
UDHR = {
    "en": "All human beings are born free and equal in dignity and rights. They are endowed with reason and "
          "conscience and should act towards one another in a spirit of brotherhood.",
    "fr": "Tous les êtres humains naissent libres et égaux en dignité et en droits. Ils sont doués de raison et "
          "de conscience et doivent agir les uns envers les autres dans un esprit de fraternité.",
    "de": "Alle Menschen sind frei und gleich an Würde und Rechten geboren. Sie sind mit Vernunft und Gewissen "
          "begabt und sollen einander im Geist der Brüderlichkeit begegnen.",
    "es": "Todos los seres humanos nacen libres e iguales en dignidad y derechos y, dotados como están de razón "
          "y conciencia, deben comportarse fraternalmente los unos con los otros.",
}
SHORT = {
    "en": "The train to London leaves at noon.",
    "fr": "Le train pour Paris part à midi.",
    "de": "Der Zug nach Berlin fährt um zwölf Uhr ab.",
    "es": "El tren para Madrid sale de la estación a las doce.",
}


def test_language_identification_on_real_sentences():
    for lang, text in UDHR.items():
        found, score = identify(text)
        assert found == lang and score >= 0.65, (text, found, score)  # two sentences: confident
    for lang, text in SHORT.items():
        assert identify(text)[0] == lang  # one short sentence: right, less sure (0.70 to 0.98 with py3langid 0.4)
    both = LanguageOptions(languages=["en", "FR"], min_score=0.5)
    kept, report = language_filter([*UDHR.values(), *SHORT.values()], both)
    assert kept == [UDHR["en"], UDHR["fr"], SHORT["en"], SHORT["fr"]]
    assert report["kept"] == {"en": 2, "fr": 2} and report["removed"] == 4
    assert report["removed_by_language"] == {"de": 2, "es": 2} and report["low_score"] == 0
    assert len(report["examples"]) == 3 and report["examples"][0].startswith("de ")


def test_language_score_threshold_edge():
    text = "Il pleut."  # French, but short: a lower probability
    lang, score = identify(text)
    assert lang == "fr" and score < 0.99
    assert language_filter([text], LanguageOptions(languages=["fr"], min_score=score))[0] == [text]
    kept, report = language_filter([text], LanguageOptions(languages=["fr"], min_score=min(1.0, score + 1e-6)))
    assert kept == [] and report["low_score"] == 1 and report["removed_by_language"] == {"fr": 1}


def test_language_codes_are_checked():
    with pytest.raises(ValueError, match="unknown language code 'eng'; did you mean 'en'"):
        language_filter(["text"], LanguageOptions(languages=["eng"]))


def test_missing_py3langid_names_the_extra(monkeypatch):
    from selfsup_text.prepare import language

    language.identifier.cache_clear()
    monkeypatch.setitem(sys.modules, "py3langid", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "py3langid.langid", None)
    with pytest.raises(ImportError, match=re.escape("the language filter needs py3langid: "
                                                    "pip install 'selfsup-text[web]'")):
        identify("text")


# ----------------------------------------------------------------------------- the command


def run_prepare(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SELFSUP_PLUGINS": "text", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "selfsup", "prepare", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_prepare_command_filters_and_counts(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    real = REAL[:6]
    for i, doc in enumerate(real):
        (folder / f"news{i}.txt").write_text(doc)
    planted = boilerplate(REAL[6])
    for rule in ("gopher_alpha_words", "gopher_duplicate_lines", "gopher_stop_words"):
        (folder / f"{rule}.txt").write_text(planted[rule])
    (folder / "lorem.txt").write_text(boilerplate(REAL[7])["c4_lorem_ipsum"])
    (folder / "code.txt").write_text(boilerplate(REAL[8])["c4_curly_brace"])
    (folder / "cookies.txt").write_text(REAL[9] + "\nWe use cookies to improve this site, see our cookie policy.")
    (folder / "contact.txt").write_text(REAL[10] + "\nWrite to Jane at jane.doe@example.org or call +44 20 7946 "
                                        "0958, and the server is at 192.0.2.44 for now.")
    (folder / "fr.txt").write_text(UDHR["fr"] + " " + SHORT["fr"])
    (folder / "de.txt").write_text(UDHR["de"])
    result = run_prepare("in", "--out", "out", "--quality", "gopher+c4", "--languages", "en", "--pii",
                         "--tokenizer", "bytes", "--split", "0.8,0.2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["documents_in"] == 15
    assert manifest["pii"] == {"emails": 1, "phones": 1, "ips": 1, "documents": 1}
    # the language step (first) also catches the menu (English, probability 0.58) and the consonant strings
    # (zxx: no linguistic content), before Gopher's alpha-word and stop-word rules would
    language = manifest["language"]
    assert language["kept"] == {"en": 11} and language["low_score"] == 1
    assert language["removed_by_language"] == {"fr": 1, "de": 1, "en": 1, "zxx": 1}
    assert any(e.startswith("en 0.") and "Home | News" in e for e in language["examples"])
    removed = {rule: e["removed"] for rule, e in manifest["quality"].items() if e.get("removed")}
    assert removed == {"gopher_duplicate_lines": 1, "c4_lorem_ipsum": 1, "c4_curly_brace": 1}
    assert manifest["quality_removed"] == 3 and manifest["documents_kept"] == 8
    assert manifest["quality"]["c4_policy_lines"]["lines_removed"] == 1
    assert manifest["settings"]["quality"]["c4"]["min_words_per_line"] == 5
    assert "quality: removed 3 documents" in result.stdout and "pii replaced: 1 e-mails" in result.stdout
    tokens = np.concatenate([np.fromfile(tmp_path / "out" / f"{s}.bin", dtype="<u2") for s in ("train", "val")])
    text = bytes(int(t) - 5 if t != 3 else 10 for t in tokens).decode("utf-8")
    assert "Write to Jane at <EMAIL> or call <PHONE>, and the server is at <IP> for now." in text
    assert "jane.doe" not in text and "cookie policy" not in text and "Lorem" not in text

    (tmp_path / "bad.toml").write_text("[gopher]\nmin_word = 10\n")
    bad = run_prepare("in", "--out", "bad", "--quality", "gopher", "--quality-config", "bad.toml", cwd=tmp_path)
    assert bad.returncode == 2 and "gopher.min_word: unknown field; did you mean 'min_words'?" in bad.stderr
    bad = run_prepare("in", "--out", "bad", "--languages", "english", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown language code 'english'" in bad.stderr
