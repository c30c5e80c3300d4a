"""selfsup-text: self-supervised learning on text.

Registers text data sources (text files, JSONL, Hugging Face datasets, memory-mapped token shards,
WARC/WET files, the embedded corpus, labelled and similarity-rated evaluation sets), token-level and
text-level augmentations (EDA with WordNet, back-translation, model paraphrase, counterfactual
swaps), a transformers backbone (GPT-2/Llama-style decoders, BERT-style encoders, from a config or a
local pretrained directory), the CLM, MLM, NSP and SimCSE pretext tasks, text evaluators, the
``selfsup collect`` (web crawl), ``selfsup prepare`` (clean, filter, de-duplicate, tokenize),
``selfsup augment`` and ``selfsup audit`` (bias) commands and a quickstart recipe per task.
Implementations are imported inside the factories and commands, so loading this plugin imports no
torch, no transformers and no HTTP client.
"""

from __future__ import annotations

from typing import Any, Callable

import selfsup
from selfsup.registry import lazy, package_recipes
from selfsup_text.augment import options as ao
from selfsup_text.backbones import options as bo
from selfsup_text.data import options as do
from selfsup_text.evaluators import options as eo
from selfsup_text.feedback import options as fo
from selfsup_text.heads import options as ho
from selfsup_text.tasks import options as to

MODALITY = "text"


def _lazy(path: str) -> Callable[[Any, Any], Any]:
    return lazy(f"selfsup_text.{path}")


# Sample keys (see selfsup.contract): a document's token ids, plus what the source's options add.
_DOCUMENTS = {"input_ids": "int64[T]", "document_ids if window": "int64[T]", "sentence_starts if sentences": "int64[S]"}
#: The sample keys each text data source yields.
DATA_KEYS: dict[str, dict[str, str]] = {
    "text_files": _DOCUMENTS,
    "jsonl": {**_DOCUMENTS, "label? if label_field": "int64[]", "positive_ids if positive_field": "int64[P]",
              "negative_ids if negative_field": "int64[N]", "token_type_ids if text_pair_field": "int64[T]"},
    "hf_dataset": {**_DOCUMENTS, "label? if label_field": "int64[]"},
    "token_shards": {"input_ids": "int64[{window+1}]", "document_ids": "int64[{window+1}]"},
    "embedded_corpus": _DOCUMENTS,
    "labelled_text": {"input_ids": "int64[T]", "label": "int64[]"},
    "similarity_pairs": {"input_ids": "int64[T]"},
    "texts": {**_DOCUMENTS, "label? if labels": "int64[]"},
    "warc": _DOCUMENTS,
}
# Crops and deletions shorten the ids (edited in place, the aligned fields follow where present).
_SHORTER = {"{out_key|key}": "int64[_]", "document_ids?": "int64[_]", "token_type_ids?": "int64[_]",
            "sentence_starts?": "int64[_]"}
#: What each token augmentation writes (each reads ``{key}: int64[T]``).
AUGMENT_KEYS: dict[str, dict[str, str]] = {
    "span_crop": _SHORTER,
    "token_deletion": _SHORTER,
    "token_substitution": {"{out_key|key}": "int64[T]"},
    "token_swap": {"{out_key|key}": "int64[T]"},
}


#: Each data source's serving decoder (``data.serving``): a served text -> the sample the source yields for it.
DECODERS = {
    "text_files": "text_files_decoder", "jsonl": "jsonl_decoder", "hf_dataset": "hf_decoder",
    "token_shards": "shards_decoder", "embedded_corpus": "corpus_decoder", "labelled_text": "labelled_decoder",
    "similarity_pairs": "similarity_decoder", "texts": "texts_decoder", "warc": "warc_decoder",
}


