"""Options of the augmentations (pydantic only: no torch, no tokenizers, no models).

Token augmentations edit a sample's ids; text augmentations (:class:`TextAugOptions`) decode the ids of a
whole document with ``tokenizer`` (name it as the data source does), edit the words and write the new ids
to ``out_key`` (default: ``key``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from selfsup.options import ExistingFile, Options


class _TokenAug(Options):
    key: str = Field("input_ids", description="Sample field holding the token ids (LongTensor[L]).")
    out_key: str | None = Field(
        None,
        description="Write the edited ids to this field and leave key as it was (e.g. positive_ids: "
        "a second view for simcse); default: edit key in place.",
    )
    special_ids: list[int] | None = Field(
        None,
        description="Token ids never touched. Default: keep the first and last token fixed (the [CLS]/[SEP] "
        "of add_special_tokens = true); set [] to treat every token alike.",
    )


class SpanCropOptions(_TokenAug):
    min_fraction: float = Field(0.5, gt=0, le=1, description="Smallest kept fraction of the tokens.")
    max_fraction: float = Field(1.0, gt=0, le=1, description="Largest kept fraction of the tokens.")
    max_tokens: int | None = Field(
        None, ge=1, description="Keep at most this many tokens (a passage of a long document); default no limit."
    )

    @model_validator(mode="after")
    def _order(self):
        if self.min_fraction > self.max_fraction:
            raise ValueError("min_fraction must be <= max_fraction")
        return self


class TokenDeletionOptions(_TokenAug):
    rate: float = Field(0.1, ge=0, lt=1, description="Probability of deleting each token.")


class TokenSubstitutionOptions(_TokenAug):
    rate: float = Field(0.1, ge=0, le=1, description="Probability of replacing each token.")
    vocab_size: int | None = Field(
        None,
        gt=0,
        description="Draw replacements uniformly from [low_id, vocab_size); default: from the sample's own "
        "(non-special) tokens, which keeps its unigram distribution and needs no tokenizer.",
    )
    low_id: int = Field(0, ge=0, description="Smallest replacement id when vocab_size is set (e.g. past the specials).")

    @model_validator(mode="after")
    def _range(self):
        if self.vocab_size is not None and self.low_id >= self.vocab_size:
            raise ValueError("low_id must be < vocab_size")
        return self


class TokenSwapOptions(_TokenAug):
    rate: float = Field(
        0.1, ge=0, le=1,
        description="Left to right, each editable token not just swapped is swapped with the next one with "
        "this probability.",
    )


# ----------------------------------------------------------------------------------- text-level


class TextAugOptions(Options):
    key: str = Field("input_ids", description="Sample field holding a document's token ids (LongTensor[L]).")
    out_key: str | None = Field(
        None,
        description="Write the edited ids to this field and leave key as it was (e.g. positive_ids: a second "
        "view for simcse); default: edit key in place.",
    )
    tokenizer: str = Field(
        "bpe-8k", min_length=1,
        description="The data source's tokenizer: 'bytes', a shipped one ('bpe-8k') or a tokenizer directory.",
    )
    max_length: int | None = Field(
        None, ge=2, description="Cut the edited document to this many tokens ([CLS]/[SEP] included), as the "
        "source's max_length does; default no limit.",
    )


# PLACEHOLDERS (being written): each helper replaces its own class below.
class EDAOptions(TextAugOptions):
    """EDA (Wei & Zou 2019): synonym replacement (SR), random insertion (RI), random swap (RS) and random
    deletion (RD) of words, synonyms from WordNet 3.0. Rates default to the paper's code (0.1 each)."""

    wordnet_dir: str | None = Field(
        None, description="Folder of the WordNet 3.0 database (index.noun, data.noun, ...); default $WNSEARCHDIR, "
        "else $WNHOME/dict, else /usr/share/wordnet (Debian/Ubuntu: apt-get install wordnet-base).",
    )
    alpha_sr: float = Field(0.1, ge=0, le=1, description="SR: replace n = max(1, round(alpha_sr * words)) distinct "
                            "non-stop words by a WordNet synonym (every occurrence); 0 disables SR.")
    alpha_ri: float = Field(0.1, ge=0, le=1, description="RI: insert a synonym of a random non-stop word at a random "
                            "place, n = max(1, round(alpha_ri * words)) times; 0 disables RI.")
    alpha_rs: float = Field(0.1, ge=0, le=1, description="RS: swap two random words, n = max(1, round(alpha_rs * "
                            "words)) times; 0 disables RS.")
    p_rd: float = Field(0.1, ge=0, lt=1, description="RD: delete each word with this probability (one is always "
                        "kept); 0 disables RD.")
    operations: list[Literal["sr", "ri", "rs", "rd"]] = Field(
        ["sr", "ri", "rs", "rd"], min_length=1,
        description="The operations used (those with a rate above 0); e.g. ['sr'] for synonym replacement only.",
    )
    combine: Literal["one", "all"] = Field(
        "one", description="'one': each edit applies one operation drawn uniformly (the paper: every augmented "
        "sentence comes from one operation); 'all': every operation in turn, in the order given.",
    )
    probability: float = Field(
        1.0, ge=0, le=1, description="Share of the samples edited; the others pass unchanged. The paper trains on "
        "each original plus n_aug edited copies: n_aug / (n_aug + 1) (0.9 for its code's n_aug = 9) gives the "
        "originals the same share when augmenting on the fly.",
    )
    senses: int | None = Field(
        None, ge=1, description="Take synonyms from the first N senses of each word only (WordNet orders them "
        "by frequency); default every sense, as the paper.",
    )
    stop_words: list[str] | None = Field(
        None, description="Words SR and RI never pick (lower case); default the paper's list (127 English "
        "function words, 'not' and 'no' among them).",
    )

    @model_validator(mode="after")
    def _operations(self):
        if len(set(self.operations)) != len(self.operations):
            raise ValueError(f"operations repeats a name: {self.operations}")
        rates = {"sr": self.alpha_sr, "ri": self.alpha_ri, "rs": self.alpha_rs, "rd": self.p_rd}
        if not any(rates[op] > 0 for op in self.operations):
            raise ValueError(f"every operation in {self.operations} has rate 0: nothing would change")
        return self


