"""EDA and its WordNet reader: known synsets and inflections, the four operations' counts, stop words,
casing and punctuation, seeded determinism, the registry (as recipes build it) and `selfsup augment`."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest
import torch

import selfsup_text
from selfsup.components import BuildContext
from selfsup.testing import AugmentationConformance
from selfsup_text.augment.eda import STOP_WORDS, Words, build, n_changes
from selfsup_text.augment.options import EDAOptions
from selfsup_text.augment.wordnet import WordNet, find_wordnet_dir

try:
    WORDNET = find_wordnet_dir()
except FileNotFoundError as exc:  # pragma: no cover - the development machine and CI have wordnet-base
    if os.environ.get("CI"):
        raise
    pytest.skip(f"no WordNet database: {exc}", allow_module_level=True)

# Content words with single-sense-rich synonym sets, each once; not stop words.
CONTENT = ("movie actor car happy dull tedious journey house music river garden student doctor city question "
           "answer window teacher ocean picture").split()


def eda(**options):
    return build(EDAOptions(**options), BuildContext(name="eda"))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- the WordNet reader


def test_wordnet_known_synsets_and_synonyms():
    wn = WordNet()
    assert wn.synonyms("happy") == ["felicitous", "glad", "well-chosen"]  # WordNet 3.0: happy.a.01-04
    car = wn.synsets("car", "n")
    assert [s.offset for s in car] == [2958343, 2959942, 2960501, 2960352, 2934451]  # sense order of index.noun
    assert car[0].words == ("car", "auto", "automobile", "machine", "motorcar") and car[0].ss_type == "n"
    assert "railway car" in wn.synonyms("car")  # multi-word lemma: underscore -> space
    assert wn.synonyms("car", senses=1) == ["auto", "automobile", "machine", "motorcar"]
    handy = wn.synset("a", 19731)  # "handy ready_to_hand(p)": the adjective's syntactic marker is dropped
    assert handy.words == ("handy", "ready_to_hand") and handy.ss_type == "s"


def test_wordnet_morphy_exceptions_and_rules():
    wn = WordNet()
    assert wn.exceptions("n")["geese"] == ("goose",)
    assert wn.morphy("geese", "n") == ["goose"]  # exception list
    assert wn.morphy("churches", "n") == ["church"]  # -ches -> -ch
    assert wn.morphy("running", "v") == ["run"]  # exception list (running run)
    assert wn.morphy("walked", "v") == ["walk"]  # -ed -> ''
    assert set(wn.morphy("better", "a")) == {"better", "good", "well"}
    assert wn.morphy("xqzzy", "n") == []
    assert "goose" not in wn.synonyms("geese") and wn.synonyms("geese") == wn.synonyms("goose")


def test_wordnet_reads_a_hand_made_database(tmp_path):
    """The parser on a two-synset database written here (offsets are byte positions)."""
    header = "  1 This software and database is provided as is.  \n"
    line_a = "{:08d} 05 n 02 big_cat 0 cat 0 000 | a feline  \n"
    offset_a = len(header)
    line_a = line_a.format(offset_a)
    offset_b = offset_a + len(line_a)
    line_b = f"{offset_b:08d} 05 n 01 Kitty 1 000 | a young cat  \n"
    (tmp_path / "data.noun").write_text(header + line_a + line_b)
    (tmp_path / "index.noun").write_text(header + f"cat n 2 0 2 0 {offset_a:08d} {offset_b:08d}  \n")
    (tmp_path / "noun.exc").write_text("kitties kitty\n")
    for pos in ("verb", "adj", "adv"):
        (tmp_path / f"data.{pos}").write_text(header)
        (tmp_path / f"index.{pos}").write_text(header)
    wn = WordNet(tmp_path)
    assert wn.lemma_offsets("n") == {"cat": (offset_a, offset_b)}
    assert wn.synonyms("cats") == ["big cat", "Kitty"]
    assert wn.synset("n", offset_b).gloss == "a young cat"
    copy = pickle.loads(pickle.dumps(wn))  # data-loader workers get a copy that reopens the files
    assert copy.synonyms("cat") == ["big cat", "Kitty"]


def test_missing_wordnet_names_the_package(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="apt-get install wordnet-base"):
        find_wordnet_dir(tmp_path / "nowhere")
    monkeypatch.setenv("WNSEARCHDIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"\$WNSEARCHDIR.*lacks index.noun"):
        find_wordnet_dir()
    with pytest.raises(FileNotFoundError, match="apt-get install wordnet-base"):  # through the registry too
        BuildContext(name="eda").build("augmentations", "eda", {"wordnet_dir": str(tmp_path / "nowhere")})
    monkeypatch.setenv("WNSEARCHDIR", str(WORDNET))
    assert find_wordnet_dir() == WORDNET


# ----------------------------------------------------------------------------- text handling


@pytest.mark.parametrize("text", [
    "The quick brown fox. Then it sleeps!", "simplistic , silly and tedious .", "",
    "Hello, world! I think NASA's movie is good, bad and ugly.\n\nNew paragraph here.", "  21st century  ",
])
def test_words_render_back_unchanged(text):
    assert Words(text).render() == text


def test_casing_and_punctuation_are_kept():
    words = Words("Movies are fun. MOVIES rock, Paris said.")
    assert words.words[0] == "movies"  # sentence-initial capital lowered, restored when rendered
    words.replace(2, "amusing")
    words.replace(3, "films")
    assert words.render() == "Movies are amusing. FILMS rock, Paris said."
    words.swap(0, 5)  # "Paris" moves to the front, "movies" mid-sentence
    assert words.render() == "Paris are amusing. FILMS rock, movies said."
    words = Words("good, bad. Yes")
    words.delete(1)
    assert words.render() == "good. Yes"  # the comma goes with the deleted word's separators
    words = Words("Yes. Then go")
    words.delete(0)
    assert words.render() == "Then go"
    words = Words("It is (very) good")
    words.delete(2)
    assert words.render() == "It is () good"
    words = Words("the film")
    words.insert(0, "motion picture")
    assert words.render() == "motion picture the film"  # lower-case text: nothing capitalised


# ----------------------------------------------------------------------------- the operations


def test_n_follows_the_paper_formula():
    assert [n_changes(0.1, n) for n in (1, 4, 14, 15, 16, 25, 100)] == [1, 1, 1, 2, 2, 3, 10]
    assert n_changes(0.05, 30) == 2  # 1.5 rounds up


@pytest.mark.parametrize("alpha", [0.1, 0.25, 0.5])
def test_synonym_replacement_changes_n_distinct_words(alpha):
    aug = eda(operations=["sr"], alpha_sr=alpha)
    text = " ".join(CONTENT)
    n = n_changes(alpha, len(CONTENT))
    for seed in range(10):
        words = Words(text)
        assert aug.synonym_replacement(words, gen(seed))
        changed = [i for i, w in enumerate(words.words) if w != CONTENT[i]]
        assert len(changed) == n  # every content word has synonyms: exactly n replaced
        for i in changed:
            assert words.words[i] in aug.synonyms(CONTENT[i])


def test_synonym_replacement_replaces_every_occurrence_and_spares_stop_words():
    aug = eda(operations=["sr"], alpha_sr=1.0)
    text = "the movie is not a good movie but the car is very fast and the house is not"
    words = Words(text)
    aug.synonym_replacement(words, gen(0))
    before = text.split()
    for i, w in enumerate(before):
        if w in STOP_WORDS:
            assert words.words[i] == w  # stop words ("the", "not", "very", ...) are never replaced
        else:
            assert words.words[i] != w
    assert words.words[1] == words.words[6]  # both "movie"s became the same synonym
    assert "not" in STOP_WORDS and "no" in STOP_WORDS and len(STOP_WORDS) == 127


def test_random_insertion_inserts_n_synonyms():
    aug = eda(operations=["ri"], alpha_ri=0.2)
    n = n_changes(0.2, len(CONTENT))
    for seed in range(10):
        words = Words(" ".join(CONTENT))
        assert aug.random_insertion(words, gen(seed))
        assert len(words.words) == len(CONTENT) + n
        rest = iter(words.words)
        assert all(any(w == x for x in rest) for w in CONTENT)  # the originals stay, in order
        inserted = list(words.words)
        for w in CONTENT:
            inserted.remove(w)
        assert all(any(w in aug.synonyms(c) for c in words.words) for w in inserted)  # of a word in the text


def test_random_insertion_needs_a_word_with_synonyms():
    aug = eda(operations=["ri"])
    assert aug.edit("the of and xqzzy", gen(0)) == "the of and xqzzy"
    assert aug.stats["ri_nothing_to_do"] == 1


def test_random_swap_moves_at_most_2n_words():
    aug = eda(operations=["rs"], alpha_rs=0.1)
    n = n_changes(0.1, len(CONTENT))
    for seed in range(20):
        words = Words(" ".join(CONTENT))
        aug.random_swap(words, gen(seed))
        moved = sum(a != b for a, b in zip(words.words, CONTENT))
        assert sorted(words.words) == sorted(CONTENT) and 2 <= moved <= 2 * n


def test_random_deletion_rate_and_never_empty():
    aug = eda(operations=["rd"], p_rd=0.3)
    text = " ".join(CONTENT * 10)  # 200 words
    kept = [len(Words(aug.edit(text, gen(seed))).words) for seed in range(50)]
    assert abs(1 - sum(kept) / (50 * 200) - 0.3) < 0.02  # each word deleted with probability 0.3
    aug = eda(operations=["rd"], p_rd=0.99)
    for seed in range(20):
        assert len(Words(aug.edit("good bad ugly", gen(seed))).words) >= 1
    assert eda(operations=["rd"], p_rd=0.99).edit("alone", gen(0)) == "alone"


def test_seeded_determinism_and_one_operation_per_edit():
    aug = eda()
    text = "The movie was a long, tedious journey; the actors looked happy but the music was dull."
    outs = [aug.edit(text, gen(seed)) for seed in range(40)]
    assert outs == [aug.edit(text, gen(seed)) for seed in range(40)]
    assert len(set(outs)) > 30  # different seeds, different edits
    assert sum(aug.stats[op] for op in ("sr", "ri", "rs", "rd")) + sum(
        aug.stats[f"{op}_nothing_to_do"] for op in ("sr", "ri", "rs", "rd")) == 80  # one operation per edit
    assert all(aug.stats[op] > 5 for op in ("sr", "ri", "rs", "rd"))  # each drawn about a quarter of the time
    assert aug.edit_batch([text, text], 7) == [aug.edit(text, torch.Generator().manual_seed(7 * 1_000_003 + i))
                                               for i in range(2)]


def test_probability_and_combine_all():
    text = " ".join(CONTENT)
    never = eda(probability=0.0)
    assert all(never.edit(text, gen(s)) == text for s in range(10))
    half = eda(probability=0.5)
    unchanged = sum(half.edit(text, gen(s)) == text for s in range(200))
    assert 70 < half.stats["skipped_by_probability"] < 130 and unchanged >= half.stats["skipped_by_probability"]
    every = eda(combine="all", alpha_sr=0.2, alpha_ri=0.2, alpha_rs=0.2, p_rd=0.2)
    every.edit(text, gen(0))
    assert all(every.stats[op] == 1 for op in ("sr", "ri", "rs", "rd"))


def test_pickles_for_data_loader_workers():
    aug = eda()
    text = " ".join(CONTENT)
    copy = pickle.loads(pickle.dumps(aug))
    assert [copy.edit(text, gen(s)) for s in range(5)] == [aug.edit(text, gen(s)) for s in range(5)]


def test_custom_stop_words_and_senses():
    aug = eda(operations=["sr"], alpha_sr=1.0, stop_words=["movie"], senses=1)
    words = Words("movie car")
    aug.synonym_replacement(words, gen(0))
    assert words.words[0] == "movie" and words.words[1] in ["auto", "automobile", "machine", "motorcar"]


# ----------------------------------------------------------------------------- through the registry


class TestEDAConformance(AugmentationConformance):
    plugins = [selfsup_text]
    augmentation = ("eda", {"alpha_sr": 0.3, "alpha_ri": 0.3, "alpha_rs": 0.3, "p_rd": 0.3, "combine": "all"})
    data = ("labelled_text", {"set": "polarity", "tokenizer": "bpe-8k", "max_length": 64})
    option_variants = {"out_key": "positive_ids", "p_rd": 0.9, "senses": 1, "stop_words": [], "max_length": 8}
    inert_options = {"wordnet_dir": "the machine has one WordNet, the default one (a hand-made one is tested above)"}
    bad_options = [{"alpha_sr": 1.5}, {"p_rd": 1.0}, {"operations": []}, {"operations": ["sr", "sr"]},
                   {"operations": ["sr"], "alpha_sr": 0.0}, {"operations": ["xx"]}, {"senses": 0}]


def test_on_token_samples_as_recipes_build_it():
    context = BuildContext(name="eda")
    source = context.build("data", "labelled_text", {"set": "polarity", "tokenizer": "bpe-8k", "max_length": 64})
    aug = context.build("augmentations", "eda", {"operations": ["sr"], "alpha_sr": 0.5, "tokenizer": "bpe-8k",
                                                 "max_length": 64})
    tokenizer = aug.tokenizer
    changed = 0
    for i in range(20):
        sample = source[i]
        out = aug(sample, gen(i))
        ids = out["input_ids"]
        assert out["label"] == sample["label"] and ids.dtype == torch.long
        assert int(ids[0]) == tokenizer.cls_token_id and int(ids[-1]) == tokenizer.sep_token_id and len(ids) <= 64
        before = tokenizer.decode(sample["input_ids"][1:-1].tolist())
        after = tokenizer.decode(ids[1:-1].tolist())
        if len(ids) < 64:  # not cut: SR never removes a word
            assert len(Words(after).words) >= len(Words(before).words)
        changed += after != before
    assert changed >= 15  # polarity sentences almost always hold a word with a synonym
    second_view = context.build("augmentations", "eda", {"out_key": "positive_ids", "tokenizer": "bpe-8k"})
    paired = second_view(source[0], gen(1))
    assert torch.equal(paired["input_ids"], source[0]["input_ids"]) and "positive_ids" in paired


def test_refuses_packed_windows():
    context = BuildContext(name="eda")
    source = context.build("data", "texts", {"texts": ["a good movie about a happy dog"] * 4, "tokenizer": "bpe-8k",
                                             "window": 8})
    with pytest.raises(ValueError, match="packed windows"):
        context.build("augmentations", "eda", {})(source[0], gen(0))


# ----------------------------------------------------------------------------- `selfsup augment`


@pytest.mark.slow
def test_augment_command_with_eda_keeps_labels(tmp_path):
    rows = [{"text": "The movie was a tedious journey.", "label": 0}, {"text": "A happy, funny film!", "label": 1},
            {"text": "xqzzy", "label": 1}, {"nolabel": 1}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {**os.environ, "SELFSUP_PLUGINS": "text", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "selfsup", "augment", "in.jsonl", "--aug", "eda", "--set", "operations=['sr']",
           "--set", "alpha_sr=0.5", "--copies", "3", "--keep-original", "--keep-fields", "label", "--seed", "4",
           "--out", "out.jsonl"]
    res = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(lines) == 3 + 3 * 3  # originals, then 3 copies of the 3 texts (the line without text is skipped)
    assert [x["copy"] for x in lines] == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert all(x["label"] == rows[x["source_index"]]["label"] for x in lines)
    assert lines[0] == {"text": rows[0]["text"], "source_index": 0, "augmentation": None, "copy": 0, "label": 0}
    assert all(x["text"] == "xqzzy" for x in lines if x["source_index"] == 2)  # no synonym: unchanged
    assert "6 changed, 3 unchanged, 0 failed" in res.stdout and "sr_nothing_to_do 3" in res.stdout
    assert "1 JSON line" in res.stderr or "skipped" in res.stderr  # the bad line is reported, not silent
    again = subprocess.run([*cmd, "--overwrite"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()] == lines
    refused = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "exists" in refused.stderr
    token_level = subprocess.run([*cmd[:5], "--aug", "token_swap", "--out", "x.jsonl"], cwd=tmp_path, env=env,
                                 capture_output=True, text=True, timeout=300)
    assert token_level.returncode == 2 and "edits token ids" in token_level.stderr
