"""Counterfactual data augmentation: the swap rules on a table of sentences, two-sidedness, exclusions,
extra pair files, ``counterfactual_corpus`` (add and seeded substitute) and the registered augmentation."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

import selfsup_text
from selfsup.components import BuildContext
from selfsup.testing import AugmentationConformance, registry_with
from selfsup_text.augment.counterfactual import Swapper, build_tables, counterfactual_corpus, pluralize
from selfsup_text.augment.options import CounterfactualOptions
from selfsup_text.tokenizers import load_tokenizer

# (text, expected swap, reversible: swap(swap(text)) == text)
TABLE = [
    # pronouns, case: lower, Capitalised, UPPER
    ("he said that she was late", "she said that he was late", True),
    ("He and she", "She and he", True),
    ("HE WON.", "SHE WON.", True),
    ("He hurt himself.", "She hurt herself.", True),
    # her: determiner -> his, object -> him; his: determiner -> her, independent -> hers
    ("He gave her a book.", "She gave him a book.", True),
    ("I told her that it was fine.", "I told him that it was fine.", True),
    ("She lost her keys.", "He lost his keys.", True),
    ("Her mother called.", "His father called.", True),
    ("The choice was hers.", "The choice was his.", True),
    ("The book is his.", "The book is hers.", True),
    ("a friend of his, and", "a friend of hers, and", True),
    ("They saw her.", "They saw him.", True),
    ("It is her own fault.", "It is his own fault.", True),
    ("They made her cry.", "They made him cry.", True),
    ("He saw her face.", "She saw his face.", True),
    ("in her 1943 novel", "in his 1943 novel", True),
    ("his or her labour", "her or his labour", True),
    # nouns, plurals (by rule and irregular), possessives, compounds
    ("The man's hat and the men's room.", "The woman's hat and the women's room.", True),
    ("the boys' toys", "the girls' toys", True),
    ("Actresses and waiters.", "Actors and waitresses.", True),
    ("The ladies and the gentlemen.", "The gentlemen and the ladies.", True),
    ("My father-in-law and his wives.", "My mother-in-law and her husbands.", True),
    ("THE KING AND HIS MEN", "THE QUEEN AND HER WOMEN", True),
    ("The chairman thanked the spokeswoman.", "The chairwoman thanked the spokesman.", True),
    # titles and names: only when capitalised
    ("Mr. Smith met Mrs. Jones.", "Mrs. Smith met Mr. Jones.", True),
    ("John met Mary and JOHN.", "Mary met John and MARY.", True),
    ("Paul's car", "Helen's car", True),
    # not swapped: names in place names, default exclusions, words that only look like pairs
    ("He lives in St. John's Wood.", "She lives in St. John's Wood.", True),
    ("Her Majesty thanked the king.", "Her Majesty thanked the queen.", True),
    ("Queen Elizabeth and the queen.", "Queen Elizabeth and the king.", True),
    ("God and the goddess.", "God and the god.", True),
    ("the manifold mandate", "the manifold mandate", True),
    ("Sheffield and Hereford", "Sheffield and Hereford", True),
    # one-way pairs and the ambiguous her are not reversible
    ("The lord arrived.", "The lady arrived.", False),
    ("Ms. Brown", "Mr. Brown", False),
]


@pytest.fixture(scope="module")
def swapper() -> Swapper:
    return Swapper()


@pytest.mark.parametrize("text,expected,reversible", TABLE)
def test_swaps(swapper, text, expected, reversible):
    swapped, counts = swapper.swap(text)
    assert swapped == expected
    if reversible:
        assert swapper.swap(swapped)[0] == text  # two-sided: swapping back gives the text again
    words = re.findall(r"[^\W\d_]+", text), re.findall(r"[^\W\d_]+", expected)
    assert counts["swapped"] == sum(a != b for a, b in zip(*words))


def test_her_readings_are_counted(swapper):
    _, counts = swapper.swap("She gave her a book about her town; the town was hers and his.")
    assert counts["her_as_him"] == 1 and counts["her_as_his"] == 1 and counts["his_as_hers"] == 1
    assert counts["swapped"] == 5


def test_exclusions_are_counted_and_replaceable():
    text = "Her Majesty and her husband."
    swapped, counts = Swapper().swap(text)
    assert swapped == "Her Majesty and his wife." and counts["excluded"] == 1
    own = Swapper(exclude=["husband"])  # a user list replaces the default one
    swapped, counts = own.swap(text)
    assert swapped == "His Majesty and his husband." and counts["excluded"] == 1
    assert Swapper(exclude=[]).swap("God")[0] == "Goddess"


def test_pair_lists_can_be_chosen():
    assert Swapper(["words"]).swap("John and he")[0] == "John and she"
    assert Swapper(["names"]).swap("John and he")[0] == "Mary and he"
    with pytest.raises(ValueError, match="unknown counterfactual pair lists"):
        build_tables(["colours"])


def test_pluralize():
    assert [pluralize(w) for w in ("man", "chairwoman", "actress", "lady", "boy", "king", "witch")] == \
        ["men", "chairwomen", "actresses", "ladies", "boys", "kings", "witches"]


def test_extra_pairs_file(tmp_path):
    from selfsup_text.augment.counterfactual import swapper_of

    extra = tmp_path / "extra.toml"
    extra.write_text('words = [["druid", "druidess"]]\nnames = [["Aragorn", "Arwen"]]\n')
    swapper = swapper_of(CounterfactualOptions(extra_pairs_file=extra))
    assert swapper.swap("Aragorn and the druids")[0] == "Arwen and the druidesses"
    assert swapper.swap("he")[0] == "she"  # the built-in lists stay
    for pairs, message in [([["man", "girl"]], "paired with both"),  # 'man' is already paired with 'woman'
                           ([["he", "her"]], "swapped by rule"), ([["one"]], r"\[male, female\] pairs")]:
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps({"words": pairs}))
        with pytest.raises(ValueError, match=message):
            swapper_of(CounterfactualOptions(extra_pairs_file=bad))
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({"colours": [["red", "blue"]]}))
    with pytest.raises(ValueError, match="unknown keys"):
        swapper_of(CounterfactualOptions(extra_pairs_file=unknown))


# ----------------------------------------------------------------------------- corpora

TEXTS = ["The sky is blue.", "He loves his dog.", "Mary met the king.", "Numbers: 1, 2, 3.", "She said no."]


def test_corpus_add_mode():
    out, stats = counterfactual_corpus(TEXTS, mode="add", seed=0)
    assert out[:5] == TEXTS
    assert out[5:] == ["She loves her dog.", "John met the queen.", "He said no."]
    assert stats["documents_in"] == 5 and stats["documents_out"] == 8
    assert stats["documents_with_attribute_words"] == 3 and stats["documents_added"] == 3
    assert stats["words_swapped"] == 5 and stats["his_as_her"] == 1
    assert all(isinstance(v, int) for v in stats.values())


def test_corpus_substitute_mode_is_seeded_and_fair():
    texts = [f"Story {i}: he met her brother." for i in range(400)] + ["Nothing to swap here."] * 100
    out, stats = counterfactual_corpus(texts, mode="substitute", seed=3)
    again, _ = counterfactual_corpus(texts, mode="substitute", seed=3)
    other, _ = counterfactual_corpus(texts, mode="substitute", seed=4)
    assert out == again and out != other and len(out) == len(texts)
    assert out[400:] == texts[400:]
    swapped = [a != b for a, b in zip(out[:400], texts[:400])]
    assert stats["documents_substituted"] == sum(swapped)
    assert abs(sum(swapped) - 200) < 4 * np.sqrt(400 * 0.25)  # Binomial(400, 0.5) within 4 standard deviations
    assert all(o in (texts[i], f"Story {i}: she met his sister.") for i, o in enumerate(out[:400]))
    # a text's coin depends on the seed and its position only, not on the other texts
    prefix, _ = counterfactual_corpus(texts[:50], mode="substitute", seed=3)
    assert prefix == out[:50]
    with pytest.raises(ValueError, match="'add' or 'substitute'"):
        counterfactual_corpus(texts, mode="double", seed=0)


def test_her_before_a_noun_in_a_substituted_story():
    out, _ = counterfactual_corpus(["he met her brother."], mode="add", seed=0)
    assert out[1] == "she met his sister."


# ----------------------------------------------------------------------------- the augmentation


_EXTRA = Path(tempfile.mkdtemp(prefix="cda-test-")) / "extra.toml"
_EXTRA.write_text('one_way = [["arrived", "departed"]]\nno_plural = ["arrived"]\n')


class TestCounterfactualConformance(AugmentationConformance):
    plugins = [selfsup_text]
    augmentation = ("counterfactual", {"tokenizer": "bpe-8k"})
    data = ("texts", {"texts": ["He told his brother that the king had arrived.", "She is a nurse."],
                      "tokenizer": "bpe-8k"})
    random = False  # probability 1: every document is swapped
    option_variants = {"out_key": "positive_ids", "max_length": 6, "exclude": ["brother"],
                       "extra_pairs_file": str(_EXTRA)}
    bad_options = [{"probability": 1.5}, {"pairs": ["colours"]}, {"pairs": []}]


def _augmentation(**options):
    registry = registry_with([selfsup_text])
    return registry.get("augmentation", "counterfactual").build({"tokenizer": "bpe-8k", **options},
                                                                  BuildContext(name="cda"))


def test_augmentation_swaps_token_samples():
    tok = load_tokenizer("bpe-8k")
    text = "He told his brother that the king had arrived."
    ids = torch.tensor(tok(text)["input_ids"])  # [CLS] ... [SEP]
    out = _augmentation()({"input_ids": ids}, torch.Generator().manual_seed(0))
    assert tok.decode(out["input_ids"][1:-1].tolist()) == "She told her sister that the queen had arrived."
    assert int(out["input_ids"][0]) == tok.cls_token_id and int(out["input_ids"][-1]) == tok.sep_token_id
    second = _augmentation(out_key="positive_ids")({"input_ids": ids}, torch.Generator().manual_seed(0))
    assert torch.equal(second["input_ids"], ids) and torch.equal(second["positive_ids"], out["input_ids"])


def test_augmentation_probability_is_seeded():
    tok = load_tokenizer("bpe-8k")
    ids = torch.tensor(tok("He is here.")["input_ids"])
    never = _augmentation(probability=0.0)
    assert all(torch.equal(never({"input_ids": ids}, torch.Generator().manual_seed(s))["input_ids"], ids)
               for s in range(10))
    half = _augmentation(probability=0.5)
    changed = [not torch.equal(half({"input_ids": ids}, torch.Generator().manual_seed(s))["input_ids"], ids)
               for s in range(200)]
    assert 60 < sum(changed) < 140  # Binomial(200, 0.5): 100 +- 40 is 5.7 standard deviations
    again = [not torch.equal(half({"input_ids": ids}, torch.Generator().manual_seed(s))["input_ids"], ids)
             for s in range(200)]
    assert changed == again


def test_augmentation_refuses_packed_windows():
    window = {"input_ids": torch.arange(5, 20), "document_ids": torch.zeros(15, dtype=torch.long)}
    with pytest.raises(ValueError, match="packed windows"):
        _augmentation()(window, torch.Generator().manual_seed(0))