class _Seq2SeqOptions(TextAugOptions):
    """Generation with a local transformers seq2seq model, batched and cached (back_translation, paraphrase)."""

    batch_size: int = Field(16, ge=1, description="Texts (sentences with split_sentences) per generate() call.")
    max_input_tokens: int = Field(512, ge=1, description="Longer inputs are cut to this many tokens (counted "
                                  "and reported); MarianMT models take 512.")
    max_new_tokens: int = Field(256, ge=1, description="Longest generated output, in tokens.")
    num_beams: int = Field(1, ge=1, description="Beam search width (with do_sample = false).")
    do_sample: bool = Field(True, description="Sample each token (seeded per text) instead of greedy or beam "
                            "search; sampled outputs are more diverse (Edunov et al. 2018; UDA, Xie et al. 2020).")
    temperature: float = Field(0.8, gt=0, description="Sampling temperature (UDA's back-translation: 0.8).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling: draw from the smallest set of tokens "
                         "holding this much probability (Holtzman et al. 2020); 1 draws from all.")
    split_sentences: bool = Field(True, description="Generate sentence by sentence and join the results with the "
                                  "original spacing (as UDA does for long documents); false sends whole texts.")
    device: str = Field("cpu", description="'cpu', 'cuda', 'cuda:N' or 'auto' (a GPU when there is one).")
    cache: bool = Field(True, description="Keep every output in an on-disk SQLite cache keyed by the model files' "
                        "hashes, the settings, the seed (when sampling) and the text: re-runs generate nothing.")
    cache_dir: str | None = Field(None, description="Cache folder; default $SELFSUP_CACHE_DIR/seq2seq, else "
                                  "$XDG_CACHE_HOME/selfsup/seq2seq, else ~/.cache/selfsup/seq2seq.")

    @model_validator(mode="after")
    def _search(self):
        if self.do_sample and self.num_beams > 1:
            raise ValueError("do_sample samples one sequence per text: set num_beams = 1, or do_sample = false for "
                             "beam search")
        return self


