"""EDA: synonym replacement, random insertion, random swap and random deletion of words.

Wei & Zou 2019, "EDA: Easy Data Augmentation Techniques for Boosting Performance on Text
Classification Tasks", EMNLP. For a text of ``l`` words, each operation changes ``n = max(1, round(alpha * l))``
words (halves round up):

* **SR** (synonym replacement): ``n`` distinct non-stop words, in random order, each replaced (every
  occurrence, as the authors' code does) by a random WordNet synonym; words without one are passed over;
* **RI** (random insertion): ``n`` times, a random synonym of a random non-stop word (among those that have
  one) is inserted at a random place;
* **RS** (random swap): ``n`` times, two random words trade places;
* **RD** (random deletion): each word is deleted with probability ``p_rd``; one random word stays if all go.

Each edit applies one operation drawn uniformly among ``operations`` (the paper: every augmented sentence
comes from one operation), or all of them in turn (``combine = "all"``). Defaults are the paper's code:
``alpha = 0.1`` for all four, its 127-word stop list for SR and RI.

Synonyms come from WordNet 3.0 (:mod:`.wordnet`): every lemma of every synset of the word's base forms
(Morphy, so ``geese`` finds ``goose``'s synsets), underscores turned into spaces; a synonym is a base form
(``cars`` may become ``automobile``). Unlike the authors' code, which lowercases the text and removes every
character but a-z, the text keeps its punctuation, spacing and casing: words are runs of letters (with
inner apostrophes or hyphens); separators stay in place; a replacement takes the case of the word it
replaces (``Film``, ``FILM``); deleting a word merges the separators around it (``good, bad.`` -> ``good.``);
and when the text capitalises its sentences, the word that lands first in a sentence is capitalised and a
capitalised sentence-initial word moved elsewhere is lowered (unless it is ``I`` or appears capitalised
mid-sentence in the text). All randomness comes from the generator.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Callable

import torch

from selfsup.components import BuildContext
from selfsup_text.augment.text import TextAugmentation
from selfsup_text.augment.wordnet import open_wordnet

#: The stop words of the authors' code (jasonwei20/eda_nlp, code/eda.py): never picked by SR or RI.
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers herself
it its itself they them their theirs themselves what which who whom this that these those am is are was were be
been being have has had having do does did doing a an the and but if or because as until while of at by for with
about against between into through during before after above below to from up down in out on off over under again
further then once here there when where why how all any both each few more most other some such no nor not only own
same so than too very s t can will just don should now
""".split())

# A word: letters, with inner apostrophes or hyphens, not glued to digits or underscores ("21st" is no word).
WORD = re.compile(r"(?<![\w'’-])[^\W\d_]+(?:['’-][^\W\d_]+)*(?![\w'’-])")
# The separator before a word that starts a sentence: . ! ? (closing quotes/brackets), whitespace, opening ones.
SENTENCE_BREAK = re.compile(r"[.!?…][\"'”’)\]]*\s+[\"'“‘(\[]*$|\n\s*\n\s*[\"'“‘(\[]*$")
CLOSING = ",.;:!?)]}…"


def n_changes(alpha: float, words: int) -> int:
    """EDA's ``n = max(1, round(alpha * words))``, halves rounded up."""
    return max(1, math.floor(alpha * words + 0.5))


class Words:
    """A text as words and the separators around them: ``seps[0] words[0] seps[1] ... words[-1] seps[-1]``.

    ``words`` hold each word in its natural case (a capitalised sentence-initial word lowered when the
    text capitalises its sentences); :meth:`render` puts the text back together and capitalises the words
    that start a sentence. With no edit, ``Words(text).render() == text``."""

    def __init__(self, text: str):
        self.seps: list[str] = []
        self.words: list[str] = []
        position = 0
        for match in WORD.finditer(text):
            self.seps.append(text[position : match.start()])
            self.words.append(match.group())
            position = match.end()
        self.seps.append(text[position:])
        self.length = len(self.words)  # words in the original text: EDA's l
        starts = [i for i in range(len(self.words)) if self.starts_sentence(i)]
        self.capitalize = bool(starts) and all(self.words[i][0].isupper() for i in starts)
        if self.capitalize:
            mid_capitalized = {w for i, w in enumerate(self.words) if i not in starts and w[0].isupper()}
            for i in starts:
                w = self.words[i]
                if _title(w) and w != "I" and not w.startswith(("I'", "I’")) and w not in mid_capitalized:
                    self.words[i] = w.lower()

    def starts_sentence(self, i: int) -> bool:
        """Whether word ``i`` begins a sentence: the first word, or one after . ! ? and whitespace, or a blank line."""
        if i == 0:
            return not any(c.isalnum() for c in self.seps[0])
        return bool(SENTENCE_BREAK.search(self.seps[i]))

    def render(self) -> str:
        out = [self.seps[0]]
        for i, word in enumerate(self.words):
            if self.capitalize and self.starts_sentence(i):
                word = word[:1].upper() + word[1:]
            out += [word, self.seps[i + 1]]
        return "".join(out)

    # ------------------------------------------------------------------ edits
    def replace(self, i: int, new: str) -> None:
        """Word ``i`` becomes ``new``, in the case of the word it replaces."""
        self.words[i] = _match_case(new, self.words[i])

    def insert(self, k: int, word: str) -> None:
        """``word`` before word ``k`` (after the last one for ``k = len(words)``), separated by a space."""
        n = len(self.words)
        self.words.insert(k, word)
        self.seps.insert(k + 1 if k < n else n, " ")

    def swap(self, i: int, j: int) -> None:
        self.words[i], self.words[j] = self.words[j], self.words[i]

    def delete(self, i: int) -> None:
        """Remove word ``i`` and merge the separators on its two sides."""
        last = len(self.words) - 1
        before, after = self.seps[i], self.seps[i + 1]
        if i == 0:  # nothing before: drop the punctuation that followed the word
            merged = before + after.lstrip(" \t\n,;:.!?…")
        elif after.strip()[:1] in CLOSING and after.strip():  # "good, bad." -> "good."
            merged = before.rstrip().rstrip(",;:") + after
        elif i == last:
            merged = before.rstrip() + after
        else:  # two spacings meet: keep one (a line break wins)
            if before[-1:].isspace() and after[:1].isspace():
                if "\n" in after and "\n" not in before:
                    before = before.rstrip(" \t")
                else:
                    after = after.lstrip(" \t")
            merged = before + after
        del self.words[i]
        self.seps[i : i + 2] = [merged]