@selfsup.hookimpl
def register_data_sources(register):
    for name, path, options, summary in [
        ("text_files", "data.files:build", do.TextFilesOptions,
         "Text files and folders: one document per file, line or blank-line block."),
        ("jsonl", "data.jsonl:build", do.JsonlOptions,
         "JSON Lines with a text field (and optional label or pair fields)."),
        ("hf_dataset", "data.hf:build", do.HFDatasetOptions,
         "A Hugging Face dataset saved to disk, or local json/csv/parquet/text files (extra 'datasets')."),
        ("token_shards", "data.shards:build", do.TokenShardsOptions,
         "Memory-mapped uint16/uint32 token shards from `selfsup prepare`, read by random window."),
        ("embedded_corpus", "data.corpus:build", do.EmbeddedCorpusOptions,
         "Real English that ships with the install: Wikipedia articles and news (gensim's test data)."),
        ("labelled_text", "data.labelled:build", do.LabelledTextOptions,
         "Small labelled sets for probes: movie-review polarity sentences, newsgroup posts."),
        ("similarity_pairs", "data.similarity:build", do.SimilarityPairsOptions,
         "Human similarity ratings: Lee news-document pairs, SimLex-999, WordSim-353."),
        ("texts", "data.inline:build", do.TextsOptions,
         "Texts given inline (a few sentences, or captions another plugin's source tokenizes): one document each."),
        ("warc", "data.warc:build", do.WarcOptions,
         "WARC/WET files (a `selfsup collect` crawl, Common Crawl segments): main text of each page, by language."),
    ]:
        register(name, _lazy(path), options=options, modality=MODALITY, summary=summary, produces=DATA_KEYS.get(name),
                 decoder=_lazy(f"data.serving:{DECODERS[name]}"))


@selfsup.hookimpl
def register_augmentations(register):
    for name, options, summary in [
        ("span_crop", ao.SpanCropOptions, "Keep one random contiguous span of the tokens."),
        ("token_deletion", ao.TokenDeletionOptions, "Delete each token with probability rate."),
        ("token_substitution", ao.TokenSubstitutionOptions,
         "Replace each token by a random one with probability rate."),
        ("token_swap", ao.TokenSwapOptions, "Swap random pairs of neighbouring tokens."),
    ]:
        register(name, _lazy(f"augment.tokens:build_{name}"), options=options, modality=MODALITY, summary=summary,
                 consumes={"{key}": "int64[T]"}, produces=AUGMENT_KEYS.get(name))
    for name, path, options, summary in [
        ("eda", "augment.eda:build", ao.EDAOptions,
         "EDA (Wei & Zou 2019): WordNet synonym replacement, random insertion, swap and deletion of words."),
        ("back_translation", "augment.seq2seq:build_back_translation", ao.BackTranslationOptions,
         "Text -> pivot language -> text with local seq2seq models (e.g. a MarianMT pair), cached."),
        ("paraphrase", "augment.seq2seq:build_paraphrase", ao.ParaphraseOptions,
         "Model paraphrase with a local seq2seq model folder (e.g. a T5 paraphraser), cached."),
        ("counterfactual", "augment.counterfactual:build", ao.CounterfactualOptions,
         "Counterfactual data augmentation: swap attribute words (he/she, his/her, names, ...)."),
    ]:
        register(name, _lazy(path), options=options, modality=MODALITY, summary=summary,
                 consumes={"{key}": "int64[T]"}, produces={"{out_key|key}": "int64[_]"})


@selfsup.hookimpl
def register_backbones(register):
    register("transformer", _lazy("backbones.transformer:build"), options=bo.TransformerOptions, modality=MODALITY,
             summary="transformers decoder (GPT-2, Llama) or encoder (BERT) from a config or a local directory.",
             consumes={"input_ids": "int64[T]", "token_type_ids?": "int64[T]"})


@selfsup.hookimpl
def register_pretext_tasks(register):
    register("clm", _lazy("tasks.clm:build"), options=to.CLMOptions, modality=MODALITY,
             summary="Next-token prediction on packed sequences with document separators.",
             consumes={"input_ids": "int64[T]", "document_ids?": "int64[T]"})
    register("mlm", _lazy("tasks.mlm:build"), options=to.MLMOptions, modality=MODALITY,
             summary="Masked language modelling: 15% selected, 80/10/10; whole-word and span options.",
             consumes={"input_ids": "int64[T]", "index?": "int64[]"})
    register("nsp", _lazy("tasks.nsp:build"), options=to.NSPOptions, modality=MODALITY,
             summary="Next-sentence prediction on BERT-style segment pairs (50% true next).",
             consumes={"input_ids": "int64[T]", "sentence_starts": "int64[S]", "index?": "int64[]"})
    register("simcse", _lazy("tasks.simcse:build"), options=to.SimCSEOptions, modality=MODALITY,
             summary="SimCSE: dropout views (unsupervised) or labelled pairs with hard negatives.",
             consumes={"input_ids": "int64[T]", "positive_ids?": "int64[P]", "negative_ids?": "int64[N]"})