class BackTranslationOptions(_Seq2SeqOptions):
    """Back-translation (Sennrich et al. 2016; as augmentation: Yu et al. 2018, Xie et al. 2020): text ->
    pivot language -> text, with local seq2seq translation models."""

    forward_model: str = Field(
        min_length=1, description="Text -> pivot model: a local folder (relative to the recipe) or the id of a "
        "model already in the Hugging Face cache (e.g. Helsinki-NLP/opus-mt-en-de); never downloaded.",
    )
    backward_model: str | None = Field(
        None, description="Pivot -> text model (e.g. Helsinki-NLP/opus-mt-de-en); default forward_model, for one "
        "multilingual model (set pivot_lang/source_lang or the prefixes).",
    )
    forward_prefix: str = Field("", description="Put before each input of the forward model (T5: 'translate "
                                "English to German: '; multilingual Marian: '>>de<< ').")
    backward_prefix: str = Field("", description="Put before each input of the backward model.")
    source_lang: str | None = Field(None, description="Language code of the texts for multilingual tokenizers with "
                                    "language tokens (M2M100 'en', NLLB 'eng_Latn', mBART 'en_XX').")
    pivot_lang: str | None = Field(None, description="Language code of the pivot, same convention (M2M100 'de', "
                                   "NLLB 'deu_Latn').")

    @model_validator(mode="after")
    def _directions(self):
        if (self.source_lang is None) != (self.pivot_lang is None):
            raise ValueError("set both source_lang and pivot_lang (language tokens of a multilingual model), or "
                             "neither")
        if (self.backward_model is None or self.backward_model == self.forward_model) and self.pivot_lang is None \
                and self.forward_prefix == self.backward_prefix:
            raise ValueError("one model for both directions needs language tokens (source_lang, pivot_lang) or "
                             "different prefixes; otherwise set backward_model (e.g. opus-mt-de-en after "
                             "opus-mt-en-de)")
        return self


class ParaphraseOptions(_Seq2SeqOptions):
    """Model paraphrase: text -> a local seq2seq paraphrasing model -> text."""

    model: str = Field(min_length=1, description="A local folder (relative to the recipe) or the id of a model "
                       "already in the Hugging Face cache; never downloaded.")
    prefix: str = Field("paraphrase: ", description="Put before each input (the task prefix of T5-style "
                        "paraphrasers); '' for none.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(0.9, gt=0, le=1, description="Nucleus sampling (Holtzman et al. 2020: p around 0.9).")


class CounterfactualOptions(TextAugOptions):
    """Counterfactual data augmentation (Lu et al. 2018; Maudslay et al. 2019): gendered words, pronouns
    and first names swapped male <-> female in the case they are written in (augment/counterfactual.py)."""

    pairs: list[Literal["words", "names"]] = Field(
        ["words", "names"], min_length=1,
        description="Built-in pair lists: 'words' (he/she, his/her, man/woman, king/queen, Mr/Mrs, ... with "
        "plurals) and 'names' (64 first-name pairs, John/Mary, ...).",
    )
    extra_pairs_file: ExistingFile | None = Field(
        None,
        description="A TOML or JSON file adding pairs: words = [[male, female], ...], names = [[...]], one_way, "
        "titles, no_plural, plurals (the layout of assets/counterfactual/gender.toml).",
    )
    exclude: list[str] = Field(
        ["Her Majesty", "His Majesty", "Her Royal Highness", "His Royal Highness", "His Holiness", "Her Excellency",
         "His Excellency", "Queen Elizabeth", "Queen Victoria", "Queen Mary", "Queen Anne", "King James",
         "Prince of Wales", "Virgin Mary", "Mother Teresa", "Mother Nature", "God"],
        description="Words and phrases never swapped (case-sensitive, whole words): titles, proper names. "
        "Setting it replaces the default list.",
    )
    probability: float = Field(
        1.0, ge=0.0, le=1.0,
        description="Chance that a document is swapped (1.0: every document, the augmentation of Lu et al.; "
        "0.5: substitution, Maudslay et al.).",
    )