def _title(word: str) -> bool:
    return word[:1].isupper() and not any(c.isupper() for c in word[1:])


def _match_case(new: str, old: str) -> str:
    if len(old) > 1 and old.isupper():
        return new.upper()
    if old[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


def _randint(high: int, generator: torch.Generator) -> int:
    """A uniform integer in ``[0, high)``."""
    return int(torch.randint(0, high, (1,), generator=generator))


class EDA(TextAugmentation):
    """The four EDA operations on a text (see the module docstring). ``stats`` counts, per operation, the
    edits applied and those that found nothing to do (``sr_no_synonym``: no non-stop word has a synonym)."""

    def __init__(self, options: Any, context: BuildContext):
        super().__init__(options, context)
        wordnet_dir = None if options.wordnet_dir is None else context.resolve(options.wordnet_dir)
        self.wordnet = open_wordnet(wordnet_dir)  # raises FileNotFoundError with an install hint when absent
        self.rates = {"sr": options.alpha_sr, "ri": options.alpha_ri, "rs": options.alpha_rs, "rd": options.p_rd}
        self.operations = [op for op in options.operations if self.rates[op] > 0]
        self.combine = options.combine
        self.probability = options.probability
        self.senses = options.senses
        self.stop_words = frozenset(w.lower() for w in options.stop_words) if options.stop_words is not None \
            else STOP_WORDS
        self.stats: Counter[str] = Counter()
        self._synonyms: dict[str, tuple[str, ...]] = {}
        self._apply: dict[str, Callable[[Words, torch.Generator], bool]] = {
            "sr": self.synonym_replacement, "ri": self.random_insertion, "rs": self.random_swap,
            "rd": self.random_deletion,
        }

    def synonyms(self, word: str) -> tuple[str, ...]:
        """WordNet synonyms of ``word`` (lower-cased lookup), cached; none for stop words."""
        key = word.lower()
        found = self._synonyms.get(key)
        if found is None:
            found = () if key in self.stop_words else tuple(self.wordnet.synonyms(key, senses=self.senses))
            self._synonyms[key] = found
        return found

    # ------------------------------------------------------------------ the method
    def edit(self, text: str, generator: torch.Generator) -> str:
        if self.probability < 1 and float(torch.rand((), generator=generator)) >= self.probability:
            self.stats["skipped_by_probability"] += 1
            return text
        words = Words(text)
        if not words.words:
            self.stats["no_words"] += 1
            return text
        if self.combine == "all":
            chosen = list(self.operations)
        else:
            chosen = [self.operations[_randint(len(self.operations), generator)]]
        for op in chosen:
            done = self._apply[op](words, generator)
            self.stats[op if done else f"{op}_nothing_to_do"] += 1
        return words.render()

    def synonym_replacement(self, words: Words, generator: torch.Generator) -> bool:
        n = n_changes(self.rates["sr"], words.length)
        original = [w.lower() for w in words.words]  # a word put in by this edit is not replaced again
        distinct = list(dict.fromkeys(original))
        replaced = 0
        for k in torch.randperm(len(distinct), generator=generator).tolist():
            candidates = self.synonyms(distinct[k])
            if not candidates:
                continue
            synonym = candidates[_randint(len(candidates), generator)]
            for i, w in enumerate(original):
                if w == distinct[k]:
                    words.replace(i, synonym)
            replaced += 1
            if replaced >= n:
                break
        return replaced > 0

    def random_insertion(self, words: Words, generator: torch.Generator) -> bool:
        n = n_changes(self.rates["ri"], words.length)
        inserted = 0
        for _ in range(n):
            sources = [w for w in words.words if self.synonyms(w)]
            if not sources:
                break
            candidates = self.synonyms(sources[_randint(len(sources), generator)])
            synonym = candidates[_randint(len(candidates), generator)]
            words.insert(_randint(len(words.words) + 1, generator), synonym)
            inserted += 1
        return inserted > 0

    def random_swap(self, words: Words, generator: torch.Generator) -> bool:
        count = len(words.words)
        if count < 2:
            return False
        for _ in range(n_changes(self.rates["rs"], words.length)):
            i = _randint(count, generator)
            j = _randint(count - 1, generator)
            words.swap(i, j if j < i else j + 1)  # j drawn among the other positions
        return True

    def random_deletion(self, words: Words, generator: torch.Generator) -> bool:
        count = len(words.words)
        if count < 2:
            return False
        drop = (torch.rand(count, generator=generator) < self.rates["rd"]).tolist()  # [count]
        if all(drop):
            drop[_randint(count, generator)] = False
        for i in reversed(range(count)):
            if drop[i]:
                words.delete(i)
        return any(drop)


def build(options: Any, context: BuildContext) -> EDA:
    return EDA(options, context)