@selfsup.hookimpl
def register_evaluators(register):
    register("perplexity", _lazy("evaluators.perplexity:build"), options=eo.PerplexityOptions, modality=MODALITY,
             summary="Held-out perplexity of a decoder, beside a unigram baseline.",
             consumes={"input_ids": "int64[T]", "document_ids?": "int64[T]"})
    register("mlm_accuracy", _lazy("evaluators.mlm_accuracy:build"), options=eo.MLMAccuracyOptions,
             modality=MODALITY, summary="Accuracy of an encoder's masked-token predictions on held-out text.",
             consumes={"input_ids": "int64[T]", "index?": "int64[]"})
    register("masked_token_probe", _lazy("evaluators.masked_token_probe:build"), options=eo.MaskedTokenProbeOptions,
             modality=MODALITY, summary="Linear probe of the masked token from an encoder's frozen features "
                                        "(any objective: no MLM head needed).",
             consumes={"input_ids": "int64[T]", "index?": "int64[]"})
    register("nsp_accuracy", _lazy("evaluators.nsp_accuracy:build"), options=eo.NSPAccuracyOptions,
             modality=MODALITY, summary="Accuracy of an encoder's next-sentence head on held-out pairs.",
             consumes={"input_ids": "int64[T]", "sentence_starts": "int64[S]"})
    register("sts_spearman", _lazy("evaluators.sts:build"), options=eo.STSOptions, modality=MODALITY,
             summary="Spearman correlation of embedding cosine with human similarity ratings.", consumes={})
    register("same_document", _lazy("evaluators.same_document:build"), options=eo.SameDocumentOptions,
             modality=MODALITY, summary="Held-out passage retrieval: is a window's nearest window from its document?",
             consumes={"input_ids": "int64[T]", "document_ids": "int64[T]"})


@selfsup.hookimpl
def register_heads(register):
    register("token_classification", _lazy("heads.token_classification:build"), options=ho.TokenClassificationOptions,
             modality=MODALITY, consumes={"{target}": "int64[T]", "input_ids": "int64[T]"},
             summary="A class per token (NER, tagging) from the last hidden states; -100 marks unlabelled tokens.")


@selfsup.hookimpl
def register_feedback(register):
    register("salient_cloze", _lazy("feedback.cloze:build"), options=fo.SalientClozeOptions, modality=MODALITY,
             consumes={"input_ids": "int64[T]"},
             summary="Salient-span cloze closed- and open-book (BM25 over the training passages): gap curriculum "
                     "and confidence-filtered self-training (REALM, closed-book QA, RAG).")


@selfsup.hookimpl
def register_commands(cli):
    from selfsup_text.audit.command import add_command as add_audit
    from selfsup_text.augment.command import add_command as add_augment
    from selfsup_text.collect.command import add_command as add_collect
    from selfsup_text.prepare.command import add_command

    add_command(cli)
    add_collect(cli)
    add_augment(cli)
    add_audit(cli)


# name -> summary; the TOML text is recipes/<name>.toml in this package.
RECIPES: dict[str, str] = {
    "clm-quickstart": "A small GPT-2-style decoder on the embedded corpus; perplexity against unigram.",
    "clm-char": "nanoGPT's CPU character-level settings on the embedded corpus.",
    "mlm-quickstart": "A small BERT-style encoder with MLM on the embedded corpus.",
    "data2vec-text": "data2vec (the core's task) with the mlm-quickstart encoder on the embedded corpus; linear probe "
                     "and kNN on movie-review polarity.",
    "nsp-quickstart": "BERT-style MLM + NSP jointly on the embedded corpus.",
    "simcse-quickstart": "Unsupervised SimCSE; STS Spearman on the Lee document ratings.",
    "finetune-polarity": "Fine-tune a pretrained encoder (default runs/mlm-quickstart) on movie-review polarity; "
                         "macro F1.",
}


@selfsup.hookimpl
def register_recipes(register):
    package_recipes(register, "selfsup_text", RECIPES, modality=MODALITY)
